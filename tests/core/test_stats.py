"""The shared cluster bootstrap (stats.Resampler) and combinations of estimates from their
replicates (stats.combine)."""

import pytest
import torch

from vermem.core import stats as S


def test_a_document_weighs_the_same_in_every_pair_set_and_subsets_are_independent():
    boot = S.Bootstrap(2000, 3)
    r = S.Resampler(boot, {"A": [f"a{i}" for i in range(30)], "B": [f"b{i}" for i in range(30)]})
    w1 = r.weights(["a1", "a1", "a2", "b5"])          # two windows of a1
    w2 = r.weights(["a2", "b5"])                      # another pair set of the same documents
    assert torch.equal(w1[:, 0], w1[:, 1])
    assert torch.equal(w1[:, 2], w2[:, 0]) and torch.equal(w1[:, 3], w2[:, 1])
    # each stratum draws as many documents as it has
    assert torch.equal(r.weights([f"a{i}" for i in range(30)]).sum(1),
                       torch.full((2000,), 30.0, dtype=torch.float64))
    # strata are drawn independently: mean weights of A and B documents uncorrelated
    a = r.weights([f"a{i}" for i in range(10)]).mean(1)
    b = r.weights([f"b{i}" for i in range(10)]).mean(1)
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.1
    with pytest.raises(ValueError, match="outside the resampled strata"):
        r.weights(["zzz"])
    # the same construction in another rule draws the same
    again = S.Resampler(boot, {"B": [f"b{i}" for i in range(30)][::-1],
                               "A": [f"a{i}" for i in range(30)]})
    assert torch.equal(again.weights(["a1", "b5"]), w1[:, [0, 3]])


def test_a_difference_of_correlated_estimates_takes_its_interval_from_joint_replicates():
    # B = A + 0.3 on the same pairs: the difference is exactly 0.3 in every resample, while
    # treating A and B as independent would give an interval about 2.8 standard errors wide
    g = torch.Generator().manual_seed(0)
    docs = [f"d{i // 2}" for i in range(60)]
    x = torch.randn(60, generator=g, dtype=torch.float64)
    boot = S.Bootstrap(1000, 0)
    w = S.Resampler(boot, {"s": docs}).weights(docs)
    ra, rb = S.wmean(x, w), S.wmean(x + 0.3, w)

    def est(v, r):
        lo, hi = boot.interval(r[None])
        return S.Estimate(float(v), float(lo[0]), float(hi[0]), 60, None, r)

    a, b = est(x.mean(), ra), est(x.mean() + 0.3, rb)
    d = S.combine([a, b], 0.95, [-1, 1])
    assert d.value == pytest.approx(0.3)
    assert d.lo == pytest.approx(0.3, abs=1e-9) and d.hi == pytest.approx(0.3, abs=1e-9)
    width_a = a.hi - a.lo
    assert width_a > 0.3                      # the parts themselves are uncertain
    # anti-correlated parts: the mean of A and -A + c is c with no uncertainty either
    c = est(-x.mean() + 1.0, -ra + 1.0)
    m = S.combine([a, c], 0.95)
    assert m.hi - m.lo == pytest.approx(0.0, abs=1e-9)
    # independent parts (different strata): the interval of the sum is wider than either's
    w2 = S.Resampler(boot, {"t": [f"e{i // 2}" for i in range(60)]}).weights(
        [f"e{i // 2}" for i in range(60)])
    e = est(x.mean(), S.wmean(x, w2))
    s = S.combine([a, e], 0.95, [1, 1])
    assert s.hi - s.lo > 1.2 * width_a


def test_combine_refuses_a_combination_without_replicates():
    part = S.Estimate(0.5, 0.4, 0.6, 30)
    assert S.combine([part], 0.95, [1]).lo == 0.4      # one part keeps its own interval
    with pytest.raises(ValueError, match="replicates"):
        S.combine([part, part], 0.95)
    assert S.combine([part, S.NONE], 0.95).missing


def test_rank_correlation_states_its_tie_rule():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    tied = torch.tensor([0.0, 1.0, 1.0, 5.0])
    # "argsort": in so small an input the tied pair ranks (2, 3) in place: a's ranks
    assert float(S.rank_correlation(tied, a)) == pytest.approx(1.0)
    # "average": ranks (1, 2.5, 2.5, 4)
    assert float(S.rank_correlation(tied, a, ties="average")) == pytest.approx(
        4.5 / (4.5 * 5) ** 0.5)
    assert S.rank_correlation(torch.stack([a, -a]), a).tolist() == pytest.approx([1.0, -1.0])
    with pytest.raises(ValueError):
        S.rank_correlation(a, a, ties="dense")


def test_nan_to_none():
    assert S.nan_to_none(None) is None
    assert S.nan_to_none(float("nan")) is None
    assert S.nan_to_none(torch.tensor(float("nan"))) is None
    assert S.nan_to_none(torch.tensor(0.5)) == 0.5
    assert S.nan_to_none(float("inf")) == float("inf")
    assert S.nan_to_none(float("inf"), finite=True) is None


def test_mean_t_uses_student_s_t_with_n_minus_1_degrees_of_freedom():
    # x = 1, 2, 4: mean 7/3, sd sqrt(7/3), se sd / sqrt(3); t(0.975, df 2) = 4.3027 (tables)
    r = S.mean_t([1.0, 2.0, 4.0])
    se = (7 / 3) ** 0.5 / 3 ** 0.5
    assert r["n"] == 3 and r["mean"] == pytest.approx(7 / 3)
    assert r["lo"] == pytest.approx(7 / 3 - 4.3027 * se, abs=1e-3)
    assert r["hi"] == pytest.approx(7 / 3 + 4.3027 * se, abs=1e-3)
    # one-sided p of mean > 0: P(T_2 > 2.6458) = 0.0590 (tables)
    assert r["p_above"] == pytest.approx(0.0590, abs=1e-3)
    assert r["p_above"] + r["p_below"] == pytest.approx(1.0)
    assert S.mean_t([3.0])["lo"] is None                       # n < 2: no interval
    assert S.mean_t([2.0, 2.0])["lo"] == 2.0                   # no spread: the point


def test_wilson_interval_is_the_closed_form():
    z, k, n = 1.959964, 7, 10
    p = k / n
    centre, half = p + z * z / (2 * n), z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    lo, hi = S.wilson(k, n)
    assert lo == pytest.approx((centre - half) / (1 + z * z / n), abs=1e-6)
    assert hi == pytest.approx((centre + half) / (1 + z * z / n), abs=1e-6)
    assert S.wilson(0, 10)[0] == 0.0 and S.wilson(10, 10)[1] == 1.0
    assert S.wilson(0, 0) == (None, None)
