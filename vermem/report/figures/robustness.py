"""The robustness figure (vermem.workflow.robustness): every claim's verdict in every run (organism
training seed x split seed), with its estimate and interval. Tables in, figures out."""

from __future__ import annotations

import os
import textwrap

import matplotlib.pyplot as plt
import polars as pl
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from vermem.report.figures.common import empty_figure, save

VERDICT_COLOURS = {"supported": "#4daf4a", "refuted": "#e41a1c",
                   "insufficient evidence": "#bdbdbd"}


def claims_by_run(by_run: pl.DataFrame, path: str | os.PathLike) -> None:
    save(claims_grid(by_run), path)


def claims_grid(by_run: pl.DataFrame):
    """A grid: one row per claim and meaning, one column per run, each cell coloured by the
    run's verdict and labelled with its estimate [interval]; a legend names the colours."""
    if not by_run.height:
        return empty_figure("Robustness: claims by seed", "no runs")
    rows = list(dict.fromkeys(zip(by_run["claim"], by_run["semantics"], strict=True)))
    cols = sorted(set(zip(by_run["training_seed"], by_run["split_seed"], strict=True)))
    order = list(VERDICT_COLOURS)
    grid = [[float("nan")] * len(cols) for _ in rows]
    text = [[""] * len(cols) for _ in rows]
    for r in by_run.iter_rows(named=True):
        i = rows.index((r["claim"], r["semantics"]))
        j = cols.index((r["training_seed"], r["split_seed"]))
        grid[i][j] = order.index(r["verdict"]) if r["verdict"] in order else float("nan")
        if r["estimate"] is not None:
            lo, hi = r["estimate_lo"], r["estimate_hi"]
            ci = "" if lo is None or hi is None else f"\n[{lo:.2f}, {hi:.2f}]"
            text[i][j] = f"{r['estimate']:.2f}{ci}"
    fig, ax = plt.subplots(figsize=(3.5 + 1.25 * len(cols), 1.2 + 0.62 * len(rows)),
                           constrained_layout=True)
    ax.imshow(grid, cmap=ListedColormap([VERDICT_COLOURS[v] for v in order]), vmin=-0.5,
              vmax=len(order) - 0.5, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=6)
    ax.set_xticks(range(len(cols)), [f"train {t}\nsplit {s}" for t, s in cols], fontsize=7)
    ax.set_yticks(range(len(rows)),
                  [textwrap.shorten(c, 58, placeholder="...") + f" [{m}]" for c, m in rows],
                  fontsize=7)
    ax.set_xticks([x - 0.5 for x in range(1, len(cols))], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, len(rows))], minor=True)
    ax.grid(False)
    ax.grid(which="minor", color="white", lw=1.5)
    ax.tick_params(which="minor", length=0)
    ax.set_title("Study A claims by organism training seed and split seed "
                 "(cell: estimate [95% interval])", fontsize=9)
    ax.legend(handles=[Patch(color=VERDICT_COLOURS[v], label=v) for v in order],
              loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)
    return fig
