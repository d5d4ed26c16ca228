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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import polars as pl
import torch

from vermem.attribution import adapters, backends, pair_batch, patching
from vermem.attribution.graph import Graph
from vermem.core.progress import ProgressArg, track
from vermem.core.stats import Bootstrap, Resampler, f_replicates
from vermem.data.corpus import sample_key

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

    @classmethod
    def of(cls, mode: Mode | str) -> Mode:
        """`mode`, or the mode a "direction/placement/ablation" string names."""
        if isinstance(mode, Mode):
            return mode
        parts = mode.split("/")
        if len(parts) != 3:
            raise ValueError(f"{mode!r} is not direction/placement/ablation, e.g. "
                             f"noising/outside/resample")
        return cls(*parts)


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


def top_edges(graph: Graph, scores: torch.Tensor, k: int) -> torch.Tensor:
    """The circuit of the k edges of largest |score| (`ranking`), a boolean [S, D] mask."""
    return circuit(graph, ranking(graph, scores), k)


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
    batches: list[pair_batch.Batch]
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
        arch, be = adapters.arch_of(model), backends.HooksBackend()
        order = sorted(range(len(clean)), key=lambda i: len(clean[i]))
        batches, cl, co, logp = [], [], [], []
        total, count = None, 0
        for idx in length_batches([len(clean[i]) for i in order], batch_size, max_padding):
            idx = [order[i] for i in idx]
            b = pair_batch.Batch.make([clean[i] for i in idx], [corrupt[i] for i in idx],
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
                  kind: pair_batch.Metric = "logit_diff", per_forward: int = 16, *,
                  progress: ProgressArg = None) -> list[PerPair]:
    """Evaluate many (mode, circuit) jobs, `per_forward` circuits per forward pass: jobs
    that run the same prompts with the same replacement values (whatever their placement)
    share a forward, each batch row carrying its own circuit's patch mask. Equal, up to
    float rounding, to evaluating them one at a time (per_forward=1). `kind`: the metric
    (`attribution.Metric`: a name or a function); `progress` (vermem.core.progress) counts
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
                logits = patching.patched_logits(
                    model, graph, b, masks, replacement, run.repeat(c, 1)
                )
                m = pair_batch.metric(logits, b, kind).double().view(c, B)
                ld = pair_batch.metric(logits, b, "logit_diff").double().view(c, B)
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
             kind: pair_batch.Metric = "logit_diff") -> Result:
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


# -- one circuit from a notebook -----------------------------------------------------------

MAIN_MODE = "noising/outside/resample"  # the default config's main mode, noising direction


@dataclass(frozen=True)
class CircuitScore:
    """One circuit evaluated on a set of pairs (`evaluate_circuit`)."""
    faithfulness: float     # F = (M(C) - M(empty)) / (M(full) - M(empty)); NaN where equal
    faithfulness_lo: float  # its bootstrap interval over pairs (BOOTSTRAP: 95%)
    faithfulness_hi: float
    metric: float           # M(C): the mean metric with the circuit
    empty: float            # M(empty)
    full: float             # M(full)
    accuracy: float         # share of pairs whose answer is the circuit's argmax
    n_edges: int            # the circuit's edges
    n_pairs: int


def evaluate_circuit(model, graph: Graph, edges: torch.Tensor,
                     clean: Sequence[Sequence[int]], corrupt: Sequence[Sequence[int]],
                     answer: Sequence[int], wrong: Sequence[int], *,
                     mode: Mode | str = MAIN_MODE, metric: pair_batch.Metric = "logit_diff",
                     batch_size: int = 8, boot: Bootstrap = BOOTSTRAP) -> CircuitScore:
    """The notebook's evaluation (`vermem.evaluate_circuit`): circuit `edges` ([S, D]
    bool, e.g. `top_edges`) on the pairs (token ids, as `EvalSet.make` takes them), with
    the empty and the full circuit in the same `mode` (a Mode or "direction/placement/
    ablation"), by exact edge patching; F with its bootstrap interval over pairs. Warns
    (`check_gap`) where M(full) and M(empty) are too close for F to mean anything. For
    many circuits on one pair set, build the `EvalSet` once and use `evaluate_many`."""
    mode = Mode.of(mode)
    if not clean:
        raise ValueError("no pairs to evaluate the circuit on")
    ev = EvalSet.make(model, clean, corrupt, answer, wrong, batch_size)
    c, e, f = evaluate_many(model, graph, ev, [(mode, edges),
                                               (mode, torch.zeros_like(graph.mask)),
                                               (mode, graph.mask)], metric)
    empty, full = float(e.metric.mean()), float(f.metric.mean())
    check_gap(empty, full, f"{mode.direction}/{mode.placement}/{mode.ablation}")
    point, reps = f_replicates(c.metric[None], e.metric, f.metric, boot.indices(ev.n, ev.groups))
    lo, hi = boot.interval(reps)
    r = Result.of(c)
    return CircuitScore(float(point[0]), float(lo[0]), float(hi[0]), r.metric, empty, full,
                        r.accuracy, int((edges & graph.mask).sum()), ev.n)
