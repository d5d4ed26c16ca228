"""MIB circuit-localization scores (Mueller et al. 2025; hannamw/MIB-circuit-track,
`evaluation.py: evaluate_area_under_curve`): CPR and CMD of an edge ranking.

1. Sizes: the top k = int(p * E) edges by |score| for each fraction p in FRACTIONS
   (0.1% ... 100% of the E edges), as MIB's `apply_topn(int(pct * n), absolute=True)`.
2. Faithfulness at each size: F = (M(C) - M(empty)) / (M(full) - M(empty)), M the mean
   metric over the evaluation pairs, evaluated in the circuit's mode (vermem.circuits.evaluation).
3. CPR = the area under F over p, CMD = the area under |1 - F|, both trapezoids on a
   linear p axis from 0.001 to 1 (MIB's default, log_scale=False). Higher CPR and lower
   CMD are better; a circuit that is faithful at every size has CPR ~ 1 and CMD ~ 0.
   On that axis the sizes where minimal circuits live (under 10% of the edges) carry
   under 10% of the weight, so next to them (kept for comparability) vermem gives the
   log-axis area (`log_area`): F over log10(k / E) from one edge to all E, normalised by
   log10(E) to [0, 1], every decade weighed alike (a random ranking, F = k / E, scores
   (1 - 1/E) / ln E).
4. Intervals: every F replicate of the cluster bootstrap over the evaluation pairs
   (documents resampled whole, vermem.core.stats) gives a CPR and a CMD replicate; the
   percentile interval of those, with n pairs and documents next to it.

Differences from MIB, stated where the table is documented (docs/study-a.md): MIB prunes
each top-k graph to the edges on a path from the input to the logits before evaluating it;
vermem evaluates the top-k edges as they are (the same circuits the curve and the minimal
circuit use). MIB evaluates on the task's test split; here the evaluation pairs, disjoint
from the attribution pairs that ranked the edges.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import polars as pl
import torch

from vermem.attribution.graph import Graph
from vermem.circuits import evaluation
from vermem.circuits.settings import MibSettings
from vermem.core.progress import ProgressArg, track
from vermem.core.stats import f_replicates, nan_to_none
from vermem.core.vocabulary import DIRECTIONS

FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
SCHEMA = {
    "method": pl.String, "direction": pl.String, "placement": pl.String,
    "ablation": pl.String, "circuit": pl.String, "n_pairs": pl.Int32, "n_docs": pl.Int32,
    "cpr": pl.Float64, "cpr_lo": pl.Float64, "cpr_hi": pl.Float64,
    "cmd": pl.Float64, "cmd_lo": pl.Float64, "cmd_hi": pl.Float64,
    "log_area": pl.Float64, "log_area_lo": pl.Float64, "log_area_hi": pl.Float64,
    "faithfulness": pl.List(pl.Float64),  # F at each of FRACTIONS (random: mean over seeds)
}


def sizes(n_edges: int) -> list[int]:
    """MIB's circuit sizes: int(p * E) for p in FRACTIONS."""
    return [int(p * n_edges) for p in FRACTIONS]


def areas(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(CPR, CMD) of faithfulness values f [len(FRACTIONS), ...] at FRACTIONS: trapezoids
    over p on a linear axis; [...] each. NaN where any F is NaN."""
    x = torch.tensor(FRACTIONS, dtype=torch.float64).view(-1, *([1] * (f.dim() - 1)))
    dx = x[1:] - x[:-1]
    f = f.double()
    cpr = (dx * (f[1:] + f[:-1]) / 2).sum(0)
    d = (1 - f).abs()
    cmd = (dx * (d[1:] + d[:-1]) / 2).sum(0)
    return cpr, cmd


def log_sizes(n_edges: int) -> list[int]:
    """The sizes of the log-axis area: one edge, then MIB's sizes of at least one edge."""
    return sorted({1, *(k for k in sizes(n_edges) if k >= 1)} - {0}) if n_edges else []


def log_area(ks: Sequence[int], f: torch.Tensor, n_edges: int) -> torch.Tensor:
    """The normalised log-axis area of faithfulness values f [len(ks), ...] at sizes `ks`
    (ascending, from 1 to n_edges): trapezoids of F over x = log10(k / E) from 1/E to 1,
    divided by log10(E), so that it lies in [0, 1] for F in [0, 1] and every decade of
    sizes weighs the same (MIB's CPR weighs them by their width on a linear axis, so that
    sizes under 10% of the edges carry under 10% of it). [...]; NaN where any F is NaN or
    the graph has one edge. A random ranking with F = k / E scores (1 - 1/E) / ln E."""
    if n_edges <= 1:
        return torch.full(f.shape[1:], float("nan"), dtype=torch.float64)
    x = torch.tensor([math.log10(k / n_edges) for k in ks], dtype=torch.float64)
    x = x.view(-1, *([1] * (f.dim() - 1)))
    f = f.double()
    return ((x[1:] - x[:-1]) * (f[1:] + f[:-1]) / 2).sum(0) / math.log10(n_edges)


def score(*args, **kwargs) -> pl.DataFrame:
    """`scored`'s table alone (the same arguments)."""
    return scored(*args, **kwargs)[0]


def scored(
    model,
    graph: Graph,
    ev: evaluation.EvalSet,
    scores: Mapping[str, torch.Tensor],
    modes: Sequence[evaluation.Mode],
    settings: MibSettings | None = None,
    method: str = "",
    *,
    progress: ProgressArg = None,
) -> tuple[pl.DataFrame, list[tuple]]:
    """CPR and CMD with bootstrap intervals, per mode, of the ranking by |scores[direction]|
    ("attribution" rows) and, in `random_modes` (default: every mode), of a random ranking
    per seed (the mean over seeds in one "random" row), on the evaluation pairs `ev`
    (SCHEMA). Without pairs every row has n_pairs 0 and no scores. `progress`
    (vermem.core.progress) counts circuit evaluations. `settings` (MibSettings, None: its
    defaults): the metric, the bootstrap (and the run's shared `resampler`, where given),
    circuits per forward, the random rankings' seeds and `random_modes`. The log-axis area
    (`log_area`) of each ranking is given next to MIB's CPR and CMD. Returns (the table,
    a (mode, "attribution", CPR, CPR replicates [R]) tuple per mode, for paired
    comparisons of rankings on the same draws)."""
    replicates: list[tuple] = []
    settings = settings or MibSettings()
    kind, boot, per_forward = settings.metric, settings.boot, settings.per_forward
    seeds, random_modes = list(settings.seeds), settings.random_modes
    n = graph.n_edges
    ks = sizes(n)
    docs = int(ev.groups.max()) + 1 if ev.n and ev.groups is not None else ev.n
    rows = []

    def row(mode, name, cpr=None, cmd=None, la=None, f=None):
        out = {"method": method, "direction": mode.direction, "placement": mode.placement,
               "ablation": mode.ablation, "circuit": name, "n_pairs": ev.n, "n_docs": docs,
               "faithfulness": None if f is None else [nan_to_none(float(x)) for x in f]}
        for key, val in (("cpr", cpr), ("cmd", cmd), ("log_area", la)):
            point, reps = (None, None) if val is None else val
            lo, hi = boot.interval(reps[None]) if reps is not None else (None, None)
            out.update({key: None if point is None else nan_to_none(float(point)),
                        f"{key}_lo": None if lo is None else nan_to_none(float(lo[0])),
                        f"{key}_hi": None if hi is None else nan_to_none(float(hi[0]))})
        return out

    if ev.n == 0:
        rand = set(modes if random_modes is None else random_modes)
        return pl.DataFrame([row(m, c) for m in modes for c in
                             ("attribution", *(["random"] if seeds and m in rand else []))],
                            schema=SCHEMA), replicates
    orders = {
        d: evaluation.ranking(graph, scores.get(d, scores["noising"]))
        for d in DIRECTIONS
    }
    randoms = [
        {d: evaluation.random_ranking(graph, s) for d in DIRECTIONS} for s in seeds
    ]
    random_modes = set(modes if random_modes is None else random_modes)
    lks = log_sizes(n)
    inner = sorted({k for k in [*ks, *lks] if 0 < k < n})  # each size evaluated once
    # per mode: empty and full once, then every ranking's inner sizes
    jobs = [(m, evaluation.circuit(graph, orders[m.direction], k)) for m in modes for k in (0, n)]
    jobs += [(m, evaluation.circuit(graph, o[m.direction], k)) for m in modes
             for o in [orders, *(randoms if m in random_modes else [])] for k in inner]
    with track(progress, "MIB", len(jobs), evaluation.EVALUATIONS) as p:
        out = iter(evaluation.evaluate_many(model, graph, ev, jobs, kind, per_forward, progress=p))
    ends = {m: (next(out).metric, next(out).metric) for m in modes}
    idx = ev.weights(boot, settings.resampler)  # the run's shared draws, where given
    nk = len(ks)

    def all_areas(f):  # (CPR, CMD, log area) of F at ks then lks
        return (*areas(f[:nk]), log_area(lks, f[nk:], n))
    for m in modes:
        empty, full = ends[m]
        per = []
        for _ in [orders, *(randoms if m in random_modes else [])]:
            got = {0: empty, n: full} | {k: next(out).metric for k in inner}
            per.append(f_replicates(torch.stack([got[k] for k in [*ks, *lks]]), empty, full,
                                    idx))
        (p0, r0), rnd = per[0], per[1:]
        a0, ar0 = all_areas(p0), all_areas(r0)
        rows.append(row(m, "attribution", *zip(a0, ar0, strict=True), f=p0[:nk]))
        replicates.append((m, "attribution", float(a0[0]), ar0[0]))
        if rnd:  # the mean over seeds of each seed's areas, point and replicates
            a_p = [torch.stack(x).mean(0) for x in zip(*(all_areas(p) for p, _ in rnd),
                                                       strict=True)]
            a_r = [torch.stack(x).nanmean(0) for x in zip(*(all_areas(r) for _, r in rnd),
                                                          strict=True)]
            f = torch.stack([p[:nk] for p, _ in rnd]).nanmean(0)
            rows.append(row(m, "random", *zip(a_p, a_r, strict=True), f=f))
    return pl.DataFrame(rows, schema=SCHEMA), replicates


def log_scores(table: pl.DataFrame, info) -> None:
    """One line per attribution row of a `score` table, through `info` (a logger's)."""
    for r in table.filter(pl.col("circuit") == "attribution").iter_rows(named=True):
        info("MIB %s/%s/%s: CPR %s [%s, %s], CMD %s [%s, %s] (n = %d pairs)",
             r["direction"], r["placement"], r["ablation"], *(
                 "-" if r[k] is None else f"{r[k]:.3f}" for k in
                 ("cpr", "cpr_lo", "cpr_hi", "cmd", "cmd_lo", "cmd_hi")), r["n_pairs"])
