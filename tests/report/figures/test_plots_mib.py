"""The MIB figure draws what the table holds: F at MIB's fractions, CPR / CMD markers with
their intervals, and a note instead of an empty plot when there are no pairs."""

import matplotlib
import polars as pl
import torch

from vermem.circuits import method_comparison as M
from vermem.circuits import mib
from vermem.report.figures import method_scores

matplotlib.use("Agg")
MAIN = {"placement": "outside", "ablation": "resample"}


def table(n_pairs=30):
    rows = []
    for d in ("noising", "denoising"):
        for circ, f in (("attribution", [0.0, 0.1, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0, 1.0, 1.0]),
                        ("random", [0.0] * 9 + [1.0])):
            cpr, cmd = (float(x) for x in mib.areas(torch.tensor(f)))
            rows.append({"task": "branch_comparison", "subset": "W", "method": "EAP-IG",
                         "direction": d, "placement": "outside", "ablation": "resample",
                         "circuit": circ, "n_pairs": n_pairs, "n_docs": 9, "cpr": cpr,
                         "cpr_lo": cpr - 0.05, "cpr_hi": cpr + 0.05, "cmd": cmd,
                         "cmd_lo": cmd - 0.05, "cmd_hi": cmd + 0.05, "faithfulness": f})
    return pl.DataFrame(rows, schema={"task": pl.String, "subset": pl.String, **mib.SCHEMA})


def test_the_figure_plots_each_direction_s_curve_and_the_areas_with_intervals():
    fig = method_scores.mib_figure(table(), "organism", MAIN)
    left, right, areas = fig.axes
    # one attribution and one random line per direction panel, F at the ten fractions
    for ax in (left, right):
        lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == len(mib.FRACTIONS)]
        assert len(lines) == 2
        assert max(ln.get_ydata()[2] for ln in lines) == 0.5
    # CPR and CMD, attribution and random, for both directions: 8 error bars
    assert len(areas.containers) == 8
    # row labels whole (task, subset and direction), not cut to 'noi' / 'den'
    assert [t.get_text() for t in areas.get_yticklabels()] == [
        "branch comparison\nW, noising", "branch comparison\nW, denoising"]
    assert "n = 30" in fig._suptitle.get_text()


def test_an_interval_equal_to_its_value_up_to_rounding_draws():
    """One evaluation document: every resample is the estimate, and lo may exceed it by an
    ulp (an injected model's run stopped here on matplotlib's negative-xerr error)."""
    t = table().with_columns(pl.col("cpr").alias("cpr_hi"), (pl.col("cpr") + 1e-15)
                             .alias("cpr_lo"), (pl.col("cmd") - 1e-15).alias("cmd_hi"))
    fig = method_scores.mib_figure(t, "organism", MAIN)
    assert len(fig.axes[-1].containers) == 8


def test_no_pairs_draws_a_note_not_an_empty_plot():
    fig = method_scores.mib_figure(table(n_pairs=0), "organism", MAIN)
    assert len(fig.axes) == 1
    assert "no evaluation pairs" in " ".join(t.get_text() for t in fig.axes[0].texts)


def test_the_methods_figure_shows_each_method_s_cpr_and_size_and_their_agreement():
    q = pl.DataFrame([{"task": t, "subset": "W", "method": m, "direction": d,
                       "n_attribution": 40, "n_selection": 10, "n_pairs": 30,
                       "cpr": 0.9, "cpr_lo": 0.85, "cpr_hi": 0.95, "cmd": 0.1, "cmd_lo": 0.05,
                       "cmd_hi": 0.15, "k": 20, "k_lo": 10.0, "k_hi": 40.0,
                       "faithfulness": 0.86, "faithfulness_lo": 0.8, "faithfulness_hi": 0.9}
                      for t in ("branch_comparison", "memorization_decision")
                      for m in ("EAP", "exact") for d in ("noising", "denoising")],
                     schema={"task": pl.String, "subset": pl.String, **M.QUALITY_SCHEMA})
    a = pl.DataFrame([{"task": t, "subset": "W", "method_a": "EAP", "method_b": "exact",
                       "n_pairs": 40, "n_docs": 9, "statistic": "spearman |score|", "k": 0,
                       "value": 0.8, "value_lo": 0.7, "value_hi": 0.9}
                      for t in ("branch_comparison", "memorization_decision")],
                     schema={"task": pl.String, "subset": pl.String, **M.AGREEMENT_SCHEMA})
    fig = method_scores.methods_figure(q, a, "organism", "W")
    cpr, size, agree = fig.axes
    assert len(cpr.containers) == 8 and len(size.containers) == 8  # 2 methods x 4 rows
    assert len(agree.containers) == 2                               # one pair, two tasks
    assert [t.get_text() for t in agree.get_yticklabels()] == ["EAP vs exact"]
    assert "branch 40 / 10 / 30" in fig._suptitle.get_text()
    empty = method_scores.methods_figure(q.with_columns(pl.lit(0).alias("n_pairs")), a, "o", "W")
    assert len(empty.axes) == 1
