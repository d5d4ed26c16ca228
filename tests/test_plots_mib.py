"""The MIB figure draws what the table holds: F at MIB's fractions, CPR / CMD markers with
their intervals, and a note instead of an empty plot when there are no pairs."""

import matplotlib
import polars as pl
import torch

from vermem import mib, plots_mib

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
    fig = plots_mib.mib_figure(table(), "organism", MAIN)
    left, right, areas = fig.axes
    # one attribution and one random line per direction panel, F at the ten fractions
    for ax in (left, right):
        lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == len(mib.FRACTIONS)]
        assert len(lines) == 2
        assert max(ln.get_ydata()[2] for ln in lines) == 0.5
    # CPR and CMD, attribution and random, for both directions: 8 error bars
    assert len(areas.containers) == 8
    assert [t.get_text() for t in areas.get_yticklabels()] == [
        "branch / W / noi", "branch / W / den"]
    assert "n = 30" in fig._suptitle.get_text()


def test_no_pairs_draws_a_note_not_an_empty_plot():
    fig = plots_mib.mib_figure(table(n_pairs=0), "organism", MAIN)
    assert len(fig.axes) == 1
    assert "no evaluation pairs" in " ".join(t.get_text() for t in fig.axes[0].texts)
