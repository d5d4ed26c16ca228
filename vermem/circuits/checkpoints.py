"""Training time as an axis of Study A (docs/study-a.md §12).

A model may list checkpoints: revisions of a hub model (Pythia's `step{N}`), subfolders of a
local model's folder, or, for the organism, the snapshots it saves while training (named
`t{percent of the training steps}`). Each checkpoint goes through the existing stages on
fixed inputs, so that checkpoints are compared on the same data:
- labels of one fixed sample set (`sample_set`: the document-start windows, at most
  `per_group` documents per subset and duplicate count, one window per document so that the
  samples are independent and a Wilson interval holds);
- EAP-IG attribution and the minimal circuit (the main mode: selection and evaluation parts,
  bootstrap intervals) on the FINAL model's contrastive pairs;
- the final model's minimal circuit evaluated at the checkpoint, and the clean-minus-corrupt
  logit difference there;
- overlap with the final circuit: edge Jaccard, the overlap coefficient (a small early
  circuit lying inside the final one has a low Jaccard by its size alone) and the rank
  correlation of |edge scores|.
The last point of every axis is the final model itself (`FINAL`), whose labels, attribution
and circuits are the main run's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
import torch

from vermem.attribution.graph import Graph
from vermem.circuits import evaluation, transfer
from vermem.circuits.settings import FinalCircuitSettings
from vermem.core import stats as S
from vermem.core.progress import ProgressArg, track
from vermem.core.stats import nan_to_none, rank_correlation, wilson
from vermem.data.corpus import sample_key

# -- labels: a fixed sample set --------------------------------------------------------------

def sample_set(samples: pl.DataFrame, per_group: int | None, seed: int) -> pl.DataFrame:
    """The samples every checkpoint is labelled on: one window per document (its start,
    offset 0: the paper's sample), at most `per_group` documents (seeded) per subset and,
    where the table has it, duplicate count. None: every document."""
    keys = ["subset", "dup_count"] if "dup_count" in samples.columns else ["subset"]
    starts = samples.filter(pl.col("offset") == 0)
    starts = starts.with_columns(pl.col("doc_id").map_elements(
        lambda d: sample_key(seed, d), return_dtype=pl.Int64).alias("_key"))
    if per_group is not None:
        starts = starts.sort("_key").group_by(keys, maintain_order=True).head(per_group)
    return starts.sort("subset", "doc_id").drop("_key")


GRADED = ("match_fraction", "exact_prefix")  # per-sample scores of the labels table
MEMO_SCHEMA = {"model": pl.String, "checkpoint": pl.String, "step": pl.Int64, "final": pl.Boolean,
               "by": pl.String, "group": pl.String, "n": pl.Int64, "memorized": pl.Int64,
               "share": pl.Float64, "share_lo": pl.Float64, "share_hi": pl.Float64,
               **{f"{s}{e}": pl.Float64 for s in GRADED for e in ("", "_lo", "_hi")}}


def _graded(g: pl.DataFrame, boot: S.Bootstrap) -> dict[str, float | None]:
    """Mean match fraction and mean exact-prefix length (tokens) of a group's samples, with
    percentile bootstrap intervals over its documents (one sample per document); null where
    the labels table has no such score or the group is empty."""
    out: dict[str, float | None] = {}
    for s in GRADED:
        v = (None, None, None)
        if s in g.columns and g.height:
            x = torch.tensor(g[s].cast(pl.Float64).to_list(), dtype=torch.float64)
            v = S.mean_ci(x, boot.indices(g.height), boot)
        out.update({s: v[0], f"{s}_lo": v[1], f"{s}_hi": v[2]})
    return out


def memorization(model: str, points: Sequence[tuple[str, int, bool, pl.DataFrame]],
                 sample_keys: pl.DataFrame, boot: S.Bootstrap | None = None) -> pl.DataFrame:
    """Share memorized of the sample set per checkpoint and subset (and duplicate count),
    with 95% Wilson intervals, and the graded scores behind the label: the mean match
    fraction of the continuation and the mean exact-prefix length, with bootstrap intervals
    over documents (`boot`, default 1000 resamples, seed 0). `points`: (checkpoint, step,
    final?, labels) in step order; labels of the final model may cover more samples: only
    `sample_keys` (doc_id, offset) count."""
    boot = boot or S.Bootstrap()
    rows = []
    for name, step, final, labels in points:
        lab = labels.join(sample_keys.select("doc_id", "offset"), on=["doc_id", "offset"],
                          how="semi")
        if lab.height != sample_keys.height:
            raise ValueError(f"checkpoint {name}: labels of {lab.height} of the "
                             f"{sample_keys.height} samples of the checkpoint sample set")
        lab = lab.with_columns((pl.col("label") == "memorized").alias("_m"))
        # duplicate counts are known for the organism only (null for hub and local models)
        known = "dup_count" in lab.columns and lab["dup_count"].null_count() < lab.height
        for by in ["subset"] + (["dup_count"] if known else []):
            for (group,), g in sorted(lab.filter(pl.col(by).is_not_null()).group_by(by),
                                      key=lambda kv: kv[0]):
                n, k = g.height, int(g["_m"].sum())
                lo, hi = wilson(k, n)
                rows.append({"model": model, "checkpoint": name, "step": step, "final": final,
                             "by": by, "group": str(group), "n": n, "memorized": k,
                             "share": k / n if n else None, "share_lo": lo, "share_hi": hi,
                             **_graded(g, boot)})
    return pl.DataFrame(rows, schema=MEMO_SCHEMA)


# -- circuits at a checkpoint ------------------------------------------------------------------

FINAL_SCHEMA = {
    "task": pl.String, "subset": pl.String, "direction": pl.String, "semantics": pl.String,
    "n_pairs": pl.Int64, "logit_gap": pl.Float64, "logit_gap_lo": pl.Float64,
    "logit_gap_hi": pl.Float64, "final_k": pl.Int64, "final_faithfulness": pl.Float64,
    "final_faithfulness_lo": pl.Float64, "final_faithfulness_hi": pl.Float64,
    "final_random_faithfulness": pl.Float64,
}


def logit_gap(model, graph: Graph, ev: evaluation.EvalSet, boot: S.Bootstrap
              ) -> tuple[float | None, float | None, float | None]:
    """Mean over the pairs of logit diff(clean run) - logit diff(corrupt run), with its
    bootstrap interval: how strongly the model tells the memorized continuation apart."""
    if ev.n == 0:
        return None, None, None
    plain = evaluation.Mode("noising", "inside", "resample")  # nothing patched: clean; all: corrupt
    clean, corrupt = evaluation.evaluate_many(
        model, graph, ev, [(plain, torch.zeros_like(graph.mask)), (plain, graph.mask)]
    )
    gap = clean.logit_diff - corrupt.logit_diff
    lo, hi = boot.interval(S.wmean(gap, boot.indices(ev.n, ev.groups))[None])
    return float(gap.mean()), float(lo[0]), float(hi[0])


def final_circuits(model, graph: Graph, evsets: Mapping[tuple[str, str], evaluation.EvalSet],
                   found: Mapping[tuple[str, str, str, str], torch.Tensor],
                   settings: FinalCircuitSettings, *, progress: ProgressArg = None
                   ) -> pl.DataFrame:
    """The final model's minimal circuits (`found`: (task, subset, direction, placement) ->
    edge mask, one placement) evaluated on this model's evaluation pairs of their own task
    and subset: F with its interval, random circuits of the same size, and the logit gap.
    A row per evaluation set and direction; F is null where the final model has no circuit
    (none in the band) or there are no pairs. `progress` (vermem.core.progress) counts the
    evaluation sets. `settings`: the directions of the rows, the ablation, the random
    circuits' seeds, the metric, the bootstrap and circuits per forward."""
    boot = settings.boot
    rows = []
    prog = track(progress, "final circuits", len(evsets), "evaluation sets")
    for (task, subset), ev in sorted(evsets.items()):
        own = {k: v for k, v in found.items() if k[:2] == (task, subset)}
        gap = logit_gap(model, graph, ev, boot)
        t = transfer.transfer(model, graph, {(task, subset): ev}, own, settings)
        by_dir = {r["source_direction"]: r for r in t.iter_rows(named=True)}
        sizes = {k[2]: int(v.sum()) for k, v in own.items()}
        for direction in settings.directions:
            r = by_dir.get(direction, {})
            rows.append({"task": task, "subset": subset, "direction": direction,
                         "semantics": transfer.semantics(task, direction), "n_pairs": ev.n,
                         "logit_gap": gap[0], "logit_gap_lo": gap[1], "logit_gap_hi": gap[2],
                         "final_k": sizes.get(direction),
                         "final_faithfulness": r.get("faithfulness"),
                         "final_faithfulness_lo": r.get("faithfulness_lo"),
                         "final_faithfulness_hi": r.get("faithfulness_hi"),
                         "final_random_faithfulness": r.get("random_faithfulness")})
        prog.advance()
    prog.close()
    return pl.DataFrame(rows, schema=FINAL_SCHEMA)


# -- overlap with the final circuit and the gathered table -----------------------------------

def edge_scores(tensors: Mapping[str, torch.Tensor], direction: str = "noising"
                ) -> torch.Tensor:
    """|score| of every edge of the graph (mask order) from an attribution file's tensors,
    in `direction`'s own scores (`storage.direction_scores`: de-noising rows are ranked by
    the de-noising scores where the file has them)."""
    from vermem.attribution.storage import direction_scores

    s = direction_scores(tensors, direction)
    return s.flatten()[tensors["mask"].flatten().bool()].abs()


def _mask(edge_index: Sequence[int], shape: torch.Size) -> torch.Tensor:
    m = torch.zeros(math.prod(shape), dtype=torch.bool)
    m[torch.tensor(list(edge_index), dtype=torch.long)] = True
    return m


def main_circuit(record: Mapping[str, Any], direction: str, main: Mapping[str, str]
                 ) -> dict | None:
    """The circuit record of the main mode in `direction` from a minimal.json, or None."""
    for c in record.get("circuits", []):
        if (c["direction"], c["placement"], c["ablation"]) == (
                direction, main["placement"], main["ablation"]):
            return c
    return None


CIRCUIT_SCHEMA = {
    "model": pl.String, "checkpoint": pl.String, "step": pl.Int64, "final": pl.Boolean,
    "task": pl.String, "subset": pl.String, "direction": pl.String, "semantics": pl.String,
    "n_pairs": pl.Int64, "n_selection": pl.Int64,
    "logit_gap": pl.Float64, "logit_gap_lo": pl.Float64, "logit_gap_hi": pl.Float64,
    "k": pl.Float64, "k_lo": pl.Float64, "k_hi": pl.Float64, "n_edges": pl.Int64,
    "faithfulness": pl.Float64, "faithfulness_lo": pl.Float64, "faithfulness_hi": pl.Float64,
    "final_k": pl.Int64, "final_faithfulness": pl.Float64, "final_faithfulness_lo": pl.Float64,
    "final_faithfulness_hi": pl.Float64, "final_random_faithfulness": pl.Float64,
    "jaccard": pl.Float64, "overlap_coefficient": pl.Float64, "rank_corr": pl.Float64,
}


def circuit_table(model: str, points: Sequence[dict], main: Mapping[str, str]) -> pl.DataFrame:
    """One row per checkpoint, task, subset and direction. Each point: {checkpoint, step,
    final, minimal: {(task, subset): minimal.json record}, scores: {(task, subset): attribution
    tensors}, evaluated: that point's `final_circuits` table}; the last point is the final
    model, whose circuits and scores the others are compared with."""
    last = points[-1]
    rows = []
    for p in points:
        for r in p["evaluated"].iter_rows(named=True):
            key, d = (r["task"], r["subset"]), r["direction"]
            rec = p["minimal"][key]
            own, fin = main_circuit(rec, d, main), main_circuit(last["minimal"][key], d, main)
            jac = ovl = None
            if own is not None and fin is not None:
                shape = p["scores"][key]["scores"].shape
                a, b = _mask(own["edge_index"], shape), _mask(fin["edge_index"], shape)
                jac, ovl = evaluation.jaccard(a, b), evaluation.overlap_coefficient(a, b)
            rank = nan_to_none(rank_correlation(  # average ranks for ties; None: a constant
                edge_scores(p["scores"][key], d), edge_scores(last["scores"][key], d),
                ties="average"))
            rows.append({
                "model": model, "checkpoint": p["checkpoint"], "step": p["step"],
                "final": p["final"], **{k: r[k] for k in ("task", "subset", "direction",
                                                          "semantics", "n_pairs")},
                "n_selection": rec.get("n_selection"),
                **{k: r[k] for k in ("logit_gap", "logit_gap_lo", "logit_gap_hi", "final_k",
                                     "final_faithfulness", "final_faithfulness_lo",
                                     "final_faithfulness_hi", "final_random_faithfulness")},
                **{k: (own or {}).get(k) for k in ("k", "k_lo", "k_hi", "faithfulness",
                                                   "faithfulness_lo", "faithfulness_hi")},
                "n_edges": rec.get("n_edges"), "jaccard": jac, "overlap_coefficient": ovl,
                "rank_corr": rank})
    return pl.DataFrame(rows, schema=CIRCUIT_SCHEMA)


# -- what the axis shows, computed ------------------------------------------------------------

def _first(rows: Sequence[dict], ok) -> int | None:
    return next((r["step"] for r in rows if ok(r)), None)


def _from(rows: Sequence[dict], ok) -> int | None:
    """The first step from which `ok` holds at every later point, the last (the final
    model) included: None when it fails at the last point."""
    out = None
    for r in reversed(rows):
        if not ok(r):
            break
        out = r["step"]
    return out


def _ci(r: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {key: r.get(key), f"{key}_lo": r.get(f"{key}_lo"), f"{key}_hi": r.get(f"{key}_hi")}


def defined(r: Mapping[str, Any]) -> bool:
    """F (a ratio over M(full) - M(empty)) means something at a checkpoint only where the
    model tells the clean run from the corrupt one: |logit gap| >= circuits.MIN_GAP and its
    interval excludes 0."""
    gap, lo, hi = r.get("logit_gap"), r.get("logit_gap_lo"), r.get("logit_gap_hi")
    return (gap is not None and abs(gap) >= evaluation.MIN_GAP and lo is not None and hi is not None
            and (lo > 0 or hi < 0))


def summary(memo: pl.DataFrame, circ: pl.DataFrame, target: float, min_documents: int = 3
            ) -> dict[str, Any]:
    """The steps at which things happen, from the two tables (null: not within the axis):
    - per duplicate count (organism) or subset: `emerges`, the first step whose Wilson
      interval lies wholly above that of the unseen documents (duplicate count 0; for a
      subset, above 0) with at least `min_documents` documents memorized (one memorized
      document of six can clear the unseen interval on its own), and `half`, the first step
      with at least half memorized; `graded`: per group and step the share memorized next
      to the mean match fraction and exact-prefix length, with their intervals;
    - per task, subset and direction: `final_faithful`, the first step whose interval of the
      final circuit's F lies inside the band [target, 2 - target], `final_faithful_from`,
      the first step from which it does at every later point, the final model included
      (null when the final model's own interval leaves the band), `final_in_band` and
      `final_in_band_from`, the same for the point estimate, `own_circuit`, the first step
      with a minimal circuit, and `overlap`: per earlier checkpoint the size of its own
      minimal circuit, its Jaccard index and overlap coefficient with the final circuit;
      `undefined`: the steps where F means nothing because the model does not tell the clean
      run from the corrupt one (`defined`: |logit gap| < circuits.MIN_GAP, or its interval
      contains 0; the untrained t0), which none of the steps above can be.
    A step is only as precise as the spacing of the checkpoints around it."""
    out: dict[str, Any] = {"target": target, "min_documents": min_documents,
                           "memorization": [], "graded": [], "circuits": []}
    by = "dup_count" if (memo["by"] == "dup_count").any() else "subset"
    m = memo.filter(pl.col("by") == by).sort("step")
    unseen = {r["step"]: r for r in m.filter(pl.col("group") == "0").iter_rows(named=True)} \
        if by == "dup_count" else {}
    groups = sorted(set(m["group"]), key=lambda g: (by == "dup_count" and int(g), g))
    for g in groups:
        rows = m.filter(pl.col("group") == g).to_dicts()
        out["graded"] += [{"by": by, "group": g, "step": r["step"], "final": r["final"],
                           "n": r["n"], "memorized": r["memorized"], **_ci(r, "share"),
                           **_ci(r, "match_fraction"), **_ci(r, "exact_prefix")}
                          for r in rows]
        if by == "dup_count" and g == "0":
            continue

        def above(r):
            ref = unseen.get(r["step"], {}).get("share_hi", 0.0) or 0.0
            return (r["share_lo"] is not None and r["share_lo"] > ref
                    and r["memorized"] >= min_documents)
        out["memorization"].append({
            "by": by, "group": g, "n": rows[-1]["n"] if rows else 0,
            "final_share": rows[-1]["share"] if rows else None,
            "emerges": _first(rows, above),
            "half": _first(rows, lambda r: r["share"] is not None and r["share"] >= 0.5)})
    lo_band, hi_band = target, 2 - target

    def faithful(r):
        return (defined(r) and r["final_faithfulness_lo"] is not None
                and r["final_faithfulness_hi"] is not None
                and r["final_faithfulness_lo"] >= lo_band
                and r["final_faithfulness_hi"] <= hi_band)

    def in_band(r):
        return defined(r) and r["final_faithfulness"] is not None and \
            lo_band <= r["final_faithfulness"] <= hi_band
    for key, g in sorted(circ.sort("step").group_by("task", "subset", "direction",
                                                   maintain_order=True),
                         key=lambda kv: kv[0]):
        rows = g.to_dicts()
        out["circuits"].append({
            "task": key[0], "subset": key[1], "direction": key[2],
            "semantics": rows[0]["semantics"], "n_pairs": rows[-1]["n_pairs"],
            "final_k": rows[-1]["final_k"],
            "final_faithful": _first(rows, faithful),
            "final_faithful_from": _from(rows, faithful),
            "final_in_band": _first(rows, in_band),
            "final_in_band_from": _from(rows, in_band),
            "own_circuit": _first(rows, lambda r: defined(r) and r["k"] is not None),
            "undefined": [r["step"] for r in rows if not defined(r)],
            # no overlap where F is undefined: no circuit is found there that means anything
            "overlap": [{"step": r["step"], "k": r["k"], "jaccard": r["jaccard"],
                         "overlap_coefficient": r.get("overlap_coefficient")}
                        for r in rows if not r["final"] and defined(r)]})
    return out


def read_points(inputs: Mapping[str, Any], names: Sequence[str], sets: Sequence[tuple],
                final_step: int | None) -> list[dict[str, Any]]:
    """The checkpoint_tables rule's points in step order (the final model last when its
    step is unknown): each point's name (`names`, in input order: the checkpoints in config
    order, then the final model), step (a record without one: `final_step`), labels,
    minimal circuits, ranking scores and final circuits' table, from the rule's inputs
    (`inputs`: per point one record, labels and evaluated table, and one minimal record
    and ranking file per (task, subset) of `sets`)."""
    from vermem.attribution import storage
    from vermem.core import files

    n = len(sets)
    points = []
    for i, rec_path in enumerate(inputs["records"]):
        rec = files.read_json(rec_path)
        step = rec.get("step")  # a hub model's own record has none: final_step, from config
        points.append({
            "checkpoint": names[i], "step": final_step if step is None else step,
            "final": i == len(inputs["records"]) - 1,
            "labels": pl.read_parquet(inputs["labels"][i]),
            "minimal": {k: files.read_json(f) for k, f in
                        zip(sets, inputs["minimal"][i * n:(i + 1) * n], strict=True)},
            "scores": {k: storage.load(f)[0] for k, f in
                       zip(sets, inputs["scores"][i * n:(i + 1) * n], strict=True)},
            "evaluated": pl.read_parquet(inputs["evaluated"][i])})
    points.sort(key=lambda q: (q["step"] is None, q["step"] or 0))
    return points
