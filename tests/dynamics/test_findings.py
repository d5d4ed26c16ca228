"""Study B's run next to Speicher et al.'s findings (vermem.dynamics.findings): the concordance, its
permutation p-values and each row's verdict, on synthetic phases and Q3 tables."""

import itertools

import numpy as np
import polars as pl
import pytest

from vermem.dynamics import findings as F


def phases(times, **fixed):
    """A phases table: `times` {(alphabet size, length, init): [epochs per seed]}."""
    rows = []
    for (l, n, init), ts in times.items():
        for seed, t in enumerate(ts):
            rows.append({"model": "m", "n_params": 10, "init": init, "alphabet_size": l,
                         "entropy_fraction": 1.0, "length": n, "seed": seed, "epochs": 100,
                         "horizon": 98, "memorized": t, **fixed})
    return pl.DataFrame(rows, schema_overrides={"memorized": pl.Int64})


def row(table, factor):
    return next(r for r in table if r["factor"] == factor)


def test_concordance_counts_pairs_within_strata_only():
    # two strata; within each, the higher level takes longer in 2 of 2 pairs; across strata
    # the order is reversed, which must not count
    c = F.concordance([10, 20, 1, 2], [1, 2, 1, 2], ["a", "a", "b", "b"], 1, seed=0,
                      permutations=999)
    assert (c["estimate"], c["compared"]) == (1.0, 2)
    # a censored string (None) took longer than any memorized one; two censored tie
    c = F.concordance([None, 5, None, None], [2, 1, 1, 2], ["a", "a", "b", "b"], 1, 0, 999)
    assert (c["estimate"], c["compared"]) == (0.5, 2)
    # the sign of the expectation flips the estimate and swaps the p-values
    up = F.concordance([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [0] * 6, 1, 0, 999)
    down = F.concordance([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [0] * 6, -1, 0, 999)
    assert up["estimate"] == -down["estimate"] == 1.0
    assert (up["p_agrees"], up["p_disagrees"]) == (down["p_disagrees"], down["p_agrees"])
    assert F.concordance([1, 2], [1, 1], [0, 0], 1, 0, 99)["estimate"] is None


def test_permutation_p_value_matches_the_exact_one():
    # six strings in one stratum, perfectly ordered: exactly 1 of the 6! orderings of the
    # levels is as concordant, so p = 1/720 up to Monte Carlo error (and the + 1)
    c = F.concordance([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [0] * 6, 1, 0, 9999)
    assert c["p_agrees"] == pytest.approx(1 / 720, abs=0.002) and c["p_disagrees"] == 1.0
    # two levels, three strings each, one inversion: the exact p by enumeration
    times, levels = [1, 2, 4, 3, 5, 6], [1, 1, 1, 2, 2, 2]
    stat = F.concordance(times, levels, [0] * 6, 1, 0, 99)["estimate"]
    exact = [F.concordance(times, list(p), [0] * 6, 1, 0, 9)["estimate"] >= stat - 1e-12
             for p in set(itertools.permutations(levels))]
    got = F.concordance(times, levels, [0] * 6, 1, 0, 9999)["p_agrees"]
    assert got == pytest.approx(sum(exact) / len(exact), abs=0.015)


def test_q1_verdicts_follow_the_run_and_say_why_when_the_grid_is_too_small():
    slow = {(l, n, init): [l * n // 4 + off + s for s in range(3)]
            for l in (2, 4, 13) for n in (16, 64) for init, off in (("pretrained", 0),
                                                                    ("random", 40))}
    t = F.q1_rows(phases(slow), seed=0)
    assert row(t, "alphabet_size")["verdict"] == F.AGREES
    assert row(t, "length")["verdict"] == F.AGREES
    # one random run: 40 epochs slower on every string, yet its strings are one
    # initialisation, not a sample of random initialisations: no test
    init = row(t, "init")
    assert init["verdict"] == F.INSUFFICIENT and init["p_agrees"] is None
    assert init["reason"].startswith("insufficient: runs per arm m: pretrained 1, random 1")
    assert row(t, "alphabet_size")["estimate"] == 1.0
    one = row(t, "entropy_fraction")
    assert one["verdict"] == F.INSUFFICIENT and "one level of entropy_fraction" in one["reason"]
    assert row(t, "n_params")["verdict"] == F.INSUFFICIENT
    assert "2: " in row(t, "alphabet_size")["shows"] and "(12)" in row(t, "alphabet_size")[
        "shows"]
    # the run's own direction: larger alphabets faster
    fast = {k: [200 // k[0] + s for s in range(3)] for k in slow}
    r = row(F.q1_rows(phases(fast), seed=0), "alphabet_size")
    assert r["verdict"] == F.DISAGREES and r["estimate"] == -1.0
    # no association: every string takes as long
    flat = {k: [30, 30, 30] for k in slow}
    r = row(F.q1_rows(phases(flat), seed=0), "length")
    assert r["verdict"] == F.INSUFFICIENT and "no ordering at level 0.05" in r["reason"]


def run_phases(per_run):
    """A phases table with several runs: `per_run` {run: [epochs per string]} (None:
    never memorized, at the horizon 98); the same strings (l4, n16, seeds) in every run."""
    rows = [{"model": "m", "n_params": 10, "init": run, "alphabet_size": 4,
             "entropy_fraction": 1.0, "length": 16, "seed": seed, "epochs": 100,
             "horizon": 98, "memorized": t}
            for run, ts in per_run.items() for seed, t in enumerate(ts)]
    return pl.DataFrame(rows, schema_overrides={"memorized": pl.Int64})


def test_pretrained_against_random_is_tested_over_random_runs():
    pre = [10, 12, 14, None]                      # restricted mean (10+12+14+98)/4 = 33.5
    rnd = {"random-0": [40, 50, 60, None], "random-1": [45, 52, 61, 90],
           "random-2": [38, 49, 70, None]}
    t = row(F.q1_rows(run_phases({"pretrained": pre, **rnd}), 0, [F.Q1_FINDINGS[-1]]),
            "init")
    # independently: per-run restricted means, differences to pretrained, t over 3 runs
    means = [sum(98 if v is None else v for v in ts) / 4 for ts in rnd.values()]
    d = np.array(means) - 33.5
    se = d.std(ddof=1) / np.sqrt(3)
    assert t["estimate"] == pytest.approx(d.mean())
    assert (t["lo"], t["hi"]) == pytest.approx((d.mean() - 4.302653 * se,
                                                d.mean() + 4.302653 * se), rel=1e-6)
    assert t["compared"] == 3 and "n = 3" in t["over"] and "not over strings" in t["over"]
    # p from the t distribution with 2 df: 1 - F(t) = 1/2 - t / (2 sqrt(2 + t^2))
    ts = d.mean() / se
    assert t["p_agrees"] == pytest.approx(0.5 - ts / (2 * np.sqrt(2 + ts * ts)), abs=1e-7)
    assert t["verdict"] == F.AGREES
    # the same spread around a pretrained run as slow as the random ones: no ordering
    same = row(F.q1_rows(run_phases({"pretrained": rnd["random-1"], **rnd}), 0,
                         [F.Q1_FINDINGS[-1]]), "init")
    assert same["verdict"] == F.INSUFFICIENT and same["lo"] < 0 < same["hi"]
    # random runs faster than pretrained: the paper's direction refuted
    fast = {k: [v // 4 if v else 5 for v in ts] for k, ts in rnd.items()}
    slow = row(F.q1_rows(run_phases({"pretrained": [80, 85, 90, None], **fast}), 0,
                         [F.Q1_FINDINGS[-1]]), "init")
    assert slow["verdict"] == F.DISAGREES and slow["hi"] < 0
    # two random runs are too few, however far apart the arms
    two = row(F.q1_rows(run_phases({"pretrained": pre, "random-0": rnd["random-0"],
                                    "random-1": rnd["random-1"]}), 0, [F.Q1_FINDINGS[-1]]),
              "init")
    assert two["verdict"] == F.INSUFFICIENT and "random 2" in two["reason"]


def q3(epochs, end, relearn=None, start=0.3, key=("m", "pretrained")):
    """A Q3 table of one model/init: epochs per learning stage, end accuracies per stage."""
    rows = [{"model": key[0], "init": key[1], "stage": i, "trained": i, "relearn": False,
             "epochs_to_memorize": e, "start_accuracy": 0.0, "end_accuracy": end[i]}
            for i, e in enumerate(epochs)]
    if relearn is not None:
        rows.append({"model": key[0], "init": key[1], "stage": len(epochs), "trained": 0,
                     "relearn": True, "epochs_to_memorize": relearn, "start_accuracy": start,
                     "end_accuracy": end[-1]})
    return pl.DataFrame(rows, schema_overrides={"epochs_to_memorize": pl.Int32})


def test_q3_later_strings_faster():
    end = [[1.0, 0.2, 0.3, 0.2], [0.3, 1.0, 0.2, 0.3], [0.2, 0.3, 1.0, 0.2],
           [0.25, 0.3, 0.2, 1.0]]
    a = q3([40, 30, 20, 10], end, relearn=5)
    b = q3([42, 33, 21, 12], end, relearn=8, key=("m", "random-0"))
    later, forgot, again = F.q3_rows(pl.concat([a, b]), margin=0.1, seed=0)
    # perfectly faster in both sequences: 1 of 24 x 24 orderings
    assert later["verdict"] == F.AGREES and later["estimate"] == 1.0
    assert later["p_agrees"] == pytest.approx(1 / 576, abs=0.002)
    # two sequences, one per arm: forgetting and re-learning are shown, not tested
    for r in (forgot, again):
        assert r["verdict"] == F.INSUFFICIENT and r["lo"] is None
        assert r["reason"].startswith("insufficient: runs per arm m/pretrained 1, m/random 1")
    assert "40 then 5 (from accuracy 0.30)" in again["shows"]
    # one sequence of four, perfectly ordered: p = 1/24 <= 0.05; of three, 1/6 is not enough
    later, _, _ = F.q3_rows(a, 0.1, 0)
    assert later["verdict"] == F.AGREES
    later, _, _ = F.q3_rows(q3([40, 30, 20], [r[:3] for r in end[:3]]), 0.1, 0)
    assert later["verdict"] == F.INSUFFICIENT and later["estimate"] == 1.0
    assert later["p_agrees"] == pytest.approx(1 / 6, abs=0.02)


def runs(per_run, end_of):
    """Q3 tables of three random runs plus a pretrained one: `per_run` {run: (epochs of
    stages, re-learning epochs)}; `end_of(run)`: its end accuracies."""
    return pl.concat([q3(ep, end_of(run), relearn=again, key=("m", run))
                      for run, (ep, again) in per_run.items()])


def test_q3_forgetting_and_relearning_have_an_interval_over_random_runs():
    drop = {"pretrained": 0.1, "random-0": 0.5, "random-1": 0.6, "random-2": 0.7}

    def end_of(run):                    # two stages: string 0 at 1.0, then at 1 - drop
        return [[1.0, 0.1], [1.0 - drop[run], 1.0]]
    per_run = {"pretrained": ([20, 10], 3), "random-0": ([40, 30], 10),
               "random-1": ([50, 30], 20), "random-2": ([None, 30], 60)}
    _, forgot, again = F.q3_rows(runs(per_run, end_of), 0.1, 0, horizon=150)
    # forgetting: the random runs' drops 0.5, 0.6, 0.7: mean 0.6, t interval 0.6 -/+ 4.303 *
    # 0.1 / sqrt(3); the pretrained run (0.1) is one run, shown, not in the interval
    half = 4.302653 * 0.1 / np.sqrt(3)
    assert forgot["estimate"] == pytest.approx(0.6)
    assert (forgot["lo"], forgot["hi"]) == pytest.approx((0.6 - half, 0.6 + half), rel=1e-6)
    assert forgot["verdict"] == F.AGREES and "m/random (n = 3)" in forgot["over"]
    assert "m/pretrained 0.10" not in forgot["reason"] and "m/pretrained 1" in forgot["reason"]
    # re-learning gains 40 - 10, 50 - 20, 150 (never memorized: the horizon) - 60
    g = np.array([30.0, 30.0, 90.0])
    h = 4.302653 * g.std(ddof=1) / np.sqrt(3)
    assert again["estimate"] == pytest.approx(g.mean())
    assert (again["lo"], again["hi"]) == pytest.approx((g.mean() - h, g.mean() + h), rel=1e-6)
    assert again["verdict"] == F.INSUFFICIENT                    # the interval spans 0
    # the horizon enters the gain: at 60 epochs the third run re-learns in as many
    _, _, at60 = F.q3_rows(runs(per_run, end_of), 0.1, 0, horizon=60)
    assert at60["estimate"] == pytest.approx(20.0)
    # kept accuracy in every random run, slower the second time in every one
    kept = {k: ([10, 12], 15 + i) for i, k in enumerate(per_run)}
    _, forgot, again = F.q3_rows(runs(kept, lambda r: [[1.0, 0.2], [0.95 + 0.01 *
                                                         len(r), 1.0]]), 0.1, 0)
    assert forgot["verdict"] == F.DISAGREES and forgot["hi"] < 0.1
    assert again["verdict"] == F.DISAGREES and again["hi"] < 0
    none = F.q3_rows(q3([10, 12], [[1.0, 0.2], [0.95, 1.0]], relearn=None), 0.1, 0)[2]
    assert none["verdict"] == F.INSUFFICIENT and "no re-learning stage" in none["reason"]


def test_table_has_a_row_per_finding_with_the_schema():
    t = F.table(phases({(2, 16, "pretrained"): [5, 6], (4, 16, "pretrained"): [7, None]}),
                q3([10], [[1.0]]), 0.1, 0)
    assert t.schema == pl.Schema(F.SCHEMA) and t.height == len(F.Q1_FINDINGS) + 3
    assert set(t["verdict"]) <= {F.AGREES, F.DISAGREES, F.INSUFFICIENT}
    assert t.filter(pl.col("question") == "Q3")["verdict"].to_list() == [F.INSUFFICIENT] * 3
