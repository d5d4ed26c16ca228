"""Attribution methods side by side (docs/study-a.md, "Methods compared"): the MIB-style
comparison for the memorization tasks, on one subset.

1. Scores. Each method scores every edge on the attribution pairs, in the noising
   direction: EAP, EAP-IG (inputs), EAP-IG-activations (vermem.attribution.scoring), and `exact`,
   single-edge activation patching (the quantity the others approximate:
   M(clean run with that edge from the corrupt run) - M(clean run), every edge in batched
   forwards). Scores are kept summed per attribution document ([docs, S, D]) so that the
   cluster bootstrap can resample documents.
2. Agreement. For every two methods: Spearman's rank correlation of |score| over the
   graph's edges, and the Jaccard index of their top-k edge sets at k = 1% and 5% of the
   edges; intervals from the same document draws applied to both methods' scores.
3. Quality. Per method, in the main mode (both directions, each ranked by the method's
   own scores of that direction: de-noising by the de-noising scores, as every other table
   ranks it): MIB's CPR and CMD on the evaluation pairs (vermem.circuits.mib) and the
   minimal circuit chosen on the selection pairs and reported on the evaluation pairs
   (vermem.circuits.search.sweep), each with its interval; and the paired CPR difference of
   every two methods per direction (`cpr_differences`: the same evaluation pairs and
   bootstrap draws for both, so a ranking of methods rests on an interval of the
   difference).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace

import polars as pl
import torch

from vermem.attribution import scoring, storage
from vermem.attribution.graph import Graph
from vermem.attribution.settings import AttributionSettings
from vermem.circuits import evaluation, mib, search
from vermem.circuits.settings import ComparisonSettings, MibSettings, SearchSettings
from vermem.core.progress import ProgressArg, emitter, prefixed, track
from vermem.core.stats import Bootstrap, nan_to_none, rank_correlation
from vermem.core.vocabulary import DIRECTIONS

log = logging.getLogger(__name__)

# what attribution.compare_methods may name: the attribution methods (`scoring.METHODS`) and
# exact single-edge activation patching (`doc_sums`)
COMPARED_METHODS = (*scoring.METHODS, "exact")
TOP_FRACTIONS = (0.01, 0.05)


def doc_sums(model, graph: Graph, pairs: pl.DataFrame, method: str,
             settings: ComparisonSettings, batch_size: int, *, progress: ProgressArg = None,
             directions: Sequence[str] = DIRECTIONS
             ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per direction, (edge scores summed over each document's pairs [docs, S, D], pairs per
    document [docs]), documents in sorted order (noising: the clean run with one edge
    corrupted; de-noising: the corrupt run with one edge restored, the attribution methods'
    `scores_denoising`). An attribution method scores every direction in one pass (shared
    source forwards, scoring.attribute_directions). `progress` (vermem.core.progress):
    pairs attributed, or for `exact` single-edge circuits evaluated. `settings`: the IG
    steps, the metric and circuits per forward."""
    steps, kind = settings.steps, settings.metric
    docs = sorted(set(pairs["doc_id"]))
    if method == "exact":
        return {d: _exact_sums(model, graph, pairs, docs, settings, batch_size, d,
                               prefixed(emitter(progress), f"{d} "))
                for d in directions}
    attribution = AttributionSettings(method, steps, kind, batch_size, "hooks",
                                      tuple(directions), positions=False,
                                      input_edges=settings.input_edges)
    sums = {d: torch.zeros(len(docs), *graph.mask.shape, dtype=torch.float64)
            for d in directions}
    counts = torch.zeros(len(docs), dtype=torch.float64)
    with track(progress, "scores", pairs.height, "pairs") as p:
        for i, doc in enumerate(docs):
            q = pairs.filter(pl.col("doc_id") == doc)
            out, n = scoring.run(model, graph, q["clean"].to_list(), q["corrupt"].to_list(),
                                 q["answer"].to_list(), q["wrong"].to_list(), attribution,
                                 progress=p)
            for d in directions:
                sums[d][i] = storage.direction_scores(out, d).double() * n
            counts[i] = n
    return {d: (sums[d], counts.clone()) for d in directions}


def _exact_sums(model, graph: Graph, pairs: pl.DataFrame, docs: list[str],
                settings: ComparisonSettings, batch_size: int, direction: str,
                progress: ProgressArg) -> tuple[torch.Tensor, torch.Tensor]:
    """`doc_sums` of exact single-edge patching in one direction: the edge corrupted in the
    clean run (noising) or restored in the corrupt run (de-noising), each against the run
    with no edge patched."""
    sums = torch.zeros(len(docs), *graph.mask.shape, dtype=torch.float64)
    counts = torch.zeros(len(docs), dtype=torch.float64)
    ev = evaluation.EvalSet.of_pairs(model, pairs, batch_size)
    edges = graph.mask.nonzero().tolist()
    mode = evaluation.Mode(direction, "inside", "resample")
    jobs = [(mode, torch.zeros_like(graph.mask))]
    for s, d in edges:
        one = torch.zeros_like(graph.mask)
        one[s, d] = True
        jobs.append((mode, one))
    with track(progress, "scores", len(jobs), evaluation.EVALUATIONS) as p:
        res = evaluation.evaluate_many(model, graph, ev, jobs, settings.metric,
                                       settings.per_forward, progress=p)
    base = res[0].metric
    index = {d: i for i, d in enumerate(docs)}
    g = torch.tensor([index[d] for d in ev.docs], dtype=torch.long)
    counts.index_add_(0, g, torch.ones(len(g), dtype=torch.float64))
    for (s, d), r in zip(edges, res[1:], strict=True):
        sums[:, s, d].index_add_(0, g, r.metric - base)
    return sums, counts


def top_jaccard(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """Jaccard index of the top-k by |value| of a, b [..., E] (ties by position): [...]."""
    if k == 0:
        return torch.ones(a.shape[:-1], dtype=torch.float64)
    ia = torch.zeros(a.shape, dtype=torch.bool).scatter_(-1, a.abs().topk(k, -1).indices, True)
    ib = torch.zeros(b.shape, dtype=torch.bool).scatter_(-1, b.abs().topk(k, -1).indices, True)
    return (ia & ib).sum(-1).double() / (ia | ib).sum(-1).double()


AGREEMENT_SCHEMA = {
    "method_a": pl.String, "method_b": pl.String, "n_pairs": pl.Int32, "n_docs": pl.Int32,
    "statistic": pl.String, "k": pl.Int32, "value": pl.Float64, "value_lo": pl.Float64,
    "value_hi": pl.Float64, "direction": pl.String,
}
CPR_DIFFERENCE = "CPR difference"  # a `statistic`: method_a's CPR - method_b's, paired


def cpr_differences(reps: dict[tuple[str, str], tuple[float, torch.Tensor]], n_pairs: int,
                    n_docs: int, boot: Bootstrap) -> list[dict]:
    """Rows (AGREEMENT_SCHEMA, statistic CPR_DIFFERENCE) of the paired difference of every
    two methods' CPR per direction: reps: (method, direction) -> (CPR, its replicates [R]
    over the evaluation pairs, the same draws for every method), so the difference's
    interval is the percentile interval of the replicates' differences."""
    rows = []
    methods = list(dict.fromkeys(m for m, _ in reps))
    for d in dict.fromkeys(d for _, d in reps):
        for i, a in enumerate(methods):
            for b in methods[i + 1:]:
                if (a, d) not in reps or (b, d) not in reps:
                    continue
                (va, ra), (vb, rb) = reps[a, d], reps[b, d]
                lo, hi = boot.interval((ra - rb)[None])
                rows.append({"method_a": a, "method_b": b, "n_pairs": n_pairs,
                             "n_docs": n_docs, "statistic": CPR_DIFFERENCE, "k": 0,
                             "value": va - vb, "value_lo": nan_to_none(lo[0]),
                             "value_hi": nan_to_none(hi[0]), "direction": d})
    return rows


def agreement(graph: Graph, sums: dict[str, tuple[torch.Tensor, torch.Tensor]],
              boot: Bootstrap) -> pl.DataFrame:
    """Spearman of |score| and top-k Jaccard (TOP_FRACTIONS of the edges) between every two
    methods (AGREEMENT_SCHEMA), on the graph's edges; intervals from one set of document
    draws shared by both methods (every method scored the same documents)."""
    flat = graph.mask.flatten()
    names = list(sums)
    rows: list[dict] = []
    if not names:
        return pl.DataFrame(rows, schema=AGREEMENT_SCHEMA)
    counts = sums[names[0]][1]
    n_docs, n = len(counts), int(counts.sum())
    w = boot.indices(n_docs)  # [R, docs]: documents drawn whole
    point, reps = {}, {}
    for m in names:
        s = sums[m][0].flatten(1)[:, flat]  # [docs, E]
        point[m] = s.sum(0) / max(n, 1)
        reps[m] = (w @ s) / (w @ counts).clamp_min(1e-12)[:, None]  # [R, E]
    e = int(flat.sum())
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            stats = [("spearman |score|", 0,
                      lambda x, y: rank_correlation(x.abs(), y.abs()))]
            stats += [(f"top {100 * f:g}% Jaccard", int(f * e),
                       lambda x, y, k=int(f * e): top_jaccard(x, y, k)) for f in TOP_FRACTIONS]
            for name, k, fn in stats:
                v = float(fn(point[a], point[b])) if n else None
                lo, hi = boot.interval(fn(reps[a], reps[b])[None]) if n else (None, None)
                rows.append({"method_a": a, "method_b": b, "n_pairs": n, "n_docs": n_docs,
                             "statistic": name, "k": k, "value": v, "direction": "noising",
                             "value_lo": None if lo is None else float(lo[0]),
                             "value_hi": None if hi is None else float(hi[0])})
    return pl.DataFrame(rows, schema=AGREEMENT_SCHEMA)


QUALITY_SCHEMA = {
    "method": pl.String, "direction": pl.String, "n_attribution": pl.Int32,
    "n_selection": pl.Int32, "n_pairs": pl.Int32,
    "cpr": pl.Float64, "cpr_lo": pl.Float64, "cpr_hi": pl.Float64,
    "cmd": pl.Float64, "cmd_lo": pl.Float64, "cmd_hi": pl.Float64,
    "k": pl.Int32, "k_lo": pl.Float64, "k_hi": pl.Float64, "faithfulness": pl.Float64,
    "faithfulness_lo": pl.Float64, "faithfulness_hi": pl.Float64,
}


def compare(
    model,
    graph: Graph,
    attr: pl.DataFrame,
    sel: evaluation.EvalSet,
    ev: evaluation.EvalSet,
    settings: ComparisonSettings,
    batch_size: int,
    *,
    progress: ProgressArg = None,
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, float]]:
    """(quality per method and direction, QUALITY_SCHEMA; agreement between methods,
    AGREEMENT_SCHEMA; each method's attribution time in seconds, kept out of the tables so
    that they are the same bytes on every run) of one task and subset: attribution pairs
    `attr` (a pairs table), selection and evaluation sets `sel`, `ev`. `progress`
    (vermem.core.progress): the steps (each method's scores, then each method's circuits), and
    within each step its own count, its lines led by the method's name. `settings`
    (ComparisonSettings): the methods, the metric, the main mode, the target, the curve's
    points, the bootstrap, circuits per forward and sizes per search round."""
    methods, main, boot = settings.methods, settings.main, settings.boot
    search_settings = SearchSettings(
        target=settings.target, metric=settings.metric, curve_points=settings.curve_points,
        boot=boot, per_forward=settings.per_forward, search_width=settings.search_width,
        resampler=settings.resampler)
    mib_settings = MibSettings(settings.metric, boot, settings.per_forward,
                               resampler=settings.resampler)
    sums, seconds = {}, {}
    by_dir: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}
    steps_p = track(progress, "method comparison", 2 * len(methods), "steps")
    for m in methods:
        t = time.perf_counter()
        # each direction ranked by its own scores, as every other table ranks it
        by_dir[m] = doc_sums(model, graph, attr, m, settings, batch_size,
                             progress=prefixed(emitter(progress), f"{m} "))
        sums[m] = by_dir[m]["noising"]
        seconds[m] = time.perf_counter() - t
        steps_p.advance()
    modes = [evaluation.Mode(d, main["placement"], main["ablation"]) for d in DIRECTIONS]
    rows = []
    cpr_reps: dict[tuple[str, str], tuple[float, torch.Tensor]] = {}
    for m in methods:
        s, counts = sums[m]
        n_attr = int(counts.sum())
        scores = {d: (by_dir[m][d][0].sum(0) / max(n_attr, 1)).float() for d in DIRECTIONS}
        usable = n_attr > 0 and sel.n > 0 and ev.n > 0
        inner = prefixed(emitter(progress), f"{m} ")
        areas, kept = mib.scored(model, graph, ev, scores, modes if usable else [],
                                 mib_settings, m, progress=inner)
        for mode, name, point, reps in kept:
            if name == "attribution":
                cpr_reps[m, mode.direction] = (point, reps)
        _, minimal = search.sweep(model, graph, sel, ev, scores, modes if usable else [],
                                  search_settings, progress=inner)
        steps_p.advance()
        for mode in modes:
            a = areas.filter(pl.col("direction") == mode.direction)
            a = a.row(0, named=True) if a.height else {}
            c = minimal.get(mode, {})
            rows.append({"method": m, "direction": mode.direction, "n_attribution": n_attr,
                         "n_selection": sel.n, "n_pairs": ev.n,
                         **{k: a.get(k) for k in ("cpr", "cpr_lo", "cpr_hi", "cmd", "cmd_lo",
                                                   "cmd_hi")},
                         **{k: c.get(k) for k in ("k", "k_lo", "k_hi", "faithfulness",
                                                   "faithfulness_lo", "faithfulness_hi")}})
    steps_p.close()
    n_docs = int(ev.groups.max()) + 1 if ev.n and ev.groups is not None else ev.n
    agree = pl.concat([agreement(graph, sums, boot), pl.DataFrame(
        cpr_differences(cpr_reps, ev.n, n_docs, boot), schema=AGREEMENT_SCHEMA)])
    return pl.DataFrame(rows, schema=QUALITY_SCHEMA), agree, seconds


def compare_tasks(model, graph: Graph, pairs: pl.DataFrame, source: str, tasks: Sequence[str],
                  settings: ComparisonSettings, batch_size: int, *,
                  progress: ProgressArg = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`compare` on each task of the main subset of `pairs` (read from the file `source`):
    its attribution pairs, selection and evaluation sets (`split_sets`; the evaluation pairs
    for both with `settings.select_on_evaluation`). Returns the (quality, agreement) tables
    of every task, led by task and subset; a line per task and method in the log."""
    subset, quality, agree = settings.main_subset, [], []
    if settings.resampler is None:  # the run's shared draws: the MIB table's intervals
        settings = replace(settings, resampler=evaluation.resampler(
            pairs, settings.boot, settings.max_pairs, settings.seed))
    for task in tasks:
        attr = pairs.filter((pl.col("task") == task) & (pl.col("subset") == subset)
                            & (pl.col("split") == "attribution"))
        sel_pairs, ev_pairs = evaluation.split_sets(pairs, task, subset, source,
                                                    settings.max_pairs, settings.seed)
        if settings.select_on_evaluation:  # no selection part: the authors' design
            sel_pairs = ev_pairs
        sel, ev = (evaluation.EvalSet.of_pairs(model, q, batch_size)
                   for q in (sel_pairs, ev_pairs))
        log.info("%s / %s: %d attribution pairs (%d documents), %d selection, %d evaluation; "
             "methods %s", task, subset, attr.height, attr["doc_id"].n_unique(), sel.n, ev.n,
             ", ".join(settings.methods))
        q, a, secs = compare(model, graph, attr, sel, ev, settings, batch_size,
                             progress=progress)
        front = [pl.lit(task).alias("task"), pl.lit(subset).alias("subset"), pl.all()]
        quality.append(q.select(front))
        agree.append(a.select(front))
        for r in q.iter_rows(named=True):
            log.info("%s %s: CPR %s, minimal k %s (attribution %.1f s)", r["method"],
                 r["direction"], "-" if r["cpr"] is None else f"{r['cpr']:.3f}", r["k"],
                 secs[r["method"]])
    return pl.concat(quality), pl.concat(agree)
