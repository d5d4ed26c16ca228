"""Statistics shared by the studies: the cluster bootstrap over pairs (documents resampled
whole), ratio-of-means faithfulness replicates, estimates with intervals, the Wilson
interval of a proportion and the censored (Kaplan-Meier) median.

Joint resampling: every quantity computed on one pair set takes its replicates from the
same `Bootstrap.indices` draws, so a difference of two such quantities (or any function of
several) gets its interval from the replicates of the difference, never from a normal
approximation that would treat correlated cells as independent.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Bootstrap:
    """Seeded percentile bootstrap over evaluation pairs, resampling whole documents when
    the pairs' documents are known (config `circuits.bootstrap`)."""
    samples: int = 1000
    seed: int = 0
    level: float = 0.95

    def indices(self, n: int, groups: torch.Tensor | None = None) -> torch.Tensor:
        """[samples, n] bootstrap weights: how often each pair is in each resample (the same
        draws for every quantity computed on one pair set, so differences between them are
        resampled jointly). With `groups` ([n] document index per pair) documents are drawn
        with replacement and a pair counts as often as its document was drawn: a cluster
        bootstrap, since windows of one document are not independent."""
        if n == 0:
            return torch.zeros(self.samples, 0, dtype=torch.float64)
        g = torch.Generator().manual_seed(self.seed)
        if groups is None:
            groups = torch.arange(n)
        k = int(groups.max()) + 1
        draws = torch.randint(0, k, (self.samples, k), generator=g)
        counts = torch.zeros(self.samples, k, dtype=torch.float64)
        counts.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))
        return counts[:, groups]

    def interval(self, replicates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Percentile interval over the last dimension, NaN replicates (F undefined in a
        resample) left out; NaN where every replicate is."""
        a = (1 - self.level) / 2
        r = replicates.double()
        q = torch.tensor([a, 1 - a], dtype=torch.float64)
        out = torch.nanquantile(r, q, dim=-1) if r.shape[-1] else torch.full(
            (2, *r.shape[:-1]), math.nan, dtype=torch.float64)
        return out[0], out[1]


class Resampler:
    """One cluster bootstrap shared by every pair set of a run: the documents of each stratum
    (a subset; documents of different subsets are independent) are drawn with replacement,
    as many as the stratum has, once per resample, seeded by the stratum's name; a pair
    weighs as often as its document was drawn, in every pair set it is in. Every rule that
    builds it from the same documents (every evaluation document of the pairs table, per
    subset) gets the same draws, so replicates computed in different rules and on different
    pair sets (memorized and control pairs, Branch Comparison and Memorization Decision pairs
    of one document) combine into the replicates of any function of them."""

    def __init__(self, boot: Bootstrap, strata: Mapping[str, Sequence[str]]) -> None:
        self.boot = boot
        self._counts: dict[str, torch.Tensor] = {}
        for name in sorted(strata):
            docs = sorted(set(strata[name]))
            if not docs:
                continue
            key = int.from_bytes(hashlib.sha256(f"{boot.seed}:{name}".encode()).digest()[:7],
                                 "big")
            g = torch.Generator().manual_seed(key)
            k = len(docs)
            draws = torch.randint(0, k, (boot.samples, k), generator=g)
            counts = torch.zeros(boot.samples, k, dtype=torch.float64)
            counts.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))
            for i, d in enumerate(docs):
                if d in self._counts:
                    raise ValueError(f"document {d!r} is in two strata")
                self._counts[d] = counts[:, i]

    def weights(self, docs: Sequence[str]) -> torch.Tensor:
        """[samples, n] weights of pairs from documents `docs` (one per pair)."""
        if not docs:
            return torch.zeros(self.boot.samples, 0, dtype=torch.float64)
        missing = sorted({d for d in docs if d not in self._counts})
        if missing:
            raise ValueError(f"{len(missing)} documents outside the resampled strata, "
                             f"e.g. {missing[0]!r}")
        return torch.stack([self._counts[d] for d in docs], 1)


TIE_RULES = ("argsort", "average")


def rank_correlation(a: torch.Tensor, b: torch.Tensor, ties: str = "argsort"
                     ) -> torch.Tensor:
    """Spearman's rank correlation along the last dimension of a, b [..., E]: [...] float64,
    NaN where either side is constant.

    The tie rule, `ties`:
    - "argsort" (the default): tied values get distinct ranks, in the order
      `torch.argsort` (not asked to be stable) leaves them: by position in inputs of up to
      16 values, beyond that in an order torch does not promise (not by position, on
      torch 2.13's CPU sort); the method comparison (`vermem.circuits.method_comparison`)
      and the exact-patching check use it.
    - "average": tied values share the mean of their ranks (the textbook Spearman), flat
      a, b only; the overlap of checkpoint circuits (`vermem.circuits.checkpoints`) uses it.
    The two differ only where a or b has ties; each call site keeps the rule it had, so
    no published number moved when they became this one function."""
    if ties == "average":
        return _average_rank_correlation(a, b)
    if ties != "argsort":
        raise ValueError(f"ties must be one of {TIE_RULES}, got {ties!r}")
    ra, rb = a.argsort(-1).argsort(-1).double(), b.argsort(-1).argsort(-1).double()
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    return (ra * rb).sum(-1) / (ra.norm(dim=-1) * rb.norm(dim=-1))


def _average_rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    import polars as pl  # for its rank('average'), which only this rule needs

    if a.dim() != 1 or b.dim() != 1:
        raise ValueError("rank_correlation with ties='average' takes flat tensors")
    ra = pl.Series(a.double().numpy()).rank("average").to_numpy()
    rb = pl.Series(b.double().numpy()).rank("average").to_numpy()
    ra, rb = torch.tensor(ra) - ra.mean(), torch.tensor(rb) - rb.mean()
    den = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    return torch.tensor(float((ra * rb).sum()) / den if den else math.nan, dtype=torch.float64)


def nan_to_none(x: Any, finite: bool = False) -> float | None:
    """`x` (a number or a one-element tensor) as a float for a table or JSON: None where it
    is None or NaN, and with `finite` also where it is infinite (JSON has no infinity)."""
    if x is None:
        return None
    v = float(x)
    return None if math.isnan(v) or (finite and math.isinf(v)) else v


def wmean(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted means of x [..., n] under bootstrap weights w [R, n]: [..., R]."""
    return (x.double() @ w.T) / w.sum(1).clamp_min(1e-12)


def f_replicates(mc: torch.Tensor, me: torch.Tensor, mf: torch.Tensor, idx: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """F = (mean M(C) - mean M(empty)) / (mean M(full) - mean M(empty)), a ratio of means
    over the pairs: point estimates [J] and bootstrap replicates [J, R] (idx [R, n]).
    mc [J, n], me and mf [n]. NaN where M(full) = M(empty)."""
    def ratio(c, e, f):
        d = f - e
        return torch.where(d != 0, (c - e) / torch.where(d != 0, d, 1.0), math.nan)

    point = ratio(mc.mean(-1), me.mean(), mf.mean())
    reps = ratio(wmean(mc, idx), wmean(me, idx), wmean(mf, idx))
    return point, reps


def mean_ci(x: torch.Tensor, idx: torch.Tensor, boot: Bootstrap) -> tuple[float, float, float]:
    lo, hi = boot.interval(wmean(x, idx)[None])
    return float(x.mean()), float(lo[0]), float(hi[0])


@dataclass
class Estimate:
    value: float | None
    lo: float | None
    hi: float | None
    n: int                    # pairs of the smallest evaluation set behind it
    random: float | None = None
    reps: torch.Tensor | None = None  # [R] bootstrap replicates (`Resampler` draws)

    @property
    def missing(self) -> bool:
        return self.value is None or self.lo is None or self.hi is None


NONE = Estimate(None, None, None, 0)


def combine(parts: Sequence[Estimate], level: float, weights: Sequence[float] | None = None
            ) -> Estimate:
    """A weighted sum of estimates (e.g. the mean over subsets: weights 1/m; a difference of
    drops: weights 1, -1, -1, 1), with the percentile interval of the same weighted sum of
    their replicates: the parts must carry replicates from one `Resampler`, so correlated
    parts (one pair set in two cells) are resampled jointly. A single estimate with weight 1
    keeps its own interval. Missing when any part is."""
    if not parts or any(p.missing for p in parts):
        return Estimate(None, None, None, min((p.n for p in parts), default=0))
    w = list(weights) if weights is not None else [1 / len(parts)] * len(parts)
    rnd = [p.random for p in parts]
    random = (None if any(r is None for r in rnd)
              else sum(wi * r for wi, r in zip(w, rnd, strict=True)))
    n = min(p.n for p in parts)
    if len(parts) == 1 and w[0] == 1:
        return Estimate(parts[0].value, parts[0].lo, parts[0].hi, n, random, parts[0].reps)
    if any(p.reps is None for p in parts):
        raise ValueError("a combination of estimates needs their bootstrap replicates")
    value = sum(wi * p.value for wi, p in zip(w, parts, strict=True))
    reps = sum(wi * p.reps.double() for wi, p in zip(w, parts, strict=True))
    lo, hi = Bootstrap(len(reps), 0, level).interval(reps[None])
    return Estimate(value, nan_to_none(lo[0]), nan_to_none(hi[0]), n, random, reps)


def censored_median(times: Sequence[int | None], horizon: int, level: float = 0.95
                    ) -> dict[str, Any]:
    """Median epochs to memorize with never-memorized strings (None) censored at `horizon`.

    Every string is censored at the same epoch (the end of training), so the Kaplan-Meier
    estimate equals the empirical distribution with the censored strings counted as
    '> horizon'. The median is the smallest epoch by which at least half of the strings are
    memorized; None with `median_censored` True when fewer than half ever are. The interval
    is the distribution-free one from order statistics (binomial(n, 1/2)) with coverage of
    at least `level`; None where n is too small for one (n < 6 at 95%) or where its upper
    end is censored (then `hi_censored`)."""
    n = len(times)
    t = sorted(math.inf if v is None else float(v) for v in times)
    out: dict[str, Any] = {"n": n, "memorized": sum(v is not None for v in times),
                           "horizon": horizon, "median": None, "median_censored": False,
                           "lo": None, "hi": None, "hi_censored": False}
    if not n:
        return out
    m = t[math.ceil(n / 2) - 1]
    out["median"], out["median_censored"] = (None, True) if math.isinf(m) else (m, False)
    # the largest j with P(B <= j - 1) <= alpha / 2: then [t_(j), t_(n+1-j)] covers >= level
    alpha = 1 - level
    j = max((j for j in range(1, n // 2 + 1) if _binom_half_cdf(j - 1, n) <= alpha / 2),
            default=None)
    if j is not None:
        lo, hi = t[j - 1], t[n - j]
        out["lo"] = None if math.isinf(lo) else lo
        out["hi"], out["hi_censored"] = (None, True) if math.isinf(hi) else (hi, False)
    return out


def _binom_half_cdf(k: int, n: int) -> float:
    """P(B <= k) for B ~ binomial(n, 1/2)."""
    import scipy.stats  # here, not at the top: 2 s of import for the jobs that never test

    return float(scipy.stats.binom.cdf(k, n, 0.5))


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson score interval of a proportion k / n (None, None when n = 0)."""
    if not n:
        return None, None
    import scipy.stats

    ci = scipy.stats.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def mean_t(x: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """Mean of `x` (one value per independent unit, e.g. a training run) with its Student t
    interval (df = n - 1) and one-sided p-values of mean > 0 (`p_above`) and mean < 0
    (`p_below`). n < 2: no interval. All values equal: the interval is the point and the
    p-values are 0 or 1 (no spread to test against: `sd` 0 says so)."""
    v = np.asarray(list(x), dtype=float)
    n = len(v)
    out: dict[str, Any] = {"n": n, "mean": float(v.mean()) if n else None, "sd": None,
                           "lo": None, "hi": None, "p_above": None, "p_below": None}
    if n < 2:
        return out
    m, sd = float(v.mean()), float(v.std(ddof=1))
    out["sd"] = sd
    if sd == 0:
        out.update(lo=m, hi=m, p_above=float(m <= 0), p_below=float(m >= 0))
        return out
    import scipy.stats

    se, df = sd / math.sqrt(n), n - 1
    q = float(scipy.stats.t.ppf(1 - (1 - level) / 2, df))
    out.update(lo=m - q * se, hi=m + q * se, p_above=float(scipy.stats.t.sf(m / se, df)),
               p_below=float(scipy.stats.t.cdf(m / se, df)))
    return out


def save_replicates(path, rows: Sequence[torch.Tensor], names: Sequence[str]) -> None:
    """Bootstrap replicates of a table's rows, [rows, len(names), R] float64 (or [rows, R]
    for one name), in the table's row order, as safetensors with the names in the header."""
    import json

    from safetensors.torch import save_file

    from vermem.core.files import atomic_path

    t = (torch.stack([r.double().reshape(len(names), -1) for r in rows]) if rows
         else torch.zeros(0, len(names), 0, dtype=torch.float64))
    with atomic_path(path) as tmp:
        save_file({"replicates": t.contiguous()}, str(tmp),
                  metadata={"names": json.dumps(list(names))})


def load_replicates(path) -> tuple[torch.Tensor, list[str]]:
    """(replicates [rows, names, R], names) written by `save_replicates`."""
    import json

    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.get_tensor("replicates"), json.loads(f.metadata()["names"])
