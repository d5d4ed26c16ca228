"""Figures (seaborn). Each function takes tables and returns a matplotlib Figure;
`save` writes it atomically. No figure computes anything a table does not hold."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
import seaborn as sns  # noqa: E402

from .io import atomic_path  # noqa: E402

sns.set_theme(style="whitegrid", context="paper")


def _pandas(df: pl.DataFrame, *columns: str):
    """A pandas frame of the named columns (seaborn's input), without needing pyarrow."""
    import pandas as pd

    return pd.DataFrame(df.select(columns).to_dict(as_series=False))


def save(fig, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=str(path).rsplit(".", 1)[-1], dpi=150, bbox_inches="tight")
    plt.close(fig)


def score_histograms(labels: pl.DataFrame, score: str, model: str):
    """Memorization score per subset, coloured by label."""
    subsets = sorted(labels["subset"].unique())
    fig, axes = plt.subplots(1, len(subsets), figsize=(3.2 * len(subsets), 2.8), sharey=False,
                             squeeze=False)
    value = labels[score].cast(pl.Float64)
    df = _pandas(labels.with_columns(value.alias("score")), "subset", "score", "label")
    for ax, s in zip(axes[0], subsets, strict=True):
        sns.histplot(df[df.subset == s], x="score", hue="label", bins=20, ax=ax,
                     multiple="stack", hue_order=["non-memorized", "ambiguous", "memorized"],
                     legend=ax is axes[0][-1])
        ax.set_title(s)
        ax.set_yscale("log")
        ax.set_xlabel(score.replace("_", " "))
    fig.suptitle(f"{model}: memorization score per subset", y=1.04)
    return fig


def rate_by_duplicates(labels: pl.DataFrame, model: str):
    """Share of samples memorized (k-extractable) against how often the model saw them."""
    df = (labels.filter(pl.col("dup_count").is_not_null())
          .group_by("subset", "dup_count")
          .agg(pl.col("extractable").mean().alias("memorized"), pl.len().alias("n"))
          .sort("dup_count", "subset"))  # group_by order varies: fixes the hue order
    overall = (labels.filter(pl.col("dup_count").is_not_null()).group_by("dup_count")
               .agg(pl.col("extractable").mean().alias("memorized")).sort("dup_count")
               .with_columns(pl.lit("all").alias("subset")))
    both = _pandas(pl.concat([df.drop("n"), overall.select(df.drop("n").columns)]),
                   "subset", "dup_count", "memorized")
    both["seen"] = both["dup_count"].clip(lower=0.5)  # unseen (0) drawn at 0.5 on the log axis
    fig, ax = plt.subplots(figsize=(4.5, 3))
    sns.lineplot(both, x="seen", y="memorized", hue="subset", marker="o", ax=ax)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("times seen per epoch (0 = never, drawn at 0.5)")
    ax.set_ylabel("share memorized (k-extractable)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"{model}: memorization against duplication")
    return fig


def divergence_histogram(div: pl.DataFrame, prefix_tokens: int, model: str):
    fig, ax = plt.subplots(figsize=(4.5, 3))
    df = _pandas(div.filter(pl.col("d").is_not_null()), "d", "subset")
    sns.histplot(df, x="d", hue="subset", multiple="stack", discrete=True, ax=ax)
    ax.set_xlim(0, prefix_tokens + 1)
    ax.set_xlabel("divergence point d (tokens)")
    n_drop = div.filter(pl.col("d").is_null()).height
    ax.set_title(f"{model}: divergence points ({n_drop} of {div.height} without one)")
    return fig


def pair_counts(pairs: pl.DataFrame, model: str):
    df = _pandas(pairs.group_by("task", "subset", "split").len().sort("task", "subset", "split"),
                 "task", "subset", "split", "len")
    fig, ax = plt.subplots(figsize=(5, 3))
    if len(df):
        df["task / split"] = df["task"].str.replace("_", " ") + " / " + df["split"]
        sns.barplot(df, x="subset", y="len", hue="task / split", ax=ax)
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set_ylabel("pairs")
    ax.set_title(f"{model}: contrastive pairs per task and subset")
    ax.tick_params(axis="x", labelrotation=15)
    return fig


def layer_heatmap(per_layer, columns, title: str):
    """Summed |edge score| per layer (rows) and node type (columns)."""
    import pandas as pd

    df = pd.DataFrame(per_layer.numpy(), columns=list(columns),
                      index=[f"layer {i}" for i in range(per_layer.shape[0])])
    fig, ax = plt.subplots(figsize=(1.1 * len(columns) + 1.5, 0.45 * len(df) + 1.2))
    sns.heatmap(df, annot=len(df) <= 16, fmt=".2g", cmap="viridis", ax=ax,
                cbar_kws={"label": "sum of |edge score|"})
    ax.set_title(title)
    return fig
