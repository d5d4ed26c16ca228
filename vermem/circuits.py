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
- placement: `inside` patches the circuit's edges (docs/study-a.md §9's definitions), `outside`
  patches every other edge (EAP-IG's evaluation: the rest of the model ablated).

Faithfulness F(C) = (M(C) - M(empty)) / (M(full) - M(empty)), with M the mean metric over
the pairs (a ratio of means) and M(empty), M(full) evaluated in the same mode, so F(full) =
1 and F(empty) = 0 in every mode.

Speed: `evaluate_many` runs many circuits in one forward pass, the pair batch tiled once
per circuit and each copy patched with its own circuit's mask (`patched_logits` takes a
mask per block of rows); circuits that run the same prompts with the same replacement
values share a forward whatever their placement. The numbers equal one-at-a-time
evaluation.

Honest numbers: every F has a seeded percentile bootstrap interval over pairs (`Bootstrap`:
the pairs resampled, F recomputed as a ratio of means). The minimal circuit is chosen on
the *selection* pairs, as the smallest size whose F lies in the target band |1 - F| <= 1 -
target (an overshoot is reported, never selected), and reported on the disjoint
*evaluation* pairs next to random circuits of the same size. Directions mean different
things per task (`SEMANTICS`): transfer and overlap pair circuits by meaning (prevention,
induction), and `claims` gives each of the paper's claims a three-way verdict.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import polars as pl
import torch

from . import attribution as A
from .corpus import sample_key
from .graph import Graph
from .progress import ProgressArg, track
from .stats import Bootstrap, Resampler, f_replicates, mean_ci
from .tasks import base_task

DIRECTIONS = ("noising", "denoising")
PLACEMENTS = ("inside", "outside")
ABLATIONS = ("resample", "zero", "mean")
BOOTSTRAP = Bootstrap()  # the default: 1000 resamples, seed 0, 95%
EVALUATIONS = "circuit evaluations"  # the unit of their progress: a circuit on a pair set


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


def overlap_coefficient(a: torch.Tensor, b: torch.Tensor) -> float:
    """|A & B| / min(|A|, |B|): 1 when the smaller circuit lies inside the larger, however
    different their sizes (Jaccard is at most min / max then); 1 for two empty circuits,
    0 when only one is empty."""
    na, nb = int(a.sum()), int(b.sum())
    if not na or not nb:
        return float(na == nb)
    return int((a & b).sum()) / min(na, nb)


def edge_overlap(a: Sequence[int] | None, b: Sequence[int] | None,
                 names: tuple[str, str] = ("a", "b")) -> dict[str, int | float | None]:
    """Sizes, shared edges and Jaccard index of two circuits given as flat edge indices
    (None where a circuit was not found: then shared and Jaccard are None)."""
    out: dict[str, int | float | None] = {f"{names[0]}_edges": None if a is None else len(a),
                                          f"{names[1]}_edges": None if b is None else len(b),
                                          "shared": None, "jaccard": None}
    if a is not None and b is not None:
        sa, sb = set(a), set(b)
        out["shared"] = len(sa & sb)
        out["jaccard"] = len(sa & sb) / len(sa | sb) if sa | sb else 1.0
    return out


# -- evaluation ------------------------------------------------------------------------------

MAX_PADDING = 0.2  # padded share of a batch's tokens, at most (0.57-0.73 in one batch of 30)


def length_batches(lengths: Sequence[int], batch_size: int, max_padding: float = MAX_PADDING
                   ) -> list[list[int]]:
    """Batches (index lists, in order) of ascending `lengths`: greedy, a new batch starts
    where the next length would push the batch's padding share (padded / all tokens)
    above `max_padding` or its size above `batch_size`; so is the whole set's."""
    out: list[list[int]] = []
    real = 0
    for i, n in enumerate(lengths):
        cur = out[-1] if out else None
        if cur is not None and len(cur) < batch_size and \
                (len(cur) + 1) * n - (real + n) <= max_padding * (len(cur) + 1) * n:
            cur.append(i)
            real += n
        else:
            out.append([i])
            real = n
    return out


@dataclass
class EvalSet:
    """Held-out pairs in batches, with their clean and corrupt source activations."""
    batches: list[A.Batch]
    clean: list[torch.Tensor]    # per batch [S, B, T, D] float32
    corrupt: list[torch.Tensor]  # per batch [S, B, T, D]
    mean: torch.Tensor           # [S, D]: clean sources averaged over examples and positions
    groups: torch.Tensor | None = None  # [n] document index of each pair (batch order)
    docs: list[str] | None = None       # [n] document id of each pair (batch order)
    clean_logp: list[torch.Tensor] | None = None  # per batch [B, V]: the unpatched clean
    # run's next-token log-probabilities, the reference of the KL metric

    @property
    def n(self) -> int:
        return sum(int(b.answer.numel()) for b in self.batches)

    @property
    def padding(self) -> float:
        """Padded tokens / all tokens of the batches (the share of forward work wasted)."""
        total = sum(b.mask.numel() for b in self.batches)
        return 1 - sum(int(b.mask.sum()) for b in self.batches) / total if total else 0.0

    @classmethod
    @torch.no_grad()
    def make(cls, model, clean: Sequence[Sequence[int]], corrupt: Sequence[Sequence[int]],
             answer: Sequence[int], wrong: Sequence[int], batch_size: int,
             groups: Sequence[str] | None = None, max_padding: float = MAX_PADDING
             ) -> EvalSet:
        """`groups`: the document of each pair, so that the bootstrap resamples documents
        (windows of one document are correlated), not pairs. Pairs are sorted by length
        and cut into batches of at most `batch_size` whose padding share stays within
        `max_padding` (`length_batches`); the pair order (of metrics and `groups`) is the
        sorted order whatever the cut."""
        dev = next(model.parameters()).device
        arch, be = A.arch_of(model), A.HooksBackend()
        order = sorted(range(len(clean)), key=lambda i: len(clean[i]))
        batches, cl, co, logp = [], [], [], []
        total, count = None, 0
        for idx in length_batches([len(clean[i]) for i in order], batch_size, max_padding):
            idx = [order[i] for i in idx]
            b = A.Batch.make([clean[i] for i in idx], [corrupt[i] for i in idx],
                             [answer[i] for i in idx], [wrong[i] for i in idx], dev)
            src = be.sources(model, arch, b.clean, b.mask)  # the clean run: sources, logits
            c = src.acts
            batches.append(b)
            cl.append(c)
            co.append(be.sources(model, arch, b.corrupt, b.mask).acts)
            last = src.logits[torch.arange(b.clean.shape[0], device=dev), b.last]
            logp.append(last.float().log_softmax(-1))
            s = (c * b.mask[None, :, :, None]).sum((1, 2))  # [S, D]
            total = s if total is None else total + s
            count += int(b.mask.sum())
        g, docs = None, None
        if groups is not None:
            names = {d: i for i, d in enumerate(sorted(set(groups)))}
            g = torch.tensor([names[groups[i]] for i in order], dtype=torch.long)
            docs = [groups[i] for i in order]
        return cls(batches, cl, co, total / count if count else torch.zeros(0), g, docs, logp)

    @classmethod
    def of_pairs(cls, model, pairs: pl.DataFrame, batch_size: int) -> EvalSet:
        """`make` from a pairs table (clean, corrupt, answer, wrong, doc_id columns)."""
        return cls.make(model, pairs["clean"].to_list(), pairs["corrupt"].to_list(),
                        pairs["answer"].to_list(), pairs["wrong"].to_list(), batch_size,
                        pairs["doc_id"].to_list())

    def weights(self, boot: Bootstrap, resampler: Resampler | None = None) -> torch.Tensor:
        """[R, n] bootstrap weights of the pairs: the run's shared document draws when a
        `resampler` is given (pairs with known documents), else this set's own."""
        if resampler is not None and self.docs is not None:
            return resampler.weights(self.docs)
        return boot.indices(self.n, self.groups)


PARTS = ("attribution", "selection", "evaluation")


def spread(pairs: pl.DataFrame, n: int | None, seed: int = 0) -> pl.DataFrame:
    """At most n pairs, spread over as many documents as possible: one seeded pair of every
    document (documents in seeded order), then a second of each, and so on. n None: all."""
    if n is None or pairs.height <= n:
        return pairs

    offsets = pairs["offset"] if "offset" in pairs.columns else pl.Series(range(pairs.height))
    ranked = pairs.with_columns(
        pl.Series("_doc", [sample_key(seed, d) for d in pairs["doc_id"]], dtype=pl.Int64),
        pl.Series("_pair", [sample_key(seed, f"{d}:{o}:{a}") for d, o, a in
                            zip(pairs["doc_id"], offsets, pairs["answer"], strict=True)],
                  dtype=pl.Int64))
    ranked = ranked.with_columns(pl.col("_pair").rank("ordinal").over("doc_id").alias("_r"))
    return ranked.sort("_r", "_doc", "_pair").head(n).drop("_doc", "_pair", "_r")


def split_sets(pairs: pl.DataFrame, task: str, subset: str, name: str = "pairs",
               max_pairs: Mapping[str, int | None] | None = None, seed: int = 0
               ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(selection, evaluation) pairs of one task and subset, each capped at
    `max_pairs[part]` pairs spread over documents (`spread`). Raises, naming the file and
    the documents, when a document evaluated here is also in the attribution or selection
    part of any task or subset (the split is by document, shared by every task)."""
    bad = set(pairs["split"].unique()) - set(PARTS)
    if bad:
        raise ValueError(f"{name}: column split has values {sorted(bad)}, not in {PARTS}")
    ev_docs = set(pairs.filter(pl.col("split") == "evaluation")["doc_id"])
    used = pairs.filter(pl.col("split") != "evaluation")
    used_docs = set(used["doc_id"]) | set(used["corrupt_doc_id"].drop_nulls())
    leak = sorted(ev_docs & used_docs)
    if leak:
        raise ValueError(f"{name}: {len(leak)} documents are evaluated and also used for "
                         f"attribution or selection (e.g. {leak[:3]}); the split must be by "
                         "document, shared by every task")
    q = pairs.filter((pl.col("task") == task) & (pl.col("subset") == subset))
    cap = dict(max_pairs or {})
    return tuple(spread(q.filter(pl.col("split") == part), cap.get(part), seed)
                 for part in ("selection", "evaluation"))


@dataclass
class PerPair:
    """One evaluated circuit: per-pair values over an EvalSet, in its (length-sorted) order."""
    metric: torch.Tensor      # [n] float64, the evaluated metric
    logit_diff: torch.Tensor  # [n] logit(answer) - logit(wrong)
    correct: torch.Tensor     # [n] 1.0 where the answer is the argmax
    kl: torch.Tensor          # [n] KL(clean run || circuit) of the next token, in nats


@dataclass
class Result:
    metric: float       # mean over examples of the evaluated metric
    logit_diff: float   # mean logit(answer) - logit(wrong)
    accuracy: float     # share of examples whose answer is the argmax
    kl: float           # mean KL(clean run || circuit) of the next-token distribution

    @classmethod
    def of(cls, r: PerPair) -> Result:
        n = max(1, r.metric.numel())
        return cls(float(r.metric.sum()) / n, float(r.logit_diff.sum()) / n,
                   float(r.correct.sum()) / n, float(r.kl.sum()) / n)


def _plan(graph: Graph, mode: Mode, edges: torch.Tensor) -> tuple[torch.Tensor, str, str]:
    """(edges patched, replacement values, prompts run) of circuit `edges` in `mode`."""
    patched = edges & graph.mask if mode.placement == "inside" else graph.mask & ~edges
    if mode.direction == "noising":
        return patched, mode.ablation, "clean"
    if mode.ablation == "resample":
        return patched, "clean", "corrupt"
    # de-noising from the ablated model: everything not restored is ablated
    return graph.mask & ~patched, mode.ablation, "clean"


@torch.no_grad()
def evaluate_many(model, graph: Graph, ev: EvalSet, jobs: Sequence[tuple[Mode, torch.Tensor]],
                  kind: A.Metric = "logit_diff", per_forward: int = 16, *,
                  progress: ProgressArg = None) -> list[PerPair]:
    """Evaluate many (mode, circuit) jobs, `per_forward` circuits per forward pass: jobs
    that run the same prompts with the same replacement values (whatever their placement)
    share a forward, each batch row carrying its own circuit's patch mask. Equal, up to
    float rounding, to evaluating them one at a time (per_forward=1). `kind`: the metric
    (`attribution.Metric`: a name or a function); `progress` (vermem.progress) counts
    `EVALUATIONS`, a job's share of each pair batch as that batch is done."""
    with track(progress, "circuits", len(jobs), EVALUATIONS) as p:
        out = _evaluate_many(model, graph, ev, jobs, kind, per_forward, p)
        if not ev.batches:
            p.advance(len(jobs))
    empty = torch.zeros(0, dtype=torch.float64)
    return [PerPair(*(torch.cat(v) if v else empty for v in out[j])) for j in range(len(jobs))]


def _evaluate_many(model, graph, ev, jobs, kind, per_forward, p) -> dict[int, tuple]:
    """`evaluate_many`'s values per job: four lists of per-batch tensors."""
    groups: dict[tuple[str, str], list[tuple[int, torch.Tensor]]] = {}
    for j, (mode, edges) in enumerate(jobs):
        patch, repl, ids = _plan(graph, mode, edges)
        groups.setdefault((repl, ids), []).append((j, patch))
    out = {j: ([], [], [], []) for j in range(len(jobs))}
    refs = ev.clean_logp or [None] * len(ev.batches)
    for b, clean, corrupt, ref in zip(ev.batches, ev.clean, ev.corrupt, refs, strict=True):
        B = int(b.answer.numel())
        for (repl, ids), members in groups.items():
            replacement = {"resample": corrupt, "clean": clean,
                           "zero": torch.zeros_like(clean),
                           "mean": ev.mean[:, None, None, :].expand_as(clean)}[repl]
            run = b.clean if ids == "clean" else b.corrupt
            for c0 in range(0, len(members), max(1, per_forward)):
                chunk = members[c0: c0 + max(1, per_forward)]
                c = len(chunk)
                masks = torch.stack([m for _, m in chunk])  # [c, S, D]: one per tiled copy
                logits = A.patched_logits(model, graph, b, masks, replacement, run.repeat(c, 1))
                m = A.metric(logits, b, kind).double().view(c, B)
                ld = A.metric(logits, b, "logit_diff").double().view(c, B)
                last = logits[torch.arange(c * B, device=logits.device), b.last.repeat(c)]
                ok = (last.argmax(-1) == b.answer.repeat(c)).double().view(c, B)
                if ref is None:
                    kl = torch.full((c, B), math.nan, dtype=torch.float64)
                else:  # sum_v p_clean(v) (log p_clean(v) - log p_circuit(v))
                    r = ref.repeat(c, 1)
                    kl = (r.exp() * (r - last.float().log_softmax(-1))).sum(-1)
                    kl = kl.double().view(c, B)
                for i, (j, _) in enumerate(chunk):
                    for lst, v in zip(out[j], (m[i], ld[i], ok[i], kl[i]), strict=True):
                        lst.append(v.cpu())
                p.advance(c / len(ev.batches))
    return out


def evaluate(model, graph: Graph, ev: EvalSet, edges: torch.Tensor, mode: Mode,
             kind: A.Metric = "logit_diff") -> Result:
    """Run the evaluation pairs with circuit `edges` ([S, D] bool) patched as `mode` says."""
    return Result.of(evaluate_many(model, graph, ev, [(mode, edges)], kind)[0])


# F divides by M(full) - M(empty): where the two are closer than this (in the metric's
# units: nats of logit difference or log-probability for METRICS), a circuit's F is a
# ratio of noise and means little; `check_gap` warns. 0.1 nats is a 10% change in the odds
# of the answer, about the spread of a mean over a few dozen pairs of a task whose clean
# and corrupt runs differ little; a metric function of another scale may need another
# threshold (`min_gap`).
MIN_GAP = 0.1


class SmallGapWarning(UserWarning):
    """|M(full) - M(empty)| < MIN_GAP: faithfulness F is not meaningful there."""


def check_gap(empty: float, full: float, where: str = "", min_gap: float = MIN_GAP) -> bool:
    """Whether F = (M(C) - M(empty)) / (M(full) - M(empty)) can mean anything: False, with a
    SmallGapWarning naming `where`, when |M(full) - M(empty)| < `min_gap` (or is NaN)."""
    gap = abs(full - empty)
    if gap >= min_gap:
        return True
    warnings.warn(f"|M(full) - M(empty)| = {gap:.3g} < {min_gap:g}" + (
        f" ({where})" if where else "") + ": F divides by a difference this small and "
        "means little", SmallGapWarning, stacklevel=2)
    return False


@contextlib.contextmanager
def small_gaps() -> Iterator[list[str]]:
    """The messages of the SmallGapWarnings raised inside (every one, not only the first
    of each place); other warnings pass as before."""
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SmallGapWarning)
        yield found
    for w in caught:
        if issubclass(w.category, SmallGapWarning):
            found.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def faithfulness(m: float, empty: float, full: float, min_gap: float = MIN_GAP) -> float:
    """(M(C) - M(empty)) / (M(full) - M(empty)); NaN where full and empty agree. Warns
    (`check_gap`) where they are closer than `min_gap`."""
    check_gap(empty, full, min_gap=min_gap)
    return _f(m, empty, full)


def _f(m: float, empty: float, full: float) -> float:
    return (m - empty) / (full - empty) if full != empty else float("nan")


# -- the target band and minimal circuits ---------------------------------------------------

def band(f: float | None, target: float) -> str | None:
    """'in' where |1 - F| <= 1 - target, 'below' or 'above' (overshoot) otherwise."""
    if f is None or math.isnan(f):
        return None
    if f < target:
        return "below"
    return "above" if f > 2 - target + 1e-12 else "in"


def in_band(f: float, target: float) -> bool:
    return band(f, target) == "in"


CRITERIA = ("band", "ratio_of_full")
SEARCHES = ("band", "coarse")


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


CURVE_SCHEMA = {
    "split": pl.String, "direction": pl.String, "placement": pl.String,
    "ablation": pl.String, "circuit": pl.String, "seed": pl.Int32, "k": pl.Int32,
    "share": pl.Float64, "n_pairs": pl.Int32, "metric": pl.Float64, "logit_diff": pl.Float64,
    "accuracy": pl.Float64, "faithfulness": pl.Float64, "faithfulness_lo": pl.Float64,
    "faithfulness_hi": pl.Float64, "band": pl.String, "search": pl.Boolean,
    "ratio_of_full": pl.Float64, "kl": pl.Float64,
}


def _nan_none(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def sweep(model, graph: Graph, sel: EvalSet, ev: EvalSet,
          scores: torch.Tensor | Mapping[str, torch.Tensor],
          modes_: Sequence[Mode], sizes: Sequence[int], seeds: Sequence[int],
          random_modes: Sequence[Mode], target: float, kind: A.Metric = "logit_diff",
          boot: Bootstrap = BOOTSTRAP, per_forward: int = 16, search_width: int = 8,
          random_points: int | None = None, criterion: str = "band", search: str = "band",
          *, progress: ProgressArg = None) -> tuple[pl.DataFrame, dict[Mode, dict]]:
    """Faithfulness curves (with bootstrap intervals) of the top-k circuits by |score| on
    the selection and the evaluation pairs, random circuits of the same sizes (the modes
    in `random_modes` only) on the evaluation pairs, and per mode the minimal circuit:
    its size chosen on the selection pairs (smallest k in the target band), its F
    reported on the evaluation pairs next to random circuits of the same size.

    Returns the curve table (CURVE_SCHEMA; `split` says which pairs, `search` marks sizes
    added by the search) and {mode: record} for the modes with an in-band size. Random
    curves are evaluated at about `random_points` of the curve's sizes (evenly spread over
    it; None: all of them).

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
    (vermem.progress) counts `EVALUATIONS`: the curves' and the chosen sizes' up front,
    the search's as its rounds find them."""
    crit = Criterion(criterion, target)
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
                 + len(rand_modes) * len(seeds) * n_inner, EVALUATIONS)

    def run(es, jobs):
        return evaluate_many(model, graph, es, jobs, kind, per_forward, progress=prog)

    def rows_of(split, es, mode, name, seed, ks, res, empty, full, searched=False):
        if not ks:
            return (torch.zeros(0, dtype=torch.float64),
                    torch.zeros(0, boot.samples, dtype=torch.float64))
        idx = boot.indices(es.n, es.groups)
        mc = torch.stack([res[k].metric for k in ks])
        point, reps = f_replicates(mc, empty.metric, full.metric, idx)
        lo, hi = boot.interval(reps)
        for i, k in enumerate(ks):
            r = Result.of(res[k])
            f = _nan_none(float(point[i]))
            full_m = float(full.metric.mean())
            rows.append({"split": split, "direction": mode.direction,
                         "placement": mode.placement, "ablation": mode.ablation,
                         "circuit": name, "seed": seed, "k": k, "share": k / n,
                         "n_pairs": es.n, "metric": r.metric, "logit_diff": r.logit_diff,
                         "accuracy": r.accuracy, "faithfulness": f,
                         "faithfulness_lo": _nan_none(float(lo[i])),
                         "faithfulness_hi": _nan_none(float(hi[i])),
                         "band": band(f, target), "search": searched,
                         "ratio_of_full": r.metric / full_m if full_m else None,
                         "kl": _nan_none(r.kl)})
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
        minimal[m] = {"k": k, "k_lo": _nan_none(float(k_lo[0])),
                      "k_hi": _nan_none(float(k_hi[0])),
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
    idx = boot.indices(ev.n, ev.groups)
    for m in chosen:
        empty, full = ev_res[m][0].metric, ev_res[m][n].metric
        p, r = f_replicates(top[m].metric[None], empty, full, idx)
        lo, hi = boot.interval(r)
        rec = Result.of(top[m])
        full_m = float(full.mean())
        minimal[m].update({"ratio_of_full": rec.metric / full_m if full_m else None,
                           "kl": _nan_none(rec.kl),
                           "accepted": crit.accepts(crit.value(rec.metric, float(empty.mean()),
                                                               full_m)),
                           "faithfulness": _nan_none(float(p[0])),
                           "faithfulness_lo": _nan_none(float(lo[0])),
                           "faithfulness_hi": _nan_none(float(hi[0])),
                           "band": band(float(p[0]), target),
                           "metric": rec.metric, "accuracy": rec.accuracy,
                           "empty": float(empty.mean()), "full": float(full.mean()),
                           "n_pairs": ev.n})
        if seeds:
            rp, rr = f_replicates(torch.stack([x.metric for x in rnd[m]]), empty, full, idx)
            lo, hi = boot.interval(rr.nanmean(0)[None])
            minimal[m].update({"random_faithfulness": _nan_none(float(rp.nanmean())),
                               "random_faithfulness_lo": _nan_none(float(lo[0])),
                               "random_faithfulness_hi": _nan_none(float(hi[0]))})
        else:
            minimal[m].update({"random_faithfulness": None, "random_faithfulness_lo": None,
                               "random_faithfulness_hi": None})
    prog.close()
    return pl.DataFrame(rows, schema=CURVE_SCHEMA), minimal


# -- transfer ------------------------------------------------------------------------------

BRANCH, DECISION = "branch_comparison", "memorization_decision"
# What a direction does to memorization, per task. Branch Comparison: clean = the memorized
# branch, so noising (corrupting edges of the clean run) prevents memorization and
# de-noising (restoring them in the corrupt run) induces it. Memorization Decision: clean =
# the non-memorized start, corrupt = the memorized one, so it is the other way round.
SEMANTICS = {(BRANCH, "noising"): "prevention", (BRANCH, "denoising"): "induction",
             (DECISION, "noising"): "induction", (DECISION, "denoising"): "prevention"}


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


def transfer(model, graph: Graph, evsets: dict[tuple[str, str], EvalSet],
             circuits: dict[tuple[str, str, str, str], torch.Tensor], ablation: str,
             seeds: Sequence[int], kind: A.Metric = "logit_diff", boot: Bootstrap = BOOTSTRAP,
             per_forward: int = 16, random_placements: Iterable[str] | None = None,
             resampler: Resampler | None = None, replicates: list | None = None, *,
             progress: ProgressArg = None) -> pl.DataFrame:
    """Every circuit (source task, subset, direction, placement) evaluated on every
    evaluation set (target task, subset) in the direction with the same meaning there
    (prevention with prevention, induction with induction: `SEMANTICS`), in its own
    placement and `ablation`; next to it random circuits of the same size (mean F over the
    seeds; only for circuits of `random_placements`, default all) and the target's
    unpatched clean-run logit difference and accuracy. Every estimate has a bootstrap
    interval over the target's pairs (the run's shared draws with a `resampler`); with a
    `replicates` list, each row's F replicates [R] are appended to it, in row order.
    `progress` (vermem.progress) counts `EVALUATIONS`."""
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
                rand = {"random_faithfulness": _nan_none(float(rp.nanmean())),
                        "random_faithfulness_lo": _nan_none(float(rlo[0])),
                        "random_faithfulness_hi": _nan_none(float(rhi[0]))}
            rows.append({"semantics": meaning, "source_task": task, "source_subset": subset,
                         "source_direction": direction, "target_task": t_task,
                         "target_subset": t_subset, "target_direction": mode.direction,
                         "placement": placement, "ablation": ablation,
                         "relation": relation((task, subset), (t_task, t_subset)),
                         "k": k, "n_pairs": ev.n, "logit_diff": ld[0], "logit_diff_lo": ld[1],
                         "logit_diff_hi": ld[2], "accuracy": acc[0], "accuracy_lo": acc[1],
                         "accuracy_hi": acc[2], "faithfulness": _nan_none(float(p[0])),
                         "faithfulness_lo": _nan_none(float(lo[0])),
                         "faithfulness_hi": _nan_none(float(hi[0])), **rand,
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


def resampler(pairs: pl.DataFrame, boot: Bootstrap,
              max_pairs: Mapping[str, int | None] | None = None, seed: int = 0) -> Resampler:
    """The run's shared bootstrap (`stats.Resampler`): per subset, the documents of every
    task's evaluation set there (`split_sets` with the same caps; controls included), so that
    every rule that evaluates any of them draws the same."""
    strata: dict[str, set[str]] = {}
    for task, subset in pairs.select("task", "subset").unique().iter_rows():
        _, ev = split_sets(pairs, task, subset, max_pairs=max_pairs, seed=seed)
        strata.setdefault(subset, set()).update(ev["doc_id"])
    return Resampler(boot, {s: sorted(d) for s, d in strata.items()})


# -- size-matched transfer ---------------------------------------------------------------------

MATCHED_SCHEMA = {
    "semantics": pl.String, "subset": pl.String, "target_task": pl.String,
    "target_direction": pl.String, "source_task": pl.String, "source_direction": pl.String,
    "placement": pl.String, "ablation": pl.String, "k": pl.Int32, "n_pairs": pl.Int32,
    "own": pl.Float64, "own_lo": pl.Float64, "own_hi": pl.Float64,
    "transferred": pl.Float64, "transferred_lo": pl.Float64, "transferred_hi": pl.Float64,
    "gap": pl.Float64, "gap_lo": pl.Float64, "gap_hi": pl.Float64,
}


def matched_transfer(model, graph: Graph, evsets: Mapping[tuple[str, str], EvalSet],
                     orders: Mapping[tuple[str, str, str], torch.Tensor],
                     sizes: Mapping[tuple[str, str], Sequence[int]], placement: str,
                     ablation: str, kind: A.Metric = "logit_diff", boot: Bootstrap = BOOTSTRAP,
                     per_forward: int = 16, resampler: Resampler | None = None,
                     replicates: list | None = None, *, progress: ProgressArg = None
                     ) -> pl.DataFrame:
    """Cross-task transfer at the same size: on each task's evaluation pairs (target), the
    other task's top-k edges (source ranking) against the target's own top-k, for every k in
    `sizes[(subset, meaning)]`, directions paired by meaning (`SEMANTICS`).

    orders: (task, subset, direction) -> edge ranking (`ranking` of that direction's
    scores). A row per (subset, meaning, target, k): F of the target's own top-k (`own`),
    of the source's top-k (`transferred`) and `gap` = transferred - own, each with its
    interval; the gap's replicates [R] are appended to `replicates` in row order.
    `progress` (vermem.progress) counts `EVALUATIONS`."""
    rows = []
    cells = []  # (target task, subset, evaluation set, meaning, target and source direction,
    #             source task, sizes, jobs)
    for (t_task, subset), ev in sorted(evsets.items()):
        if ev.n == 0:
            continue
        others = sorted({t for t, s, _ in orders if s == subset and t != t_task})
        for meaning in ("prevention", "induction"):
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
                         "own": _nan_none(float(po)), "own_lo": _nan_none(float(olo)),
                         "own_hi": _nan_none(float(ohi)),
                         "transferred": _nan_none(float(pt)),
                         "transferred_lo": _nan_none(float(tlo)),
                         "transferred_hi": _nan_none(float(thi)),
                         "gap": _nan_none(float(pt - po)),
                         "gap_lo": _nan_none(float(glo)),
                         "gap_hi": _nan_none(float(ghi))})
    prog.close()
    return pl.DataFrame(rows, schema=MATCHED_SCHEMA)
