"""The minimal circuit: the smallest size whose faithfulness lies in the target band on
the selection pairs (`minimal_size`), and the faithfulness curve over sizes (`sweep`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import torch

from vermem.attribution import eap_json, storage
from vermem.attribution.graph import Graph
from vermem.circuits.evaluation import (
    EVALUATIONS,
    MAIN_MODE,
    MIN_GAP,
    EvalSet,
    Mode,
    Result,
    _f,
    band,
    check_gap,
    circuit,
    edge_overlap,
    evaluate_many,
    in_band,
    log_sizes,
    random_ranking,
    ranking,
    small_gaps,
)
from vermem.circuits.settings import SearchSettings
from vermem.core import files
from vermem.core.progress import ProgressArg, track
from vermem.core.stats import f_replicates, nan_to_none
from vermem.core.vocabulary import DIRECTIONS

CRITERIA = ("band", "ratio_of_full")
SEARCHES = ("band", "coarse")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Criterion:
    """Which circuit sizes count as faithful enough (config `circuits.criterion`, `target`):

    - `band` (the default): F = (M(C) - M(empty)) / (M(full) - M(empty)) in the band
      |1 - F| <= 1 - target (an overshoot is not accepted);
    - `ratio_of_full` (Lasy et al.'s code, `find_minimal_circuit`): M(C) >= target * M(full),
      with no subtraction of the empty circuit and no upper limit.

    `value` is the quantity compared, `accepts` the test; `replicates` gives its bootstrap
    replicates (a ratio of means, as F's)."""
    kind: str = "band"
    target: float = 0.85

    def __post_init__(self) -> None:
        if self.kind not in CRITERIA:
            raise ValueError(f"{self.kind!r} is not one of {CRITERIA}")

    def value(self, m: float, empty: float, full: float) -> float:
        if self.kind == "band":
            return _f(m, empty, full)  # (sweep checks the gap once per mode and pair set)
        return m / full if full != 0 else float("nan")

    def replicates(self, mc: torch.Tensor, me: torch.Tensor, mf: torch.Tensor,
                   idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(points [J], replicates [J, R]) of `value` (mc [J, n], me and mf [n])."""
        return f_replicates(mc, me if self.kind == "band" else torch.zeros_like(me), mf, idx)

    def accepts(self, v: float | None) -> bool:
        if v is None or math.isnan(v):
            return False
        return in_band(v, self.target) if self.kind == "band" else v >= self.target

    def accepts_all(self, v: torch.Tensor) -> torch.Tensor:
        """`accepts` elementwise (NaN: False)."""
        ok = v >= self.target
        return ok & (v <= 2 - self.target + 1e-12) if self.kind == "band" else ok


def coarse_search(f: Callable[[list[int]], list[float]], n_edges: int,
                  accepts: Callable[[float], bool], step: int = 10
                  ) -> tuple[int, dict[int, float]]:
    """Lasy et al.'s search (`find_minimal_circuit`): a binary search over 1..E whose bounds
    move by `step` past the midpoint (so it can skip the smallest accepted size), starting
    from best = E. Returns (best, {size: value} of the sizes it evaluated, in order)."""
    lo, hi, best = 1, n_edges, n_edges
    seen: dict[int, float] = {}
    while lo <= hi:
        k = (lo + hi) // 2
        seen[k] = f([k])[0]
        if accepts(seen[k]):
            best, hi = k, k - step
        else:
            lo = k + step
    return best, seen


def search_points(curve: dict[int, float], target: float, width: int,
                  accepts: Callable[[float], bool] | None = None) -> list[int]:
    """Sizes to evaluate next in the search for the smallest size in the target band.

    F is not monotone in k, so no search can promise the global smallest in-band size
    without evaluating every k; this one finds the first in-band size on the evaluated
    grid, brackets it with the evaluated size before it (which is out of band: below it,
    or an overshoot above it), and evaluates up to `width` evenly spaced sizes inside the
    bracket, round after round (bisection when width is 1), until the bracket is one edge
    wide. The result is an in-band k whose predecessor k - 1 is out of band; an in-band
    size below an earlier grid point that the grid skipped over is not looked for.
    `accepts` (default: F in the band of `target`) says which values are good enough."""
    ok = accepts or (lambda v: in_band(v, target))
    sizes = sorted(curve)
    hit = next((i for i, k in enumerate(sizes) if ok(curve[k])), None)
    if not hit:  # none in band, or the smallest evaluated size already is
        return []
    lo, hi = sizes[hit - 1], sizes[hit]
    if hi - lo <= 1:
        return []
    step = (hi - lo) / (min(width, hi - lo - 1) + 1)
    return sorted({min(hi - 1, max(lo + 1, round(lo + step * i)))
                   for i in range(1, min(width, hi - lo - 1) + 1)})


def minimal_size(f: Callable[[list[int]], list[float]], curve: dict[int, float],
                 target: float, width: int = 1) -> tuple[int | None, dict[int, float]]:
    """Smallest circuit size with F in the target band, by `search_points` rounds (each
    round's sizes evaluated together by `f`). Returns (k or None, the sizes evaluated on
    the way and their F)."""
    found: dict[int, float] = {}
    while pts := search_points({**curve, **found}, target, width):
        found.update(zip(pts, f(pts), strict=True))
    both = {**curve, **found}
    k = min((k for k, v in both.items() if in_band(v, target)), default=None)
    return k, found


# -- is a chosen size identified? ---------------------------------------------------------

SIZE_DECADE = 10.0      # a size interval whose ends differ by more than this factor
SIZE_TAIL = 0.025       # share of selection resamples allowed to reach the band only with
#                         the whole graph, or not at all


def size_identified(c: Mapping[str, Any], n_edges: int | None = None) -> tuple[bool, str]:
    """Whether a minimal circuit's size (a `sweep` record: k, k_lo, k_hi, n_edges,
    k_unresolved_share) is identified by its selection pairs, and why not.

    The size is *not identified* when
    (a) its bootstrap interval spans more than a decade: k_hi > SIZE_DECADE x max(k_lo, 1); or
    (b) the selection curve does not cross the band clearly: in more than SIZE_TAIL of the
        selection resamples the smallest size in the band is the whole graph or no size
        at all (the interval's upper end reaches every edge: k_hi >= n_edges, or
        k_unresolved_share > SIZE_TAIL).
    An unidentified size is reported, but not used as a matched size (claim 1) and not
    counted as a found circuit in the headline."""
    n = n_edges if n_edges is not None else c.get("n_edges")
    k, lo, hi = c.get("k"), c.get("k_lo"), c.get("k_hi")
    if k is None:
        return False, "no size in the band"
    if lo is None or hi is None:
        return False, "no size interval"
    if hi > SIZE_DECADE * max(lo, 1.0):
        return False, (f"size interval [{lo:.0f}, {hi:.0f}] spans more than a decade")
    if (n is not None and hi >= n - 0.5) or (c.get("k_unresolved_share") or 0.0) > SIZE_TAIL:
        return False, ("the selection curve does not cross the band clearly (in more than "
                       f"{100 * SIZE_TAIL:g}% of resamples only the whole graph, or no size, "
                       "is in the band)")
    return True, ""


CURVE_SCHEMA = {
    "split": pl.String, "direction": pl.String, "placement": pl.String,
    "ablation": pl.String, "circuit": pl.String, "seed": pl.Int32, "k": pl.Int32,
    "share": pl.Float64, "n_pairs": pl.Int32, "metric": pl.Float64, "logit_diff": pl.Float64,
    "accuracy": pl.Float64, "faithfulness": pl.Float64, "faithfulness_lo": pl.Float64,
    "faithfulness_hi": pl.Float64, "band": pl.String, "search": pl.Boolean,
    "ratio_of_full": pl.Float64, "kl": pl.Float64,
}


def sweep(model, graph: Graph, sel: EvalSet, ev: EvalSet,
          scores: torch.Tensor | Mapping[str, torch.Tensor], modes_: Sequence[Mode],
          settings: SearchSettings, *, progress: ProgressArg = None
          ) -> tuple[pl.DataFrame, dict[Mode, dict]]:
    """Faithfulness curves (with bootstrap intervals) of the top-k circuits by |score| on
    the selection and the evaluation pairs, random circuits of the same sizes (the modes
    in `random_modes` only) on the evaluation pairs, and per mode the minimal circuit:
    its size chosen on the selection pairs (smallest k in the target band), its F
    reported on the evaluation pairs next to random circuits of the same size.

    Returns the curve table (CURVE_SCHEMA; `split` says which pairs, `search` marks sizes
    added by the search) and {mode: record} for the modes with an in-band size. Random
    curves are evaluated at about `random_points` of the curve's sizes (evenly spread over
    it; None: all of them). `settings` (SearchSettings) holds these and the knobs below;
    the curve's sizes are its `sizes`, else `log_sizes` of its `curve_points`.

    `scores`: one [S, D] tensor that ranks every mode, or {direction: [S, D]} so that each
    mode is ranked by its own direction's attribution (noising modes by the noising scores,
    de-noising modes by the de-noising ones, `attribution.direction_scores`); a direction
    missing from the mapping is ranked by the noising scores.

    `criterion` (CRITERIA, `Criterion`) says which sizes are good enough at `target`;
    `search`: `band` refines between grid sizes (`search_points`) and takes the smallest
    accepted size evaluated, `coarse` is Lasy et al.'s step-10 binary search
    (`coarse_search`) and takes its result. Both run on the selection pairs. The curve
    reports F, the ratio M(C) / M(full) and the KL divergence from the clean run.

    Where |M(full) - M(empty)| < MIN_GAP on either pair set a mode's F is noise: a
    SmallGapWarning says so (`check_gap`; count them with `small_gaps`).

    `kind`: the metric M (`attribution.Metric`: a name or a function). `progress`
    (vermem.core.progress) counts `EVALUATIONS`: the curves' and the chosen sizes' up front,
    the search's as its rounds find them."""
    st = settings
    target, kind, boot, per_forward = st.target, st.metric, st.boot, st.per_forward
    seeds, random_modes, random_points = list(st.seeds), st.random_modes, st.random_points
    search_width, search = st.search_width, st.search
    sizes = log_sizes(graph.n_edges, st.curve_points) if st.sizes is None else st.sizes
    crit = Criterion(st.criterion, target)
    if search not in SEARCHES:
        raise ValueError(f"{search!r} is not one of {SEARCHES}")
    n = graph.n_edges
    sizes = sorted(set(sizes) | {0, n})
    inner = [k for k in sizes if 0 < k < n]
    stride = max(1, math.ceil(len(inner) / random_points)) if random_points else 1
    r_sizes = [0, *inner[::-1][::stride][::-1], n]  # always the largest inner size
    by_dir = scores if isinstance(scores, Mapping) else {d: scores for d in DIRECTIONS}
    orders = {d: ranking(graph, by_dir.get(d, by_dir["noising"])) for d in DIRECTIONS}
    randoms = {s: random_ranking(graph, s) for s in seeds}
    rows: list[dict] = []
    if sel.n == 0 or ev.n == 0:
        return pl.DataFrame(rows, schema=CURVE_SCHEMA), {}
    modes_ = list(modes_)
    rand_modes = [m for m in modes_ if m in set(random_modes)]
    n_inner = len([k for k in r_sizes if 0 < k < n])
    final = len(modes_) * (1 + len(seeds))  # at most: the chosen sizes and their randoms
    prog = track(progress, "circuit sweep", 2 * len(modes_) * len(sizes) + final
                 + len(rand_modes) * len(seeds) * n_inner, EVALUATIONS,
                 note="" if search not in ("band", "coarse") else
                 f" before the {search} search for the minimal size, which adds evaluations"
                 " to the total as it runs")

    # the evaluation pairs' draws: the run's shared ones where given (st.resampler), so
    # that an F here carries the interval it has in the specificity and transfer tables
    ev_idx = ev.weights(boot, st.resampler)

    def run(es, jobs):
        return evaluate_many(model, graph, es, jobs, kind, per_forward, progress=prog)

    def rows_of(split, es, mode, name, seed, ks, res, empty, full, searched=False):
        if not ks:
            return (torch.zeros(0, dtype=torch.float64),
                    torch.zeros(0, boot.samples, dtype=torch.float64))
        idx = ev_idx if es is ev else boot.indices(es.n, es.groups)
        mc = torch.stack([res[k].metric for k in ks])
        point, reps = f_replicates(mc, empty.metric, full.metric, idx)
        lo, hi = boot.interval(reps)
        for i, k in enumerate(ks):
            r = Result.of(res[k])
            f = nan_to_none(float(point[i]))
            full_m = float(full.metric.mean())
            rows.append({"split": split, "direction": mode.direction,
                         "placement": mode.placement, "ablation": mode.ablation,
                         "circuit": name, "seed": seed, "k": k, "share": k / n,
                         "n_pairs": es.n, "metric": r.metric, "logit_diff": r.logit_diff,
                         "accuracy": r.accuracy, "faithfulness": f,
                         "faithfulness_lo": nan_to_none(float(lo[i])),
                         "faithfulness_hi": nan_to_none(float(hi[i])),
                         "band": band(f, target), "search": searched,
                         "ratio_of_full": r.metric / full_m if full_m else None,
                         "kl": nan_to_none(r.kl)})
        return point, reps

    # evaluation pairs: every mode's curve; random circuits for the random modes
    jobs = [(m, circuit(graph, orders[m.direction], k)) for m in modes_ for k in sizes]
    jobs += [(m, circuit(graph, randoms[s], k)) for m in rand_modes for s in seeds
             for k in r_sizes if 0 < k < n]
    out = iter(run(ev, jobs))
    ev_res = {m: {k: next(out) for k in sizes} for m in modes_}

    def gap(split, res, m):  # is F meaningful for this mode on these pairs?
        check_gap(float(res[0].metric.mean()), float(res[n].metric.mean()),
                  f"{m.direction}/{m.placement}/{m.ablation}, {split} pairs")
    for m in modes_:
        gap("evaluation", ev_res[m], m)
    for m in modes_:
        rows_of("evaluation", ev, m, "attribution", None, sizes, ev_res[m], ev_res[m][0],
                ev_res[m][n])
    for m in rand_modes:
        for s in seeds:
            res = {0: ev_res[m][0], n: ev_res[m][n]}
            res.update({k: next(out) for k in r_sizes if 0 < k < n})
            rows_of("evaluation", ev, m, "random", s, r_sizes, res, res[0], res[n])

    # selection pairs: the curves, then the search, all modes' sizes in one pass per round
    out = iter(run(sel, [(m, circuit(graph, orders[m.direction], k)) for m in modes_
                         for k in sizes]))
    sel_res = {m: {k: next(out) for k in sizes} for m in modes_}
    for m in modes_:
        gap("selection", sel_res[m], m)

    def f_sel(m, ks):  # the criterion's value on the selection pairs
        e, f = float(sel_res[m][0].metric.mean()), float(sel_res[m][n].metric.mean())
        return {k: crit.value(float(sel_res[m][k].metric.mean()), e, f) for k in ks}

    curves = {m: f_sel(m, sizes) for m in modes_}
    searched: dict[Mode, dict[int, float]] = {m: {} for m in modes_}
    coarse: dict[Mode, int] = {}
    for m in modes_ if search == "coarse" else []:
        def f_one(ks, m=m):
            new = [k for k in ks if k not in sel_res[m]]
            prog.expect(len(new))
            for k, r in zip(new, run(sel, [(m, circuit(graph, orders[m.direction], k))
                                           for k in new]), strict=True):
                sel_res[m][k] = r
            return list(f_sel(m, ks).values())
        best, seen = coarse_search(f_one, n, crit.accepts)
        coarse[m] = best
        searched[m].update({k: v for k, v in seen.items() if k not in curves[m]})
    while search == "band":
        todo = {m: search_points({**curves[m], **searched[m]}, target, search_width,
                                 crit.accepts) for m in modes_}
        jobs = [(m, circuit(graph, orders[m.direction], k)) for m in modes_ for k in todo[m]]
        if not jobs:
            break
        prog.expect(len(jobs))
        out = iter(run(sel, jobs))
        for m in modes_:
            for k in todo[m]:
                sel_res[m][k] = next(out)
            searched[m].update(f_sel(m, todo[m]))

    minimal: dict[Mode, dict] = {}
    chosen: dict[Mode, int] = {}
    for m in modes_:
        grid_ks = sorted(sel_res[m])
        point, reps = rows_of("selection", sel, m, "attribution", None, sizes, sel_res[m],
                              sel_res[m][0], sel_res[m][n])
        sp, sr = rows_of("selection", sel, m, "attribution", None, sorted(searched[m]),
                         sel_res[m], sel_res[m][0], sel_res[m][n], searched=True)
        all_ks = sizes + sorted(searched[m])
        f_all = dict(zip(all_ks, torch.cat([point, sp]).tolist(), strict=True))
        # the criterion's values and replicates (F itself for the band)
        cv, cr = crit.replicates(torch.stack([sel_res[m][k].metric for k in all_ks]),
                                 sel_res[m][0].metric, sel_res[m][n].metric,
                                 boot.indices(sel.n, sel.groups))
        c_all = dict(zip(all_ks, cv.tolist(), strict=True))
        if search == "coarse":
            k = coarse[m] if crit.accepts(c_all[coarse[m]]) else None
        else:
            k = min((k for k, v in c_all.items() if crit.accepts(v)), default=None)
        if k is None:
            continue
        chosen[m] = k
        # the minimal size's own uncertainty: the smallest accepted size on every resample
        # of the selection pairs (over the evaluated sizes)
        lo_r, _ = boot.interval(cr)
        ks_t = torch.tensor(all_ks, dtype=torch.float64)
        k_rep = torch.where(crit.accepts_all(cr), ks_t[:, None], math.inf).min(0).values
        k_rep = torch.where(torch.isinf(k_rep), math.nan, k_rep)
        k_lo, k_hi = boot.interval(k_rep[None])
        conservative = [kk for kk, lo_ in zip(all_ks, lo_r.tolist(), strict=True)
                        if lo_ >= target and crit.accepts(c_all[kk])]
        minimal[m] = {"k": k, "k_lo": nan_to_none(float(k_lo[0])),
                      "k_hi": nan_to_none(float(k_hi[0])),
                      "k_lower_bound": min(conservative, default=None),
                      "k_unresolved_share": float(torch.isnan(k_rep).double().mean()),
                      "overshoot_before": min((x for x in grid_ks if x < k
                                               and band(f_all[x], target) == "above"),
                                              default=None) if crit.kind == "band" else None,
                      "criterion": crit.kind, "search": search,
                      "selection_value": c_all[k],
                      "selection_faithfulness": f_all[k], "n_selection": sel.n,
                      "edges": orders[m.direction][:k].tolist()}

    # the chosen sizes on the evaluation pairs, with random circuits of the same size
    jobs = [(m, circuit(graph, orders[m.direction], k)) for m, k in chosen.items()]
    jobs += [(m, circuit(graph, randoms[s], k)) for m, k in chosen.items() for s in seeds]
    prog.expect(len(jobs) - final)
    out = iter(run(ev, jobs))
    top = {m: next(out) for m in chosen}
    rnd = {m: [next(out) for _ in seeds] for m in chosen}
    idx = ev_idx
    for m in chosen:
        empty, full = ev_res[m][0].metric, ev_res[m][n].metric
        p, r = f_replicates(top[m].metric[None], empty, full, idx)
        lo, hi = boot.interval(r)
        rec = Result.of(top[m])
        full_m = float(full.mean())
        minimal[m].update({"ratio_of_full": rec.metric / full_m if full_m else None,
                           "kl": nan_to_none(rec.kl),
                           "accepted": crit.accepts(crit.value(rec.metric, float(empty.mean()),
                                                               full_m)),
                           "faithfulness": nan_to_none(float(p[0])),
                           "faithfulness_lo": nan_to_none(float(lo[0])),
                           "faithfulness_hi": nan_to_none(float(hi[0])),
                           "band": band(float(p[0]), target),
                           "metric": rec.metric, "accuracy": rec.accuracy,
                           "empty": float(empty.mean()), "full": float(full.mean()),
                           "n_pairs": ev.n})
        if seeds:
            rp, rr = f_replicates(torch.stack([x.metric for x in rnd[m]]), empty, full, idx)
            lo, hi = boot.interval(rr.nanmean(0)[None])
            minimal[m].update({"random_faithfulness": nan_to_none(float(rp.nanmean())),
                               "random_faithfulness_lo": nan_to_none(float(lo[0])),
                               "random_faithfulness_hi": nan_to_none(float(hi[0]))})
        else:
            minimal[m].update({"random_faithfulness": None, "random_faithfulness_lo": None,
                               "random_faithfulness_hi": None})
    prog.close()
    return pl.DataFrame(rows, schema=CURVE_SCHEMA), minimal


# -- one task's and subset's circuits, as the circuit rule writes them -------------------------

@dataclass
class CircuitRun:
    """One task's and subset's search (`find_circuits`): its pairs (data frames and
    evaluation sets), the ranking file's tensors and metadata, the modes searched (none
    without usable pairs), each direction's scores, the curve, the minimal circuits and the
    small-gap messages."""

    sel_pairs: pl.DataFrame
    ev_pairs: pl.DataFrame
    sel: EvalSet
    ev: EvalSet
    tensors: Mapping[str, torch.Tensor]
    meta: Mapping[str, Any]
    modes: list[Mode]
    by_dir: dict[str, torch.Tensor]
    curve: pl.DataFrame
    minimal: dict[Mode, dict]
    small: list[str]

    @property
    def n_attr(self) -> int:
        return int(self.meta.get("n_examples", 0))


def find_circuits(model, graph: Graph, sel_pairs: pl.DataFrame, ev_pairs: pl.DataFrame,
                  ranking: tuple[Mapping[str, torch.Tensor], Mapping[str, Any]],
                  settings: SearchSettings, batch: int, *, progress: ProgressArg = None
                  ) -> CircuitRun:
    """The circuit rule's search: `sweep` of `settings.modes` on the selection and evaluation
    pairs (the evaluation pairs for both with `settings.select_on_evaluation`, the authors'
    design), each mode ranked by its own direction's scores of `ranking` (the tensors and
    metadata of a ranking file, `storage.load`; a file without de-noising scores ranks both
    directions by the noising ones). No attribution, selection or evaluation pairs: no
    curve and no circuit. Warnings (no selection part, no pairs, small gaps) are logged."""
    tensors, meta = ranking
    if settings.select_on_evaluation:
        log.warning("no selection part: sizes are chosen on the evaluation pairs, so their "
                    "F is not held out (flagged in the claims)")
        sel_pairs = ev_pairs
    sel, ev = (EvalSet.of_pairs(model, q, batch) for q in (sel_pairs, ev_pairs))
    n_attr = int(meta.get("n_examples", 0))
    usable = n_attr > 0 and sel.n > 0 and ev.n > 0
    if not usable:
        log.warning("%d attribution, %d selection, %d evaluation pairs: no curve, no circuit",
                    n_attr, sel.n, ev.n)
    modes_ = list(settings.modes) if usable else []
    by_dir = {d: storage.direction_scores(tensors, d) for d in DIRECTIONS}
    with small_gaps() as small:  # modes whose F is noise (|M(full) - M(empty)| tiny)
        curve, minimal = sweep(model, graph, sel, ev, by_dir, modes_, settings,
                               progress=progress)
    for message in small:
        log.warning("%s", message)
    return CircuitRun(sel_pairs, ev_pairs, sel, ev, tensors, meta, modes_, by_dir, curve,
                      minimal, small)


def minimal_record(record: Mapping[str, Any], task: str, subset: str, graph: Graph,
                   run: CircuitRun, settings: SearchSettings) -> dict[str, Any]:
    """The circuit rule's minimal.json: what was searched on which pairs, and per mode with
    a minimal circuit its size, F with intervals, edges (indices, names, scores) and
    meaning; the main mode's direction overlap, the small gaps and the provenance."""
    from vermem.circuits.transfer import semantics

    n = graph.n_edges
    flat = {d: t.flatten() for d, t in run.by_dir.items()}
    main = settings.main
    pair = [run.minimal.get(Mode(d, main["placement"], main["ablation"])) for d in DIRECTIONS]
    return {
        "model": record["name"], "revision": record["revision"], "task": task,
        "subset": subset, "n_edges": n, "n_pairs": run.ev.n, "n_selection": run.sel.n,
        "target": settings.target, "band": [settings.target, 2 - settings.target],
        "criterion": settings.criterion, "search": settings.search,
        "selection_on_evaluation": bool(settings.select_on_evaluation),
        "metric": settings.metric, "rank_by": settings.rank_by,
        "n_layers": graph.shape.n_layers, "n_heads": graph.shape.n_heads,
        "attribution_pairs": run.n_attr,
        "selection_docs": sorted(set(run.sel_pairs["doc_id"])),
        "evaluation_docs": sorted(set(run.ev_pairs["doc_id"])),
        "not_found": [{"direction": m.direction, "placement": m.placement,
                       "ablation": m.ablation} for m in run.modes if m not in run.minimal],
        "circuits": [{"direction": m.direction, "placement": m.placement,
                      "ablation": m.ablation, "semantics": semantics(task, m.direction),
                      "share": v["k"] / n, "n_edges": n,
                      **{k: x for k, x in v.items() if k != "edges"},
                      "edge_index": v["edges"],
                      "edges": graph.edge_names(torch.tensor(v["edges"], dtype=torch.long)),
                      "scores": [float(flat[m.direction][i]) for i in v["edges"]]}
                     for m, v in run.minimal.items()],
        "ranked_by": {d: "scores_denoising" if d == "denoising" and "scores_denoising"
                      in run.tensors else "scores" for d in DIRECTIONS},
        # the main mode's noising and de-noising minimal circuits: how much the two
        # directions' rankings agree where it matters (None: a direction has no circuit)
        "direction_overlap": {
            "placement": main["placement"], "ablation": main["ablation"],
            **edge_overlap(*(None if c is None else c["edges"] for c in pair),
                           ("noising", "denoising"))},
        # mode and pair set where F is not meaningful (circuits.check_gap)
        "small_gap": {"threshold": MIN_GAP, "count": len(run.small), "where": run.small},
        "provenance": files.provenance(settings.section, model=record["name"]),
    }


def write_eap(paths: Sequence[str], directions: Sequence[str], graph: Graph, run: CircuitRun,
              minimal: Mapping[str, Any], settings: SearchSettings) -> None:
    """The main mode's minimal circuit of each of `directions` in the EAP-IG library's graph
    JSON, one file of `paths` each (`minimal`: the record, `minimal_record`)."""
    from vermem.circuits.transfer import semantics

    main = settings.main
    for d, path in zip(directions, paths, strict=True):
        mode = Mode(d, main["placement"], main["ablation"])
        eap_json.write_circuit(path, graph, run.by_dir[d], run.minimal.get(mode), {
            **{k: minimal[k] for k in ("model", "revision", "task", "subset", "metric",
                                       "rank_by")},
            "direction": d, "semantics": semantics(minimal["task"], d),
            "placement": main["placement"], "ablation": main["ablation"],
            "ranked_by": minimal["ranked_by"][d]})


def log_record(minimal: Mapping[str, Any], info) -> None:
    """The main mode's direction overlap and each minimal circuit of a `minimal_record`, as
    a person reads them, through `info` (a logger's)."""
    from vermem.core.progress import number as r3

    ov = minimal["direction_overlap"]
    info("main mode: noising and de-noising minimal circuits share %s edges (Jaccard %s)",
         ov["shared"], "-" if ov["jaccard"] is None else f"{ov['jaccard']:.2f}")
    for c in minimal["circuits"]:
        info("%s/%s/%s: minimal circuit %d edges [%s, %s] (selection, n = %d), "
             "F = %s [%s, %s] on %d evaluation pairs", c["direction"], c["placement"],
             c["ablation"], c["k"], r3(c["k_lo"]), r3(c["k_hi"]), minimal["n_selection"],
             r3(c["faithfulness"]), r3(c["faithfulness_lo"]), r3(c["faithfulness_hi"]),
             minimal["n_pairs"])


NOTEBOOK_SEARCH = SearchSettings(curve_points=12)  # `minimal_circuit`'s default search


def minimal_circuit(model, graph: Graph, scores: torch.Tensor | Mapping[str, torch.Tensor],
                    pairs: Sequence[Sequence], *, selection: Sequence[Sequence] | None = None,
                    mode: Mode | str = MAIN_MODE, search: SearchSettings = NOTEBOOK_SEARCH,
                    progress: ProgressArg = None) -> dict | None:
    """The notebook's minimal circuit (`vermem.minimal_circuit`): the smallest top-|score|
    circuit whose F lies in the target band |1 - F| <= 1 - target, `sweep` over about
    `search.curve_points` log-spaced sizes and the search between them, in one `mode`
    (`search`: `vermem.SearchSettings`, e.g. `SearchSettings(target=0.9, curve_points=8,
    metric=...)`). `pairs`: (clean, corrupt, answer, wrong) token ids (`pair_batch.Pairs`).

    The size is chosen on the `selection` pairs (a (clean, corrupt, answer, wrong) tuple,
    as the workflow's selection part) and F reported, with its bootstrap interval, on the
    pairs given (the evaluation pairs). Without `selection` the size is chosen on the
    evaluation pairs themselves, and their F is optimistic. `scores`: an [S, D] tensor,
    or `vermem.attribute`'s result (each direction ranked by its own scores).

    Returns `sweep`'s record of the mode (k, faithfulness, faithfulness_lo/hi, band,
    selection_faithfulness, n_pairs, ...) with `circuit`, the [S, D] boolean mask of
    its edges; None where no size is in the band."""
    mode = Mode.of(mode)
    if isinstance(scores, Mapping) and "scores" in scores:
        scores = {"noising": scores["scores"],
                  "denoising": scores.get("scores_denoising", scores["scores"])}
    ev = EvalSet.make(model, *pairs, 8)
    sel = ev if selection is None else EvalSet.make(model, *selection, 8)
    _, minimal = sweep(model, graph, sel, ev, scores, [mode], search, progress=progress)
    if mode not in minimal:
        return None
    record = dict(minimal[mode])
    mask = torch.zeros(graph.mask.numel(), dtype=torch.bool)
    mask[torch.tensor(record["edges"], dtype=torch.long)] = True
    record["circuit"] = mask.view(graph.mask.shape)
    return record
