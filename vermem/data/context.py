"""Context dependence of memorized recall (docs/study-a.md, Stage 10c): how much of the
prefix a memorized token needs, the local-prefix-against-global-context question of Study
B asked of Study A's memorized text; and the Distant Context pair set built on it.

Samples: the clean prompts of the Branch Comparison pairs, full[:d+1] of a memorized sample
at its divergence point d, whose memorized token (the target) is full[d+1]; and those of
their matched controls (`branch_comparison_control`: the same construction on
non-memorized text at the same d). Each sample gets one *source*: a non-memorized window of
another document of its subset and part (the control pool, `contrastive.control_pool`),
chosen by a seeded hash of the sample. For r in `radii` (clipped to the prompt's length):

- distant replacement: the prompt's tokens farther than r from the predicted position (all
  but the last r) become the source's tokens at the same positions; the length is kept, so
  every position keeps its index;
- truncation: only the last r tokens are kept.

Each condition's greedy continuation is compared with the text (does the model still give
the memorized token, top-1 = target; how many continuation tokens it keeps reproducing)
and with the clean prompt's own greedy continuation (the same measure for text the model
never memorized, where the text's token is not what the model says).

The Distant Context task (vermem.data.contrastive.distant_pairs): clean = the prompt,
corrupt = its distant replacement at r = `contrastive.distant_r`, answer = the clean run's
greedy token (on a memorized sample it must be the memorized token), wrong = the corrupt
run's greedy token;
a pair whose corrupt run still gives the answer has no contrast and is dropped, as is a
prompt not longer than r (nothing to replace). The control is the same construction on the
control prompts. Clean and corrupt differ only at distances > r from the predicted
position, so an attribution of this task can only score edges that read the distant
prefix there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import polars as pl
import torch

from vermem.core.vocabulary import BRANCH, control_task
from vermem.data.corpus import sample_key
from vermem.data.labels import greedy

MODES = ("clean", "replace", "truncate")
GROUPS = {BRANCH: "memorized", control_task(BRANCH): "control"}


def distant_replace(prompt: Sequence[int], source: Sequence[int], r: int) -> list[int]:
    """The prompt with every token farther than r from the predicted position (all but the
    last r) replaced by the source's token at the same position; length kept."""
    keep = min(max(r, 0), len(prompt))
    cut = len(prompt) - keep
    if len(source) < cut:
        raise ValueError(f"source of {len(source)} tokens cannot cover {cut} positions")
    return list(source[:cut]) + list(prompt[cut:])


def truncate(prompt: Sequence[int], r: int) -> list[int]:
    """The last r tokens of the prompt (all of it when r >= its length)."""
    return list(prompt[-max(r, 1):])


def samples(pairs: pl.DataFrame, labels: pl.DataFrame, parts: Mapping[str, str] | None = None
            ) -> pl.DataFrame:
    """The samples of the measurement: every Branch Comparison pair and its control (task,
    group, subset, doc_id, offset, d, split, prompt = clean, target = answer, full = the
    sample's whole window). `parts` (doc_id -> part) where the pairs have no split."""
    rows = pairs.filter(pl.col("task").is_in(list(GROUPS)))
    if "split" not in rows.columns:
        rows = rows.with_columns(pl.col("doc_id").replace_strict(
            dict(parts or {}), default=None, return_dtype=pl.String).alias("split"))
    full = labels.select("doc_id", "offset",
                         pl.concat_list("prefix", "continuation").alias("full"))
    return (rows.join(full, on=["doc_id", "offset"], how="left")
            .with_columns(pl.col("task").replace_strict(GROUPS).alias("group"))
            .select("task", "group", "subset", "doc_id", "offset", "d", "split",
                    pl.col("clean").alias("prompt"), pl.col("answer").alias("target"),
                    "full")
            .sort("task", "subset", "doc_id", "offset"))


def sources(rows: pl.DataFrame, pool: pl.DataFrame, parts: Mapping[str, str], seed: int
            ) -> tuple[list[int | None], Counter]:
    """For each row (doc_id, offset, subset): the index into `pool` (doc_id, offset,
    subset, full: the control pool) of its source, a window of another document of the same
    subset and part, at a seeded hash of the row; None (counted by subset) where there is
    none."""
    groups: dict[tuple, list[int]] = {}
    for i, (doc, subset) in enumerate(zip(pool["doc_id"], pool["subset"], strict=True)):
        groups.setdefault((subset, parts.get(doc)), []).append(i)
    out: list[int | None] = []
    missing: Counter = Counter()
    for doc, off, subset in zip(rows["doc_id"], rows["offset"], rows["subset"], strict=True):
        cands = groups.get((subset, parts.get(doc)), [])
        start = sample_key(seed, f"distant:{doc}:{off}") % len(cands) if cands else 0
        pick = next((cands[(start + k) % len(cands)] for k in range(len(cands))
                     if pool["doc_id"][cands[(start + k) % len(cands)]] != doc), None)
        if pick is None:
            missing[subset] += 1
        out.append(pick)
    return out, missing


@torch.no_grad()
def greedy_runs(model, prompts: Sequence[Sequence[int]], n_new: int, batch_size: int
         ) -> list[list[int]]:
    """Greedy continuation (n_new tokens) of every prompt, prompts of one length batched."""
    dev = next(model.parameters()).device
    out: list[list[int]] = [[] for _ in prompts]
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    for idx in by_len.values():
        for j in range(0, len(idx), batch_size):
            chunk = idx[j: j + batch_size]
            x = torch.tensor([list(prompts[i]) for i in chunk], dtype=torch.long, device=dev)
            for i, g in zip(chunk, greedy(model, x, n_new).cpu().tolist(), strict=True):
                out[i] = g
    return out


def run_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens of a and b agree."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


MEASURE_SCHEMA = {
    "task": pl.String, "group": pl.String, "subset": pl.String, "doc_id": pl.String,
    "offset": pl.Int32, "d": pl.Int32, "split": pl.String, "prompt_len": pl.Int32,
    "mode": pl.String, "r": pl.Int32, "r_eff": pl.Int32, "target_top1": pl.Boolean,
    "clean_top1": pl.Boolean, "text_run": pl.Int32, "clean_run": pl.Int32,
    "horizon": pl.Int32,
}


def measure(model, rows: pl.DataFrame, source_tokens: Sequence[Sequence[int] | None],
            radii: Sequence[int], n_new: int, batch_size: int) -> pl.DataFrame:
    """One row per sample and condition (mode clean with r null; replace and truncate at
    every r): whether the greedy token is the target (`target_top1`) and the clean run's
    token (`clean_top1`), how many tokens of the text after the prompt (`text_run`) and of
    the clean run's continuation (`clean_run`) the greedy continuation reproduces, of
    `horizon` = min(n_new, text left). Rows without a source are left out."""
    keep = [i for i, s in enumerate(source_tokens) if s is not None]
    prompts, conds = [], []
    for i in keep:
        p, src = rows["prompt"][i].to_list(), source_tokens[i]
        prompts.append(p)
        conds.append((i, "clean", None, len(p)))
        for r in radii:
            r_eff = min(r, len(p))
            prompts.append(distant_replace(p, src, r_eff))
            conds.append((i, "replace", r, r_eff))
            prompts.append(truncate(p, r_eff))
            conds.append((i, "truncate", r, r_eff))
    gens = greedy_runs(model, prompts, n_new, batch_size)
    clean_gen = {i: g for (i, mode, _, _), g in zip(conds, gens, strict=True) if mode == "clean"}
    out = []
    for (i, mode, r, r_eff), g in zip(conds, gens, strict=True):
        p, full = rows["prompt"][i], rows["full"][i]
        text = list(full[len(p): len(p) + n_new]) if full is not None else [rows["target"][i]]
        h = min(n_new, len(text))
        out.append({"task": rows["task"][i], "group": rows["group"][i],
                    "subset": rows["subset"][i], "doc_id": rows["doc_id"][i],
                    "offset": rows["offset"][i], "d": rows["d"][i], "split": rows["split"][i],
                    "prompt_len": len(p), "mode": mode, "r": r, "r_eff": r_eff,
                    "target_top1": g[0] == rows["target"][i],
                    "clean_top1": g[0] == clean_gen[i][0],
                    "text_run": run_length(g[:h], text[:h]),
                    "clean_run": run_length(g[:h], clean_gen[i][:h]), "horizon": h})
    return pl.DataFrame(out, schema=MEASURE_SCHEMA)


MEASURES = ("target_top1", "clean_top1", "text_run", "clean_run")


def curves(table: pl.DataFrame, resampler) -> pl.DataFrame:
    """Mean of every measure per group (memorized, control, and their difference), mode
    and r, with cluster-bootstrap intervals over documents (`resampler`:
    vermem.core.stats.Resampler, strata = subsets; memorized and control from the same
    draws, so the difference has its own interval); the clean condition appears at every r
    of the other modes as mode clean (r null)."""
    boot = resampler.boot
    rows = []
    for (mode, r), g in sorted(table.group_by("mode", "r"),
                               key=lambda kv: (MODES.index(kv[0][0]), kv[0][1] or 0)):
        by = {grp: g.filter(pl.col("group") == grp) for grp in ("memorized", "control")}
        for measure_ in MEASURES:
            reps, point = {}, {}
            for grp, h in by.items():
                if not h.height:
                    continue
                x = h[measure_].cast(pl.Float64).to_torch().double()
                w = resampler.weights(h["doc_id"].to_list())  # [S, n]
                point[grp] = float(x.mean())
                reps[grp] = (w * x).sum(1) / w.sum(1).clamp(min=1e-12)
                reps[grp][w.sum(1) == 0] = float("nan")
            if len(reps) == 2:
                point["difference"] = point["memorized"] - point["control"]
                reps["difference"] = reps["memorized"] - reps["control"]
            for grp, rep in reps.items():
                lo, hi = boot.interval(rep)
                n = by[grp].height if grp in by else by["memorized"].height
                docs = by[grp]["doc_id"].n_unique() if grp in by else None
                rows.append({"group": grp, "mode": mode, "r": r, "measure": measure_,
                             "mean": point[grp], "low": float(lo), "high": float(hi),
                             "n": n, "documents": docs})
    return pl.DataFrame(rows, schema={
        "group": pl.String, "mode": pl.String, "r": pl.Int32, "measure": pl.String,
        "mean": pl.Float64, "low": pl.Float64, "high": pl.Float64, "n": pl.Int64,
        "documents": pl.Int64})


def suggested_r(curve: pl.DataFrame, measure_: str = "target_top1") -> int | None:
    """The rule that chooses the Distant Context task's r: the largest r at which the
    memorized samples' `measure_` under distant replacement is at most half of its clean
    value, i.e. the farthest prefix whose loss still removes at least half of the recall
    (replacing beyond a larger r removes less); None where no r does (the memory does not
    need the prefix beyond the smallest r measured)."""
    mem = curve.filter((pl.col("group") == "memorized") & (pl.col("measure") == measure_))
    clean = mem.filter(pl.col("mode") == "clean")["mean"]
    if not clean.len():
        return None
    rep = mem.filter(pl.col("mode") == "replace").sort("r", descending=True)
    return next((int(r) for r, m in zip(rep["r"], rep["mean"], strict=True)
                 if m <= 0.5 * clean[0]), None)


def summary(curve: pl.DataFrame, distant_r: int | None, missing: Mapping[str, int]) -> dict:
    """The r the rule suggests (`suggested_r`), the configured one, and whether the curve
    supports it (the memorized top-1 rate with distant replacement at the configured r at
    most half its clean value), with the clean and replaced rates and the samples per
    group; `missing`: samples without a source window, by subset."""
    def rate(group: str, mode: str, r: int | None) -> float | None:
        g = curve.filter((pl.col("group") == group) & (pl.col("measure") == "target_top1")
                         & (pl.col("mode") == mode))
        g = g.filter(pl.col("r").is_null() if r is None else pl.col("r") == r)
        return float(g["mean"][0]) if g.height else None

    clean = rate("memorized", "clean", None)
    at_r = rate("memorized", "replace", distant_r) if distant_r is not None else None
    counts = (curve.filter((pl.col("mode") == "clean") & (pl.col("measure") == "target_top1"))
              .select("group", "n", "documents"))
    return {"rule": "largest r whose memorized top-1 rate with distant replacement is at "
                    "most half the clean rate",
            "suggested_r": suggested_r(curve), "distant_r": distant_r,
            "supported": (None if clean is None or at_r is None else at_r <= 0.5 * clean),
            "memorized_clean_top1": clean, "memorized_top1_at_distant_r": at_r,
            "control_clean_top1": rate("control", "clean", None),
            "control_top1_at_distant_r": (rate("control", "replace", distant_r)
                                          if distant_r is not None else None),
            "samples": {r["group"]: {"n": r["n"], "documents": r["documents"]}
                        for r in counts.iter_rows(named=True)},
            "without_source": dict(missing)}
