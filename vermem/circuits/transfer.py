"""Transfer: each minimal circuit evaluated on the other tasks and subsets, circuits paired
by meaning (`SEMANTICS`: prevention, induction), edge overlap, and the size-matched
comparison of rankings (`matched_transfer`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import polars as pl
import torch

from vermem.attribution import storage
from vermem.attribution.graph import Graph
from vermem.circuits.evaluation import (
    EVALUATIONS,
    EvalSet,
    Mode,
    Result,
    circuit,
    evaluate_many,
    jaccard,
    log_sizes,
    random_ranking,
    ranking,
)
from vermem.circuits.settings import TransferSettings
from vermem.core.progress import ProgressArg, track
from vermem.core.stats import f_replicates, mean_ci, nan_to_none
from vermem.core.vocabulary import BRANCH, DECISION, DISTANT, MEANINGS, base_task

# -- transfer ------------------------------------------------------------------------------

# What a direction does to memorization, per task. Branch Comparison: clean = the memorized
# branch, so noising (corrupting edges of the clean run) prevents memorization and
# de-noising (restoring them in the corrupt run) induces it. Memorization Decision: clean =
# the non-memorized start, corrupt = the memorized one, so it is the other way round.
SEMANTICS = {(BRANCH, "noising"): "prevention", (BRANCH, "denoising"): "induction",
             (DECISION, "noising"): "induction", (DECISION, "denoising"): "prevention",
             (DISTANT, "noising"): "prevention", (DISTANT, "denoising"): "induction"}


def semantics(task: str, direction: str) -> str:
    """prevention / induction: what `direction` does on `task` (a control task: on the task it
    mirrors)."""
    return SEMANTICS.get((base_task(task), direction), direction)


def direction_for(task: str, meaning: str) -> str:
    """The direction that has `meaning` (prevention / induction) on `task`."""
    for (t, d), s in SEMANTICS.items():
        if t == task and s == meaning:
            return d
    return meaning  # a task without semantics: the meaning is the direction


TRANSFER_SCHEMA = {
    "semantics": pl.String, "source_task": pl.String, "source_subset": pl.String,
    "source_direction": pl.String, "target_task": pl.String, "target_subset": pl.String,
    "target_direction": pl.String, "placement": pl.String, "ablation": pl.String,
    "relation": pl.String, "k": pl.Int32, "n_pairs": pl.Int32,
    "logit_diff": pl.Float64, "logit_diff_lo": pl.Float64, "logit_diff_hi": pl.Float64,
    "accuracy": pl.Float64, "accuracy_lo": pl.Float64, "accuracy_hi": pl.Float64,
    "faithfulness": pl.Float64, "faithfulness_lo": pl.Float64, "faithfulness_hi": pl.Float64,
    "random_faithfulness": pl.Float64, "random_faithfulness_lo": pl.Float64,
    "random_faithfulness_hi": pl.Float64,
    "clean_logit_diff": pl.Float64, "clean_accuracy": pl.Float64,
}


def relation(source: tuple[str, str], target: tuple[str, str]) -> str:
    """in-domain (same task and subset), cross-task, cross-domain, or cross-both."""
    same_task, same_subset = source[0] == target[0], source[1] == target[1]
    return {(True, True): "in-domain", (False, True): "cross-task",
            (True, False): "cross-domain", (False, False): "cross-both"}[same_task, same_subset]


def transfer(
    model,
    graph: Graph,
    evsets: dict[tuple[str, str], EvalSet],
    circuits: dict[tuple[str, str, str, str], torch.Tensor],
    settings: TransferSettings,
    replicates: list | None = None,
    *,
    progress: ProgressArg = None,
) -> pl.DataFrame:
    """Every circuit (source task, subset, direction, placement) evaluated on every
    evaluation set (target task, subset) in the direction with the same meaning there
    (prevention with prevention, induction with induction: `SEMANTICS`), in its own
    placement and `ablation`; next to it random circuits of the same size (mean F over the
    seeds; only for circuits of `random_placements`, default all) and the target's
    unpatched clean-run logit difference and accuracy. Every estimate has a bootstrap
    interval over the target's pairs (the run's shared draws with a `resampler`); with a
    `replicates` list, each row's F replicates [R] are appended to it, in row order.
    `progress` (vermem.core.progress) counts `EVALUATIONS`. `settings` (TransferSettings):
    the ablation, the random circuits' seeds and placements, the metric, the bootstrap (and
    its shared `resampler`) and circuits per forward."""
    ablation, seeds, kind, boot = (settings.ablation, list(settings.seeds), settings.metric,
                                   settings.boot)
    per_forward, resampler = settings.per_forward, settings.resampler
    random_placements = settings.random_placements
    rand_at = None if random_placements is None else set(random_placements)
    rows = []
    plain = Mode("noising", "inside", "resample")  # with no edge patched: the clean run
    nothing = torch.zeros_like(graph.mask)
    targets = []  # per evaluation set: its jobs, cells and the ends of each mode
    for (t_task, t_subset), ev in sorted(evsets.items()):
        if ev.n == 0:
            continue
        jobs, cells = [(plain, nothing)], []
        ends: dict[Mode, tuple[int, int]] = {}
        for (task, subset, direction, placement), edges in sorted(circuits.items()):
            meaning = semantics(task, direction)
            mode = Mode(direction_for(t_task, meaning), placement, ablation)
            if mode not in ends:
                ends[mode] = (len(jobs), len(jobs) + 1)
                jobs += [(mode, nothing), (mode, graph.mask)]
            k = int(edges.sum())
            cell_seeds = list(seeds) if rand_at is None or placement in rand_at else []
            cells.append(((task, subset, direction, placement), mode, meaning, k, len(jobs),
                          cell_seeds))
            jobs.append((mode, edges))
            jobs += [(mode, circuit(graph, random_ranking(graph, s), k)) for s in cell_seeds]
        targets.append((t_task, t_subset, ev, jobs, cells, ends))
    prog = track(progress, "transfer", sum(len(t[3]) for t in targets), EVALUATIONS)
    for t_task, t_subset, ev, jobs, cells, ends in targets:
        idx = ev.weights(boot, resampler)
        res = evaluate_many(model, graph, ev, jobs, kind, per_forward, progress=prog)
        clean = Result.of(res[0])
        for (task, subset, direction, placement), mode, meaning, k, j, seeds_ in cells:
            e, f = res[ends[mode][0]].metric, res[ends[mode][1]].metric
            p, r = f_replicates(res[j].metric[None], e, f, idx)
            lo, hi = boot.interval(r)
            if replicates is not None:
                replicates.append(r[0])
            ld = mean_ci(res[j].logit_diff, idx, boot)
            acc = mean_ci(res[j].correct, idx, boot)
            rand = {"random_faithfulness": None, "random_faithfulness_lo": None,
                    "random_faithfulness_hi": None}
            if seeds_:
                rp, rr = f_replicates(torch.stack([res[j + 1 + i].metric
                                                   for i in range(len(seeds_))]), e, f, idx)
                rlo, rhi = boot.interval(rr.nanmean(0)[None])
                rand = {"random_faithfulness": nan_to_none(float(rp.nanmean())),
                        "random_faithfulness_lo": nan_to_none(float(rlo[0])),
                        "random_faithfulness_hi": nan_to_none(float(rhi[0]))}
            rows.append({"semantics": meaning, "source_task": task, "source_subset": subset,
                         "source_direction": direction, "target_task": t_task,
                         "target_subset": t_subset, "target_direction": mode.direction,
                         "placement": placement, "ablation": ablation,
                         "relation": relation((task, subset), (t_task, t_subset)),
                         "k": k, "n_pairs": ev.n, "logit_diff": ld[0], "logit_diff_lo": ld[1],
                         "logit_diff_hi": ld[2], "accuracy": acc[0], "accuracy_lo": acc[1],
                         "accuracy_hi": acc[2], "faithfulness": nan_to_none(float(p[0])),
                         "faithfulness_lo": nan_to_none(float(lo[0])),
                         "faithfulness_hi": nan_to_none(float(hi[0])), **rand,
                         "clean_logit_diff": clean.logit_diff,
                         "clean_accuracy": clean.accuracy})
    prog.close()
    return pl.DataFrame(rows, schema=TRANSFER_SCHEMA)


ACROSS = "prevention vs induction"


def overlap(circuits: dict[tuple[str, str, str], torch.Tensor], across: bool = True
            ) -> pl.DataFrame:
    """Shared edges and Jaccard index between every two circuits of the same meaning
    (prevention with prevention, induction with induction: `SEMANTICS`); with `across`,
    also every prevention circuit (a) against every induction circuit (b), semantics
    `ACROSS`: where a and b share task and subset, that is the overlap of the task's
    noising and de-noising circuits, each ranked by its own direction's attribution."""
    rows = []
    for (ta, sa, da), a in sorted(circuits.items()):
        for (tb, sb, db), b in sorted(circuits.items()):
            pair = (semantics(ta, da), semantics(tb, db))
            name = (pair[0] if pair[0] == pair[1] else ACROSS
                    if across and pair == ("prevention", "induction") else None)
            if name is not None:
                rows.append({"semantics": name, "a_task": ta, "a_subset": sa,
                             "a_direction": da, "b_task": tb, "b_subset": sb,
                             "b_direction": db, "a_edges": int(a.sum()), "b_edges": int(b.sum()),
                             "shared": int((a & b).sum()), "jaccard": jaccard(a, b)})
    return pl.DataFrame(rows, schema={
        "semantics": pl.String, "a_task": pl.String, "a_subset": pl.String,
        "a_direction": pl.String, "b_task": pl.String, "b_subset": pl.String,
        "b_direction": pl.String, "a_edges": pl.Int32, "b_edges": pl.Int32,
        "shared": pl.Int32, "jaccard": pl.Float64})


def main_circuits(graph: Graph, records: Sequence[dict], ablation: str,
                  placements: Iterable[str] | None = None
                  ) -> dict[tuple[str, str, str, str], torch.Tensor]:
    """(task, subset, direction, placement) -> edge mask of the minimal circuits found with
    `ablation` (in `placements`, default all), from the `circuit` rule's records."""
    out = {}
    keep = None if placements is None else set(placements)
    for rec in records:
        for c in rec["circuits"]:
            if c["ablation"] == ablation and (keep is None or c["placement"] in keep):
                m = torch.zeros(graph.mask.numel(), dtype=torch.bool)
                m[torch.tensor(c["edge_index"], dtype=torch.long)] = True
                out[rec["task"], rec["subset"], c["direction"], c["placement"]] = \
                    m.view(graph.mask.shape)
    return out


# -- size-matched transfer ---------------------------------------------------------------------

MATCHED_SCHEMA = {
    "semantics": pl.String, "subset": pl.String, "target_task": pl.String,
    "target_direction": pl.String, "source_task": pl.String, "source_direction": pl.String,
    "placement": pl.String, "ablation": pl.String, "k": pl.Int32, "n_pairs": pl.Int32,
    "own": pl.Float64, "own_lo": pl.Float64, "own_hi": pl.Float64,
    "transferred": pl.Float64, "transferred_lo": pl.Float64, "transferred_hi": pl.Float64,
    "gap": pl.Float64, "gap_lo": pl.Float64, "gap_hi": pl.Float64,
}


def matched_transfer(
    model,
    graph: Graph,
    evsets: Mapping[tuple[str, str], EvalSet],
    orders: Mapping[tuple[str, str, str], torch.Tensor],
    sizes: Mapping[tuple[str, str], Sequence[int]],
    settings: TransferSettings,
    replicates: list | None = None,
    *,
    progress: ProgressArg = None,
) -> pl.DataFrame:
    """Cross-task transfer at the same size: on each task's evaluation pairs (target), the
    other task's top-k edges (source ranking) against the target's own top-k, for every k in
    `sizes[(subset, meaning)]`, directions paired by meaning (`SEMANTICS`).

    orders: (task, subset, direction) -> edge ranking (`ranking` of that direction's
    scores). A row per (subset, meaning, target, k): F of the target's own top-k (`own`),
    of the source's top-k (`transferred`) and `gap` = transferred - own, each with its
    interval; the gap's replicates [R] are appended to `replicates` in row order.
    `progress` (vermem.core.progress) counts `EVALUATIONS`. `settings` (TransferSettings):
    the placement and ablation, the metric, the bootstrap (and its shared `resampler`) and
    circuits per forward."""
    placement, ablation, kind, boot = (settings.placement, settings.ablation, settings.metric,
                                       settings.boot)
    per_forward, resampler = settings.per_forward, settings.resampler
    rows = []
    cells = []  # (target task, subset, evaluation set, meaning, target and source direction,
    #             source task, sizes, jobs)
    for (t_task, subset), ev in sorted(evsets.items()):
        if ev.n == 0:
            continue
        others = sorted({t for t, s, _ in orders if s == subset and t != t_task})
        for meaning in MEANINGS:
            t_dir = direction_for(t_task, meaning)
            mode = Mode(t_dir, placement, ablation)
            own = orders.get((t_task, subset, t_dir))
            ks = [k for k in sizes.get((subset, meaning), []) if 0 < k < graph.n_edges]
            for s_task in others:
                s_dir = direction_for(s_task, meaning)
                src = orders.get((s_task, subset, s_dir))
                if own is None or src is None or not ks:
                    continue
                jobs = [(mode, torch.zeros_like(graph.mask)), (mode, graph.mask)]
                jobs += [(mode, circuit(graph, o, k)) for k in ks for o in (own, src)]
                cells.append((t_task, subset, ev, meaning, t_dir, s_dir, s_task, ks, jobs))
    prog = track(progress, "matched transfer", sum(len(c[-1]) for c in cells), EVALUATIONS)
    weights: dict[tuple[str, str], torch.Tensor] = {}
    for t_task, subset, ev, meaning, t_dir, s_dir, s_task, ks, jobs in cells:
        if (t_task, subset) not in weights:
            weights[t_task, subset] = ev.weights(boot, resampler)
        idx = weights[t_task, subset]
        res = evaluate_many(model, graph, ev, jobs, kind, per_forward, progress=prog)
        e, f = res[0].metric, res[1].metric
        mc = torch.stack([r.metric for r in res[2:]])  # [2K, n]: own, src per k
        point, reps = f_replicates(mc, e, f, idx)
        for i, k in enumerate(ks):
            po, pt = point[2 * i], point[2 * i + 1]
            gap_reps = reps[2 * i + 1] - reps[2 * i]
            (olo, tlo, glo), (ohi, thi, ghi) = boot.interval(
                torch.stack([reps[2 * i], reps[2 * i + 1], gap_reps]))
            if replicates is not None:
                replicates.append(gap_reps)
            rows.append({"semantics": meaning, "subset": subset, "target_task": t_task,
                         "target_direction": t_dir, "source_task": s_task,
                         "source_direction": s_dir, "placement": placement,
                         "ablation": ablation, "k": k, "n_pairs": ev.n,
                         "own": nan_to_none(float(po)), "own_lo": nan_to_none(float(olo)),
                         "own_hi": nan_to_none(float(ohi)),
                         "transferred": nan_to_none(float(pt)),
                         "transferred_lo": nan_to_none(float(tlo)),
                         "transferred_hi": nan_to_none(float(thi)),
                         "gap": nan_to_none(float(pt - po)),
                         "gap_lo": nan_to_none(float(glo)),
                         "gap_hi": nan_to_none(float(ghi))})
    prog.close()
    return pl.DataFrame(rows, schema=MATCHED_SCHEMA)


def matched_inputs(graph: Graph, rankings: Iterable[tuple[Mapping, Mapping]],
                   found: Mapping[tuple[str, str, str, str], torch.Tensor],
                   settings: TransferSettings
                   ) -> tuple[dict[tuple[str, str, str], torch.Tensor],
                              dict[tuple[str, str], list[int]]]:
    """(orders, sizes) of `matched_transfer`: each task's and subset's ranking per direction
    (`rankings`: (key with task and subset, the ranking file's (tensors, metadata)); a file
    without attribution pairs ranks nothing), and per (subset, meaning) the curve's sizes
    (about `settings.curve_points`) and every minimal size of the main placement in
    `found`."""
    orders, sizes = {}, {}
    grid = log_sizes(graph.n_edges, settings.curve_points)
    for key, (tensors, meta) in rankings:
        if not meta.get("n_examples"):  # no attribution pairs: no ranking to compare
            continue
        for d in ("noising", "denoising"):
            scores = storage.direction_scores(tensors, d)
            orders[key["task"], key["subset"], d] = ranking(graph, scores)
        for meaning in ("prevention", "induction"):
            sizes.setdefault((key["subset"], meaning), set(grid))
    for (task, subset, d, placement), edges in found.items():
        if placement == settings.placement:
            sizes[subset, semantics(task, d)].add(int(edges.sum()))
    return orders, {k: sorted(v) for k, v in sizes.items()}
