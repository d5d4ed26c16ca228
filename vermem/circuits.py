"""Circuits (docs/study-a.md §9-10): top-k edges, exact edge-patching evaluation, faithfulness.

A circuit is a boolean [S, D] edge mask (`Graph` layout). It is evaluated on held-out pairs
by exact edge patching (`attribution.patched_logits`: every patched destination reads the
replacement value of that source, everything else is recomputed). A mode is a

- direction: `noising` runs the clean prompt and gives the patched edges ablated values
  (resample: the corrupt prompt's activations; zero; mean: the mean over the evaluation
  set's clean prompts and positions); `denoising` restores the patched edges to the clean
  prompt's activations in a run on the corrupt prompt (resample). Zero and mean ablation
  have no corrupt prompt to run on, so there de-noising starts from the clean prompt with
  every edge outside the restored set ablated.
- placement: `inside` patches the circuit's edges (docs/study-a.md §9), `outside`
  patches every other edge (EAP-IG's evaluation: the rest of the model ablated).

Faithfulness F(C) = (M(C) - M(empty)) / (M(full) - M(empty)), with M the mean metric over
the evaluation pairs and M(empty), M(full) evaluated in the same mode, so F(full) = 1 and
F(empty) = 0 in every mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import polars as pl
import torch

from . import attribution as A
from .graph import Graph

DIRECTIONS = ("noising", "denoising")
PLACEMENTS = ("inside", "outside")
ABLATIONS = ("resample", "zero", "mean")


@dataclass(frozen=True)
class Mode:
    direction: str
    placement: str
    ablation: str

    def __post_init__(self) -> None:
        for value, allowed in ((self.direction, DIRECTIONS), (self.placement, PLACEMENTS),
                               (self.ablation, ABLATIONS)):
            if value not in allowed:
                raise ValueError(f"{value!r} is not one of {allowed}")


def modes(directions: Iterable[str], placements: Iterable[str], ablations: Iterable[str]
          ) -> list[Mode]:
    return [Mode(d, p, a) for d in directions for p in placements for a in ablations]


# -- which edges ---------------------------------------------------------------------------

def ranking(graph: Graph, scores: torch.Tensor) -> torch.Tensor:
    """Flat [S * D] indices of the graph's edges, by |score| descending (ties: graph order)."""
    idx = graph.mask.flatten().nonzero().flatten()
    vals = scores.flatten()[idx].abs().float()
    return idx[torch.sort(-vals, stable=True).indices]


def random_ranking(graph: Graph, seed: int) -> torch.Tensor:
    """The graph's edges in a seeded random order: its first k are a random circuit of k."""
    idx = graph.mask.flatten().nonzero().flatten()
    return idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))]


def circuit(graph: Graph, order: torch.Tensor, k: int) -> torch.Tensor:
    """The first k edges of `order` as a boolean [S, D] mask."""
    m = torch.zeros(graph.mask.numel(), dtype=torch.bool)
    m[order[:k]] = True
    return m.view(graph.mask.shape)


def log_sizes(n_edges: int, points: int) -> list[int]:
    """0, n_edges and about `points` log-spaced circuit sizes between 1 and n_edges."""
    grid = {0, n_edges}
    for i in range(points):
        grid.add(round(math.exp(math.log(n_edges) * i / max(1, points - 1))))
    return sorted(k for k in grid if 0 <= k <= n_edges)


def jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


# -- evaluation ------------------------------------------------------------------------------

@dataclass
class EvalSet:
    """Held-out pairs in batches, with their clean and corrupt source activations."""
    batches: list[A.Batch]
    clean: list[torch.Tensor]    # per batch [S, B, T, D] float32
    corrupt: list[torch.Tensor]  # per batch [S, B, T, D]
    mean: torch.Tensor           # [S, D]: clean sources averaged over examples and positions

    @property
    def n(self) -> int:
        return sum(int(b.answer.numel()) for b in self.batches)

    @classmethod
    @torch.no_grad()
    def make(cls, model, clean: Sequence[Sequence[int]], corrupt: Sequence[Sequence[int]],
             answer: Sequence[int], wrong: Sequence[int], batch_size: int) -> EvalSet:
        dev = next(model.parameters()).device
        arch, be = A.arch_of(model), A.HooksBackend()
        order = sorted(range(len(clean)), key=lambda i: len(clean[i]))
        batches, cl, co = [], [], []
        total, count = None, 0
        for j in range(0, len(order), batch_size):
            idx = order[j: j + batch_size]
            b = A.Batch.make([clean[i] for i in idx], [corrupt[i] for i in idx],
                             [answer[i] for i in idx], [wrong[i] for i in idx], dev)
            c = be.sources(model, arch, b.clean, b.mask).acts
            batches.append(b)
            cl.append(c)
            co.append(be.sources(model, arch, b.corrupt, b.mask).acts)
            s = (c * b.mask[None, :, :, None]).sum((1, 2))  # [S, D]
            total = s if total is None else total + s
            count += int(b.mask.sum())
        return cls(batches, cl, co, total / count if count else torch.zeros(0))


@dataclass
class Result:
    metric: float       # mean over examples of the evaluated metric
    logit_diff: float   # mean logit(answer) - logit(wrong)
    accuracy: float     # share of examples whose answer is the argmax


@torch.no_grad()
def evaluate(model, graph: Graph, ev: EvalSet, edges: torch.Tensor, mode: Mode,
             kind: str = "logit_diff") -> Result:
    """Run the evaluation pairs with circuit `edges` ([S, D] bool) patched as `mode` says."""
    patched = edges & graph.mask if mode.placement == "inside" else graph.mask & ~edges
    tot_m = tot_ld = tot_acc = 0.0
    for b, clean, corrupt in zip(ev.batches, ev.clean, ev.corrupt, strict=True):
        if mode.ablation == "resample":
            ablated = corrupt
        elif mode.ablation == "zero":
            ablated = torch.zeros_like(clean)
        else:
            ablated = ev.mean[:, None, None, :].expand_as(clean)
        if mode.direction == "noising":
            logits = A.patched_logits(model, graph, b, patched, ablated, b.clean)
        elif mode.ablation == "resample":
            logits = A.patched_logits(model, graph, b, patched, clean, b.corrupt)
        else:  # de-noising from the ablated model: everything not restored is ablated
            logits = A.patched_logits(model, graph, b, graph.mask & ~patched, ablated, b.clean)
        tot_m += float(A.metric(logits, b, kind).sum())
        tot_ld += float(A.metric(logits, b, "logit_diff").sum())
        last = logits[torch.arange(len(b.last), device=logits.device), b.last]
        tot_acc += float((last.argmax(-1) == b.answer).float().sum())
    n = max(1, ev.n)
    return Result(tot_m / n, tot_ld / n, tot_acc / n)


def faithfulness(m: float, empty: float, full: float) -> float:
    """(M(C) - M(empty)) / (M(full) - M(empty)); NaN where full and empty agree."""
    return (m - empty) / (full - empty) if full != empty else float("nan")


# -- curves and minimal circuits -----------------------------------------------------------

def minimal_size(f: Callable[[int], float], curve: dict[int, float], target: float
                 ) -> tuple[int | None, dict[int, float]]:
    """Smallest circuit size with F >= target, precise to one edge where F allows.

    `curve` maps evaluated sizes to F (it must hold 0 and the full size). The first size on
    it that reaches the target brackets a crossing with the size before it; bisection then
    evaluates `f` inside the bracket until it is one edge wide, so the answer k has
    F(k) >= target and F(k - 1) < target. Returns (k or None, the sizes evaluated on the
    way)."""
    sizes = sorted(curve)
    hit = next((k for k in sizes if curve[k] >= target), None)
    found: dict[int, float] = {}
    if hit is None:
        return None, found
    i = sizes.index(hit)
    lo, hi = (sizes[i - 1], hit) if i else (hit, hit)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        found[mid] = f(mid)
        if found[mid] >= target:
            hi = mid
        else:
            lo = mid
    return hi, found


CURVE_SCHEMA = {
    "direction": pl.String, "placement": pl.String, "ablation": pl.String,
    "circuit": pl.String, "seed": pl.Int32, "k": pl.Int32, "share": pl.Float64,
    "metric": pl.Float64, "logit_diff": pl.Float64, "accuracy": pl.Float64,
    "faithfulness": pl.Float64, "search": pl.Boolean,
}


def sweep(model, graph: Graph, ev: EvalSet, scores: torch.Tensor, modes_: Sequence[Mode],
          sizes: Sequence[int], seeds: Sequence[int], target: float, kind: str = "logit_diff"
          ) -> tuple[pl.DataFrame, dict[Mode, dict]]:
    """Faithfulness curves of the top-k circuits (by |score|) and of random circuits of the
    same sizes, per mode, and the minimal circuit of each mode.

    Returns the curve table (CURVE_SCHEMA; `search` marks sizes added by the bisection) and
    {mode: {"k", "faithfulness", "metric", "accuracy", "edges" (flat indices)}}."""
    n = graph.n_edges
    sizes = sorted(set(sizes) | {0, n})
    order = ranking(graph, scores)
    randoms = {s: random_ranking(graph, s) for s in seeds}
    rows, minimal = [], {}

    def row(mode, name, seed, k, r, f, search=False):
        rows.append({"direction": mode.direction, "placement": mode.placement,
                     "ablation": mode.ablation, "circuit": name, "seed": seed, "k": k,
                     "share": k / n, "metric": r.metric, "logit_diff": r.logit_diff,
                     "accuracy": r.accuracy, "faithfulness": f, "search": search})

    for mode in modes_:
        res = {k: evaluate(model, graph, ev, circuit(graph, order, k), mode, kind)
               for k in sizes}
        empty, full = res[0].metric, res[n].metric
        for k in sizes:
            row(mode, "attribution", None, k, res[k], faithfulness(res[k].metric, empty, full))

        def f(k, mode=mode, empty=empty, full=full, res=res):
            res[k] = evaluate(model, graph, ev, circuit(graph, order, k), mode, kind)
            return faithfulness(res[k].metric, empty, full)

        curve = {k: faithfulness(res[k].metric, empty, full) for k in sizes}
        k_min, searched = minimal_size(f, curve, target)
        for k, fk in sorted(searched.items()):
            row(mode, "attribution", None, k, res[k], fk, search=True)
        for seed, rand in randoms.items():
            for k in sizes:
                r = res[k] if k in (0, n) else evaluate(model, graph, ev,
                                                        circuit(graph, rand, k), mode, kind)
                row(mode, "random", seed, k, r, faithfulness(r.metric, empty, full))
        if k_min is not None:
            minimal[mode] = {"k": k_min, "faithfulness": {**curve, **searched}[k_min],
                             "metric": res[k_min].metric, "accuracy": res[k_min].accuracy,
                             "empty": empty, "full": full, "edges": order[:k_min].tolist()}
    return pl.DataFrame(rows, schema=CURVE_SCHEMA), minimal


TRANSFER_SCHEMA = {
    "direction": pl.String, "source_task": pl.String, "source_subset": pl.String,
    "target_task": pl.String, "target_subset": pl.String, "relation": pl.String,
    "k": pl.Int32, "n_pairs": pl.Int32, "logit_diff": pl.Float64, "accuracy": pl.Float64,
    "faithfulness": pl.Float64, "random_faithfulness": pl.Float64,
    "clean_logit_diff": pl.Float64, "clean_accuracy": pl.Float64,
}


def relation(source: tuple[str, str], target: tuple[str, str]) -> str:
    """in-domain (same task and subset), cross-task, cross-domain, or cross-both."""
    same_task, same_subset = source[0] == target[0], source[1] == target[1]
    return {(True, True): "in-domain", (False, True): "cross-task",
            (True, False): "cross-domain", (False, False): "cross-both"}[same_task, same_subset]


def transfer(model, graph: Graph, evsets: dict[tuple[str, str], EvalSet],
             circuits: dict[tuple[str, str, str], torch.Tensor], main: dict[str, str],
             seeds: Sequence[int], kind: str = "logit_diff") -> pl.DataFrame:
    """Every circuit (source task, subset, direction) evaluated on every evaluation set
    (target task, subset) in its direction, with the main placement and ablation; next to
    it the mean faithfulness of random circuits of the same size and the target's
    unpatched clean-run logit difference and accuracy."""
    rows = []
    plain = Mode("noising", "inside", "resample")  # with no edge patched: the clean run
    nothing = torch.zeros_like(graph.mask)
    cleans = {key: evaluate(model, graph, ev, nothing, plain, kind) for key, ev in evsets.items()}
    for (task, subset, direction), edges in sorted(circuits.items()):
        mode = Mode(direction, main["placement"], main["ablation"])
        k = int(edges.sum())
        for (t_task, t_subset), ev in sorted(evsets.items()):
            if ev.n == 0:
                continue
            empty = evaluate(model, graph, ev, nothing, mode, kind)
            full = evaluate(model, graph, ev, graph.mask, mode, kind)
            r = evaluate(model, graph, ev, edges, mode, kind)
            rand = [faithfulness(evaluate(model, graph, ev,
                                          circuit(graph, random_ranking(graph, s), k),
                                          mode, kind).metric, empty.metric, full.metric)
                    for s in seeds]
            rows.append({"direction": direction, "source_task": task,
                         "source_subset": subset, "target_task": t_task,
                         "target_subset": t_subset,
                         "relation": relation((task, subset), (t_task, t_subset)),
                         "k": k, "n_pairs": ev.n, "logit_diff": r.logit_diff,
                         "accuracy": r.accuracy,
                         "faithfulness": faithfulness(r.metric, empty.metric, full.metric),
                         "random_faithfulness": sum(rand) / len(rand) if rand else None,
                         "clean_logit_diff": cleans[t_task, t_subset].logit_diff,
                         "clean_accuracy": cleans[t_task, t_subset].accuracy})
    return pl.DataFrame(rows, schema=TRANSFER_SCHEMA)


def overlap(circuits: dict[tuple[str, str, str], torch.Tensor]) -> pl.DataFrame:
    """Shared edges and Jaccard index between every two circuits of one direction."""
    rows = []
    for (ta, sa, da), a in sorted(circuits.items()):
        for (tb, sb, db), b in sorted(circuits.items()):
            if da == db:
                rows.append({"direction": da, "a_task": ta, "a_subset": sa, "b_task": tb,
                             "b_subset": sb, "a_edges": int(a.sum()), "b_edges": int(b.sum()),
                             "shared": int((a & b).sum()), "jaccard": jaccard(a, b)})
    return pl.DataFrame(rows, schema={
        "direction": pl.String, "a_task": pl.String, "a_subset": pl.String,
        "b_task": pl.String, "b_subset": pl.String, "a_edges": pl.Int32,
        "b_edges": pl.Int32, "shared": pl.Int32, "jaccard": pl.Float64})


CLAIM_SCHEMA = {"claim": pl.String, "direction": pl.String, "test": pl.String,
                "a": pl.Float64, "b": pl.Float64, "evidence": pl.String,
                "supported": pl.Boolean}

BRANCH, DECISION = "branch_comparison", "memorization_decision"


def _mean(df: pl.DataFrame, col: str = "faithfulness") -> float | None:
    vals = [v for v in df[col].to_list() if v is not None and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else None


def claims(transfer_df: pl.DataFrame, sizes: dict[tuple[str, str, str], tuple[int, int]],
           main_subset: str, threshold: float, margin: float = 0.0) -> pl.DataFrame:
    """The paper's claims (docs/study-a.md §11) checked against this run's own transfer results.

    transfer_df: `transfer`'s table; sizes: (task, subset, direction) -> (minimal circuit
    size, edges in the graph); `threshold`: the faithfulness at which a circuit counts as
    transferring. `supported` is null where the run has no data for the test."""
    rows = []
    t = transfer_df

    def add(claim, direction, test, a, b, evidence, ok):
        rows.append({"claim": claim, "direction": direction, "test": test, "a": a, "b": b,
                     "evidence": evidence, "supported": None if a is None or b is None
                     else bool(ok(a, b))})

    def fmt(x):
        return "n/a" if x is None else f"{x:.3f}"

    for direction in DIRECTIONS:
        d = t.filter(pl.col("direction") == direction)
        cross = d.filter(pl.col("relation") == "cross-task")
        a = _mean(cross.filter(pl.col("source_task") == DECISION))
        b = _mean(cross.filter(pl.col("source_task") == BRANCH))
        add("Memorization Decision circuits also maintain memorization (Branch Comparison), "
            "not the reverse", direction,
            f"F(MD circuit on BC pairs) >= {threshold} > F(BC circuit on MD pairs), same subset",
            a, b, f"F(MD->BC) = {fmt(a)}, F(BC->MD) = {fmt(b)} (mean over subsets)",
            lambda a, b: a >= threshold > b and a > b + margin)
    dom = {}
    for direction in DIRECTIONS:
        d = t.filter((pl.col("direction") == direction) & (pl.col("source_task") == BRANCH)
                     & (pl.col("target_task") == BRANCH) & (pl.col("source_subset") == main_subset))
        own = _mean(d.filter(pl.col("relation") == "in-domain"))
        other = _mean(d.filter(pl.col("relation") == "cross-domain"))
        dom[direction] = (own, other, None if own is None or other is None else own - other)
    own, other, _ = dom["noising"]
    add("Memorization prevention (noising) transfers across domains", "noising",
        f"F of the {main_subset} Branch Comparison circuit on the other subsets >= {threshold}",
        other, threshold, f"F in-domain = {fmt(own)}, cross-domain = {fmt(other)}",
        lambda a, b: a >= b)
    drop_n, drop_d = dom["noising"][2], dom["denoising"][2]
    add("Induction (de-noising) is more context-dependent than prevention (noising)", "both",
        f"F drop from in-domain to cross-domain: de-noising > noising + {margin}", drop_d,
        drop_n, f"drop de-noising = {fmt(drop_d)}, noising = {fmt(drop_n)}",
        lambda a, b: a > b + margin)
    for direction in DIRECTIONS:
        bc = sizes.get((BRANCH, main_subset, direction))
        md = sizes.get((DECISION, main_subset, direction))
        a = None if bc is None else float(bc[0])
        b = None if md is None else float(md[0])
        add("Branch Comparison circuits are smaller than Memorization Decision circuits "
            "(GPT-Neo-125M: 14 vs 141 edges)", direction,
            f"minimal circuit sizes on {main_subset}: BC < MD", a, b,
            "BC = " + ("n/a" if bc is None else f"{bc[0]} edges ({100 * bc[0] / bc[1]:.2f}%)")
            + ", MD = " + ("n/a" if md is None else f"{md[0]} edges ({100 * md[0] / md[1]:.2f}%)"),
            lambda a, b: a < b)
    return pl.DataFrame(rows, schema=CLAIM_SCHEMA)


def main_circuits(graph: Graph, records: Sequence[dict], main: dict[str, str]
                  ) -> dict[tuple[str, str, str], torch.Tensor]:
    """(task, subset, direction) -> edge mask of the minimal circuits found in the main
    placement and ablation, from the `circuit` rule's records."""
    out = {}
    for rec in records:
        for c in rec["circuits"]:
            if (c["placement"], c["ablation"]) == (main["placement"], main["ablation"]):
                m = torch.zeros(graph.mask.numel(), dtype=torch.bool)
                m[torch.tensor(c["edge_index"], dtype=torch.long)] = True
                out[rec["task"], rec["subset"], c["direction"]] = m.view(graph.mask.shape)
    return out
