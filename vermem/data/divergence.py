"""Divergence points of memorized samples (docs/study-a.md §3).

For full = prefix + true continuation (T = P + C tokens) and L = P, P-1, ..., 1, let g_L be
the greedy continuation of full[:L] to length T and B_L the smoothed BLEU-4 of g_L against
full[L:]. The divergence point d is the largest L < P with B_L < (1 - drop) * B_{L+1} and
g_L[0] != full[L]; a sample without one is dropped.

The naive computation generates once per L. `divergence_points` gets the identical result
from far fewer generations, through one fact: when the model's greedy token after
full[:L] is full[L] itself, the greedy continuation of full[:L] is full[L] followed by the
greedy continuation of full[:L+1], so g_L = [full[L]] + g_{L+1}. One teacher-forced pass
gives the greedy token at every position; only positions where it differs from the true
token need a generation, and those of one L across all samples share a length, so they run
as one unpadded batch with a KV cache.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
import torch

from vermem.core.progress import ProgressArg, track
from vermem.data.labels import greedy


def bleu4(hypothesis: Sequence[int], reference: Sequence[int], epsilon: float = 0.1) -> float:
    """Sentence BLEU-4 on token ids, uniform weights, with NLTK's smoothing method 1
    (a zero n-gram match count becomes `epsilon`) and the brevity penalty."""
    if not hypothesis:
        return 0.0
    log_p = 0.0
    for n in range(1, 5):
        hyp = Counter(tuple(hypothesis[i: i + n]) for i in range(len(hypothesis) - n + 1))
        ref = Counter(tuple(reference[i: i + n]) for i in range(len(reference) - n + 1))
        matches = sum(min(c, ref[g]) for g, c in hyp.items())
        denom = max(1, sum(hyp.values()))
        if matches == 0 and n == 1:
            return 0.0
        log_p += 0.25 * math.log((matches or epsilon) / denom)
    r, c = len(reference), len(hypothesis)
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return bp * math.exp(log_p)


@dataclass
class Divergence:
    d: int | None                 # divergence point, None when the sample is dropped
    generation: list[int] | None  # g_d: greedy continuation of full[:d], T - d tokens
    bleu: list[float]             # B_L for L = P, P-1, ..., down to d (or 1)
    generations: int              # generation calls this sample needed


def _find(full: Sequence[int], L: int, gen: list[int], b: float, prev: float,
          drop: float) -> bool:
    return gen[0] != full[L] and b < (1 - drop) * prev


def divergence_naive(model, full: Sequence[int], prefix_tokens: int, drop: float = 0.3,
                     epsilon: float = 0.1) -> Divergence:
    """The definition, one generation per prefix length. For tests and benchmarks."""
    T, dev = len(full), next(model.parameters()).device
    bleus, prev = [], None
    for L in range(prefix_tokens, 0, -1):
        gen = greedy(model, torch.tensor([full[:L]], device=dev), T - L)[0].tolist()
        b = bleu4(gen, full[L:], epsilon)
        bleus.append(b)
        if prev is not None and _find(full, L, gen, b, prev, drop):
            return Divergence(L, gen, bleus, prefix_tokens - L + 1)
        prev = b
    return Divergence(None, None, bleus, prefix_tokens)


@torch.no_grad()
def divergence_points(model, fulls: Sequence[Sequence[int]], prefix_tokens: int,
                      batch_size: int, drop: float = 0.3, epsilon: float = 0.1,
                      base_generations: Sequence[Sequence[int]] | None = None, *,
                      progress: ProgressArg = None) -> list[Divergence]:
    """Divergence of every sample, identical to `divergence_naive`, batched.

    `base_generations` (optional) are the greedy continuations of full[:P] already made by
    the labels rule; they are reused rather than generated again. `progress`
    (vermem.core.progress): prefix lengths done, P - 1 down to 1 (the first ones cost the most:
    every sample is still searching there), the teacher-forced pass counted as one.
    """
    n, P = len(fulls), prefix_tokens
    if n == 0:
        return []
    with track(progress, "divergence", P, "prefix lengths") as p:
        return _divergence_points(model, fulls, P, batch_size, drop, epsilon,
                                  base_generations, p)


def _divergence_points(model, fulls, P, batch_size, drop, epsilon, base_generations, p):
    n = len(fulls)
    T = len(fulls[0])
    dev = next(model.parameters()).device
    full = torch.tensor(fulls, dtype=torch.long)  # [N, T]
    # greedy token after full[:t] for t = 1..T-1, from one teacher-forced pass per batch
    pred = torch.cat([model(input_ids=full[i: i + batch_size].to(dev)).logits.argmax(-1).cpu()
                      for i in range(0, n, batch_size)])  # [N, T]; pred[:, t-1] follows full[:t]
    if base_generations is None:
        base = torch.cat([greedy(model, full[i: i + batch_size, :P].to(dev), T - P).cpu()
                          for i in range(0, n, batch_size)])
        gens = [g.tolist() for g in base]
    else:
        gens = [list(g) for g in base_generations]
    bleus = [[bleu4(g, f[P:], epsilon)] for g, f in zip(gens, fulls, strict=True)]
    p.advance()
    calls = [1] * n
    result: list[Divergence | None] = [None] * n
    active = list(range(n))
    for L in range(P - 1, 0, -1):
        if not active:
            p.advance(L)  # the lengths left: nothing to search
            break
        fresh = [i for i in active if int(pred[i, L - 1]) != fulls[i][L]]
        new = {}
        for j in range(0, len(fresh), batch_size):
            idx = fresh[j: j + batch_size]
            out = greedy(model, full[idx, :L].to(dev), T - L).cpu().tolist()
            new.update(zip(idx, out, strict=True))
        still = []
        for i in active:
            if i in new:
                gen, calls[i] = new[i], calls[i] + 1
            else:
                gen = [fulls[i][L]] + gens[i]
            b = bleu4(gen, fulls[i][L:], epsilon)
            bleus[i].append(b)
            if _find(fulls[i], L, gen, b, bleus[i][-2], drop):
                result[i] = Divergence(L, gen, bleus[i], calls[i])
            else:
                gens[i] = gen
                still.append(i)
        active = still
        p.advance()
    return [r if r is not None else Divergence(None, None, bleus[i], calls[i])
            for i, r in enumerate(result)]


def run(model, labels: pl.DataFrame, prefix_tokens: int, batch_size: int, drop: float,
        epsilon: float, *, progress: ProgressArg = None) -> pl.DataFrame:
    """Divergence table of the memorized samples of a labels table: doc_id, offset,
    subset, dup_count, full (token ids), d, generation (g_d), bleu (B_P, B_{P-1}, ...),
    generations. `progress`: as `divergence_points`."""
    mem = labels.filter(pl.col("label") == "memorized")
    fulls = [a + b for a, b in zip(mem["prefix"].to_list(), mem["continuation"].to_list(),
                                   strict=True)]
    divs = divergence_points(model, fulls, prefix_tokens, batch_size, drop, epsilon,
                             base_generations=mem["generation"].to_list(), progress=progress)
    return mem.select("doc_id", "offset", "subset", "dup_count").with_columns(
        pl.Series("full", fulls, dtype=pl.List(pl.Int32)),
        pl.Series("d", [v.d for v in divs], dtype=pl.Int32),
        pl.Series("generation", [v.generation for v in divs], dtype=pl.List(pl.Int32)),
        pl.Series("bleu", [v.bleu for v in divs], dtype=pl.List(pl.Float64)),
        pl.Series("generations", [v.generations for v in divs], dtype=pl.Int32),
    )
