"""Is a memorization circuit about memorization? (docs/study-a.md §10b)

A circuit found on memorized pairs may carry what every next-token prediction needs (a
bigram path from the current token, say) rather than anything about memorized text. The
control pair sets (`contrastive.control_pairs`: the same constructions on non-memorized
text, at the same positions d) tell the two apart. For every task, subset and direction
with a minimal circuit of k edges in the main mode:

1. the memorization ranking's top-k is evaluated on the memorized evaluation pairs,
   F(memorized), and on the control task's evaluation pairs, F(control), each normalised
   by its own pairs' M(full) - M(empty);
2. the control ranking's top-k (attributed on the control task's attribution pairs) is
   evaluated on both, the cross check: does a ranking that never saw memorized text explain
   the memorized pairs as well?
3. random circuits of k edges on both pair sets;
4. the clean - corrupt gap of the metric (|M(full) - M(empty)|, signed clean - corrupt), on
   both;
5. specificity = F(memorized) - F(control), and every other difference, from one joint
   cluster bootstrap (`stats.Resampler`, shared with the transfer rule), never from
   combined intervals;
6. along the curve sizes, F of the memorization ranking on both pair sets (and random
   circuits of the same sizes, for `band` subsets), for the figure.

A circuit is specific to memorization when F(memorized) - F(control) exceeds the claims'
margin with its whole interval; it is not when the interval lies at or below the margin
(it explains non-memorized text as well); otherwise, or with too few pairs, or a circuit
no better than random, the evidence is insufficient (`claims.specificity_claims`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import polars as pl
import torch

from vermem.attribution.graph import Graph
from vermem.circuits import evaluation
from vermem.circuits.settings import SpecificitySettings
from vermem.core.progress import ProgressArg
from vermem.core.stats import f_replicates, nan_to_none, wmean

log = logging.getLogger(__name__)


SCHEMA = {
    "task": pl.String, "subset": pl.String, "direction": pl.String, "semantics": pl.String,
    "placement": pl.String, "ablation": pl.String, "k": pl.Int32, "n_edges": pl.Int32,
    "n_memorized": pl.Int32, "n_control": pl.Int32,
    **{f"{name}{end}": pl.Float64
       for name in ("f_memorized", "f_control", "specificity", "f_control_circuit_memorized",
                    "f_control_circuit_control", "gap_memorized", "gap_control", "gap_ratio")
       for end in ("", "_lo", "_hi")},
    "random_memorized": pl.Float64, "random_control": pl.Float64,
}
CURVE_SCHEMA = {
    "task": pl.String, "subset": pl.String, "direction": pl.String, "semantics": pl.String,
    "pairs": pl.String, "circuit": pl.String, "seed": pl.Int32, "k": pl.Int32,
    "n_pairs": pl.Int32, "faithfulness": pl.Float64, "faithfulness_lo": pl.Float64,
    "faithfulness_hi": pl.Float64,
}
# the replicates kept per row (in this order), for claims that combine rows
REPLICATES = ("f_memorized", "f_control", "specificity", "gap_memorized", "gap_control")


def evaluate(model, graph: Graph,
             evs: tuple[evaluation.EvalSet, evaluation.EvalSet],
             rankings: tuple[torch.Tensor, torch.Tensor | None], mode: evaluation.Mode, k: int,
             settings: SpecificitySettings, *, whole_curve: bool = False,
             ) -> tuple[dict, list[dict], torch.Tensor]:
    """Steps 1-6 for one circuit: (row of SCHEMA without the keys naming it, curve rows,
    replicates [len(REPLICATES), R]). evs: the memorized and the control evaluation sets;
    rankings: the memorization and control rankings of `mode`'s direction (control None: no
    control attribution). `whole_curve`: random circuits at every curve size (else at `k`
    only). `settings` (SpecificitySettings): the curve's sizes, the random circuits' seeds,
    the metric, the bootstrap and its shared `resampler`, circuits per forward."""
    (ev_mem, ev_ctl), (own, control), band = evs, rankings, whole_curve
    seeds, kind, boot = list(settings.seeds), settings.metric, settings.boot
    resampler, per_forward = settings.resampler, settings.per_forward
    sizes = (evaluation.log_sizes(graph.n_edges, settings.curve_points)
             if settings.sizes is None else settings.sizes)
    n = graph.n_edges
    ks = sorted({kk for kk in sizes if 0 < kk < n} | {k})
    r_ks = ks if band else [k]
    randoms = {s: evaluation.random_ranking(graph, s) for s in seeds}
    nothing, everything = torch.zeros_like(graph.mask), graph.mask

    def run(ev: evaluation.EvalSet) -> dict:
        jobs = [(mode, nothing), (mode, everything)]
        jobs += [(mode, evaluation.circuit(graph, own, kk)) for kk in ks]
        if control is not None:
            jobs.append((mode, evaluation.circuit(graph, control, k)))
        jobs += [(mode, evaluation.circuit(graph, randoms[s], kk)) for s in seeds for kk in r_ks]
        res = iter(evaluation.evaluate_many(model, graph, ev, jobs, kind, per_forward))
        out = {"empty": next(res), "full": next(res), "own": {kk: next(res) for kk in ks}}
        out["control"] = next(res) if control is not None else None
        out["random"] = {(s, kk): next(res) for s in seeds for kk in r_ks}
        return out

    mem, ctl = run(ev_mem), run(ev_ctl)
    w_mem, w_ctl = ev_mem.weights(boot, resampler), ev_ctl.weights(boot, resampler)
    R = boot.samples

    def f(res, which, w):  # point [1], replicates [R] of F
        p, r = f_replicates(which.metric[None], res["empty"].metric, res["full"].metric, w)
        return float(p[0]), r[0]

    # the full circuit runs the clean prompt unpatched in noising/outside and denoising/inside
    # (resample), the corrupt one in the other two: the gap is clean - corrupt either way
    sign = 1.0 if (mode.direction == "noising") == (mode.placement == "outside") else -1.0

    def gap(res, w):  # mean M(clean run) - M(corrupt run) of the metric
        x = sign * (res["full"].metric - res["empty"].metric)
        return float(x.mean()), wmean(x, w)

    fm, fm_r = f(mem, mem["own"][k], w_mem)
    fc, fc_r = f(ctl, ctl["own"][k], w_ctl)
    nan = (float("nan"), torch.full((R,), float("nan"), dtype=torch.float64))
    cm, cm_r = f(mem, mem["control"], w_mem) if control is not None else nan
    cc, cc_r = f(ctl, ctl["control"], w_ctl) if control is not None else nan
    gm, gm_r = gap(mem, w_mem)
    gc, gc_r = gap(ctl, w_ctl)
    values = {"f_memorized": (fm, fm_r), "f_control": (fc, fc_r),
              "specificity": (fm - fc, fm_r - fc_r),
              "f_control_circuit_memorized": (cm, cm_r), "f_control_circuit_control": (cc, cc_r),
              "gap_memorized": (gm, gm_r), "gap_control": (gc, gc_r),
              "gap_ratio": (gm / gc if gc else float("nan"),
                            torch.where(gc_r != 0, gm_r / gc_r, float("nan")))}
    row: dict = {"k": k, "n_edges": n, "n_memorized": ev_mem.n, "n_control": ev_ctl.n}
    for name, (v, r) in values.items():
        lo, hi = boot.interval(r[None])
        row.update({name: nan_to_none(v), f"{name}_lo": nan_to_none(lo[0]),
                    f"{name}_hi": nan_to_none(hi[0])})
    for pairs, res in (("memorized", mem), ("control", ctl)):
        rf = [f(res, res["random"][s, k], w_mem if pairs == "memorized" else w_ctl)[0]
              for s in seeds]
        row[f"random_{pairs}"] = nan_to_none(sum(rf) / len(rf)) if rf else None

    curve = []
    for pairs, res, w in (("memorized", mem, w_mem), ("control", ctl, w_ctl)):
        for name, seed, kk, which in (
                [("attribution", None, kk, res["own"][kk]) for kk in ks]
                + [("random", s, kk, res["random"][s, kk]) for s in seeds for kk in r_ks]):
            p, r = f(res, which, w)
            lo, hi = boot.interval(r[None])
            curve.append({"pairs": pairs, "circuit": name, "seed": seed, "k": kk,
                          "n_pairs": res["full"].metric.numel(), "faithfulness": nan_to_none(p),
                          "faithfulness_lo": nan_to_none(lo[0]),
                          "faithfulness_hi": nan_to_none(hi[0])})
    reps = torch.stack([values[name][1] for name in REPLICATES])
    return row, curve, reps


def run(model, graph: Graph, eval_set: Callable[[str, str], evaluation.EvalSet],
        records: Sequence[Mapping[str, Any]],
        scores: Mapping[tuple[str, str], Mapping[str, torch.Tensor]],
        settings: SpecificitySettings, *, progress: ProgressArg = None
        ) -> tuple[pl.DataFrame, pl.DataFrame, list[torch.Tensor]]:
    """`evaluate` for every main-mode circuit of the circuit rule's `records` (minimal.json)
    on its task's memorized and control evaluation pairs (`eval_set(task, subset)`), ranked
    by `scores[task, subset]` (the control's ranking where its attribution has pairs), the
    whole curve on the main subset. Returns (SCHEMA table, CURVE_SCHEMA table, replicates
    per row). `progress` (vermem.core.progress) counts the circuits."""
    from vermem.attribution.storage import direction_scores
    from vermem.circuits.transfer import semantics
    from vermem.core.progress import number, track
    from vermem.core.vocabulary import control_task

    main = (settings.placement, settings.ablation)
    rows, curves, reps = [], [], []
    todo = track(progress, "specificity", sum(
        (c["placement"], c["ablation"]) == main for rec in records for c in rec["circuits"]),
        "circuits")
    for rec in records:
        task, subset = rec["task"], rec["subset"]
        ctl_task = control_task(task)
        evs = {t: eval_set(t, subset) for t in (task, ctl_task)}
        ctl_scores = scores.get((ctl_task, subset))
        for c in rec["circuits"]:
            if (c["placement"], c["ablation"]) != main:
                continue
            if evs[ctl_task].n == 0:
                log.warning("%s / %s: no control evaluation pairs", ctl_task, subset)
                todo.advance()
                continue
            d = c["direction"]
            own = evaluation.ranking(graph, direction_scores(scores[task, subset], d))
            control = (None if ctl_scores is None else
                       evaluation.ranking(graph, direction_scores(ctl_scores, d)))
            row, curve, r = evaluate(
                model, graph, (evs[task], evs[ctl_task]), (own, control),
                evaluation.Mode(d, *main), int(c["k"]), settings,
                whole_curve=subset == settings.main_subset)
            key = {"task": task, "subset": subset, "direction": d,
                   "semantics": semantics(task, d)}
            rows.append({**key, "placement": main[0], "ablation": main[1], **row})
            curves += [{**key, **x} for x in curve]
            reps.append(r)
            log.info("%s / %s / %s: k = %d, F(memorized) %s, F(control) %s, specificity %s "
                     "[%s, %s]", task, subset, d, row["k"], *map(number, (
                         row["f_memorized"], row["f_control"], row["specificity"],
                         row["specificity_lo"], row["specificity_hi"])))
            todo.advance()
    todo.close()
    return (pl.DataFrame(rows, schema=SCHEMA), pl.DataFrame(curves, schema=CURVE_SCHEMA),
            reps)
