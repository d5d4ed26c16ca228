"""Figures (seaborn). Each function takes tables and returns a matplotlib Figure;
`save` writes it atomically. No figure computes anything a table does not hold."""

from __future__ import annotations

import os

import matplotlib
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
import seaborn as sns  # noqa: E402

from vermem.core.files import atomic_path  # noqa: E402

matplotlib.use("Agg")

sns.set_theme(style="whitegrid", context="paper")


def _pandas(df: pl.DataFrame, *columns: str):
    """A pandas frame of the named columns (seaborn's input), without needing pyarrow."""
    import pandas as pd

    return pd.DataFrame(df.select(columns).to_dict(as_series=False))


def save(fig, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=str(path).rsplit(".", 1)[-1], dpi=150, bbox_inches="tight")
    plt.close(fig)


def note(ax, message: str) -> None:
    """Write `message` across an empty (or nearly empty) panel: what is missing, and why."""
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", fontsize=8,
            color="0.3", wrap=True,
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7"})


def empty_figure(title: str, message: str, size: tuple[float, float] = (4.5, 3)):
    """A figure that says what is missing instead of plotting nothing (or zeros)."""
    fig, ax = plt.subplots(figsize=size)
    ax.set_xticks([])
    ax.set_yticks([])
    note(ax, message)
    ax.set_title(title)
    return fig


def _bins(values, n: int = 20):
    """Histogram bin edges that also work for one value or a constant column."""
    import numpy as np

    lo, hi = (float(min(values)), float(max(values))) if len(values) else (0.0, 1.0)
    if 0.0 <= lo and hi <= 1.0:
        lo, hi = 0.0, 1.0
    elif hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n + 1)


_LABEL_COLORS = {"non-memorized": "C0", "ambiguous": "C1", "memorized": "C2"}


# transfer F: sequential over [0, 1] (0.4 and 1.0 far apart), an overshoot band above 1
# (F > 1: the circuit does more than the model), negative values in the 'under' colour
_F_MIN, _F_MAX = 0.0, 1.5
