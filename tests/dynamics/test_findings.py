"""Study B's run next to Speicher et al.'s findings (vermem.dynamics.findings): the concordance, its
permutation p-values and each row's verdict, on synthetic phases and Q3 tables."""

import itertools

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
    assert row(t, "init")["verdict"] == F.AGREES          # pretrained 40 epochs faster
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


def test_q3_verdicts():
    end = [[1.0, 0.2, 0.3, 0.2], [0.3, 1.0, 0.2, 0.3], [0.2, 0.3, 1.0, 0.2],
           [0.25, 0.3, 0.2, 1.0]]
    a = q3([40, 30, 20, 10], end, relearn=5)
    b = q3([42, 33, 21, 12], end, relearn=8, key=("m", "random"))
    later, forgot, again = F.q3_rows(pl.concat([a, b]), margin=0.1, seed=0)
    # perfectly faster in both sequences: 1 of 24 x 24 orderings
    assert later["verdict"] == F.AGREES and later["estimate"] == 1.0
    assert later["p_agrees"] == pytest.approx(1 / 576, abs=0.002)
    assert forgot["verdict"] == F.AGREES and forgot["estimate"] == pytest.approx(
        1 - (0.25 + 0.3 + 0.2) / 3)
    assert again["verdict"] == F.AGREES and "40 then 5 (from accuracy 0.30)" in again["shows"]
    # one sequence of four, perfectly ordered: p = 1/24 <= 0.05; of three, 1/6 is not enough
    later, _, _ = F.q3_rows(a, 0.1, 0)
    assert later["verdict"] == F.AGREES
    later, _, _ = F.q3_rows(q3([40, 30, 20], [r[:3] for r in end[:3]]), 0.1, 0)
    assert later["verdict"] == F.INSUFFICIENT and later["estimate"] == 1.0
    assert later["p_agrees"] == pytest.approx(1 / 6, abs=0.02)
    # kept accuracy: not forgotten; slower second time; a never re-memorized string
    kept = [[1.0, 0.2], [0.95, 1.0]]
    _, forgot, again = F.q3_rows(q3([10, 12], kept, relearn=20), 0.1, 0)
    assert forgot["verdict"] == F.DISAGREES and again["verdict"] == F.DISAGREES
    _, _, again = F.q3_rows(q3([10, 12], kept, relearn=None), 0.1, 0)
    assert again["verdict"] == F.INSUFFICIENT and "no re-learning stage" in again["reason"]
    _, _, again = F.q3_rows(pl.concat([q3([10, 12], kept, relearn=5),
                                       q3([10, 12], kept, relearn=None, key=("m", "random"))
                                       .with_columns(pl.lit(False).alias("relearn"))]), 0.1, 0)
    assert again["compared"] == 1
    # never memorized the first time (censored), then in 30 epochs: faster the second time
    _, _, censored = F.q3_rows(q3([None, 12], kept, relearn=30), 0.1, 0)
    assert censored["verdict"] == F.AGREES and "never then 30" in censored["shows"]


def test_table_has_a_row_per_finding_with_the_schema():
    t = F.table(phases({(2, 16, "pretrained"): [5, 6], (4, 16, "pretrained"): [7, None]}),
                q3([10], [[1.0]]), 0.1, 0)
    assert t.schema == pl.Schema(F.SCHEMA) and t.height == len(F.Q1_FINDINGS) + 3
    assert set(t["verdict"]) <= {F.AGREES, F.DISAGREES, F.INSUFFICIENT}
    assert t.filter(pl.col("question") == "Q3")["verdict"].to_list() == [F.INSUFFICIENT] * 3
