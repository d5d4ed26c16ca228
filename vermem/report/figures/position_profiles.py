"""Figure of position-resolved attribution (docs/study-a.md §8): where, relative to the
predicted position, the attribution mass of the edges sits, for memorized and control
pairs, both tasks and both directions. In the style of vermem.report.figures.common (a function
takes
tables and returns a Figure)."""

from __future__ import annotations

import polars as pl

from vermem.report.figures.common import note, plt

PAIRS_STYLE = {"memorized": "-", "control": "--"}
DIRECTION_COLOR = {"noising": "C0", "denoising": "C3"}


AGREE = 0.01  # lines closer than this at every distance are said to lie on top of each other


def _agree(lines: list[list[float]]) -> str:
    """A note for a panel whose lines all agree within AGREE at every distance (they hide
    each other), '' otherwise."""
    import numpy as np

    if len(lines) < 2 or len({len(x) for x in lines}) != 1:
        return ""
    a = np.array(lines, dtype=float)
    spread = np.nanmax(a, axis=0) - np.nanmin(a, axis=0)
    if np.all(np.nan_to_num(spread, nan=0.0) < AGREE):
        return (f"all {len(lines)} lines agree within {AGREE:g} at every distance:\n"
                "they are drawn on top of each other")
    return ""


def position_mass(mass: pl.DataFrame, files: pl.DataFrame, title: str):
    """Share of the attribution mass (sum over edges of |score| in a distance bucket, over
    its sum over buckets) against the source position's distance to the predicted
    position: one panel per task, a line per direction (colour) and pair set (memorized
    solid, control dashed).

    `mass`: rows of `attribution.position_mass` with `task` and `pairs` (memorized /
    control) columns; `files`: one row per attribution file drawn, `task`, `pairs`,
    `n_examples`; a file without rows in `mass` says 'no pairs' (n = 0) or 'no
    position-resolved scores' in its panel and legend instead of drawing zeros."""
    tasks = files["task"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(4.6 * max(1, len(tasks)), 3.4),
                             squeeze=False, sharey=True)
    if not tasks:
        note(axes[0][0], "no attribution files")
    for ax, task in zip(axes[0], tasks, strict=True):
        missing = []
        labels: list[str] = []
        drawn: list[list[float]] = []
        for f in files.filter(pl.col("task") == task).iter_rows(named=True):
            d = mass.filter((pl.col("task") == task) & (pl.col("pairs") == f["pairs"])) \
                if mass.height else mass
            if not d.height:
                why = ("no pairs (n = 0)" if not f["n_examples"]
                       else "no position-resolved scores")
                missing.append(f"{f['pairs']}: {why}")
                ax.plot([], [], color="0.5", linestyle=PAIRS_STYLE[f["pairs"]],
                        label=f"{f['pairs']}: {why}")
                continue
            for direction, color in DIRECTION_COLOR.items():
                dd = d.filter(pl.col("direction") == direction).sort("bucket")
                if not dd.height:
                    continue
                ax.plot(dd["bucket"].to_list(), [x if x is not None else float("nan")
                                                 for x in dd["share"].to_list()],
                        marker="o", markersize=3, color=color,
                        linestyle=PAIRS_STYLE[f["pairs"]],
                        label=f"{f['pairs']}, {direction} (n = {f['n_examples']})")
                drawn.append([float("nan") if x is None else x for x in dd["share"]])
                if len(dd) > len(labels):
                    labels = dd["distance"].to_list()
        if labels:
            ax.set_xticks(range(len(labels)), labels)
        else:
            ax.set_xticks([])
        if missing and not labels:
            note(ax, "\n".join(missing))
        same = _agree(drawn)
        if same:
            ax.text(0.3, 0.8, same, transform=ax.transAxes, fontsize=6.5, va="top",
                    color="0.25", bbox={"facecolor": "white", "edgecolor": "0.7", "lw": 0.5})
        ax.set_ylim(-0.02, 1.04)
        ax.set_xlabel("source distance to the predicted position (tokens)")
        ax.set_title(task.replace("_", " "), fontsize=9)
        ax.legend(fontsize=6, loc="center right")
    axes[0][0].set_ylabel("share of attribution mass\n(sum of |edge score|)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
