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
          .sort("dup_count"))
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


# ---------------------------------------------------------------- Study B


def dynamics_curves(curves: pl.DataFrame, phases: pl.DataFrame, model: str):
    """Loss and accuracy against epoch per alphabet size (mean over seeds), with H(p) on the
    loss panels and max p (the best guess's expected accuracy) on the accuracy panels."""
    c = curves.filter(pl.col("model") == model).join(
        phases.select("model", "init", "string_id", "seed", "alphabet_size", "length",
                      pl.col("entropy").alias("h"), "max_p"),
        on=["model", "init", "string_id", "seed"])  # h: H(p); entropy: the model's
    sizes = sorted(c["alphabet_size"].unique())
    fig, axes = plt.subplots(2, len(sizes), figsize=(3.2 * len(sizes), 5.2), sharex=True,
                             squeeze=False)
    df = _pandas(c.with_columns(pl.col("length").cast(pl.String)), "init", "alphabet_size",
                 "length", "epoch", "loss", "accuracy")
    for j, l in enumerate(sizes):
        d = df[df.alphabet_size == l]
        for i, metric in enumerate(("loss", "accuracy")):
            ax = axes[i][j]
            sns.lineplot(d, x="epoch", y=metric, hue="init", style="length", errorbar=None,
                         ax=ax, legend=(i, j) == (0, len(sizes) - 1))
            ref = c.filter(pl.col("alphabet_size") == l)
            for v in sorted(ref["h" if i == 0 else "max_p"].unique()):
                ax.axhline(v, color="grey", ls="--", lw=0.8)
            if i == 0:
                ax.set_yscale("log")
                ax.set_title(f"alphabet size {l} (dashed: H(p))")
            else:
                ax.set_ylim(-0.03, 1.03)
                ax.set_title("dashed: max p", fontsize=8)
    if len(sizes):
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.suptitle(f"{model}: memorizing random strings", y=1.02)
    return fig


def position_grid(runs: dict[str, pl.DataFrame], title: str):
    """Correct (argmax == true letter) per position (x) and epoch (y), one panel per run."""
    import numpy as np

    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.6), squeeze=False)
    for ax, (name, df) in zip(axes[0], runs.items(), strict=True):
        d = df.sort("epoch", "position")
        grid = np.array(d["correct"].cast(pl.Int8).to_list()).reshape(
            d["epoch"].n_unique(), d["position"].n_unique())
        ax.imshow(grid, aspect="auto", origin="lower", cmap="Greys", interpolation="nearest")
        ax.grid(False)
        ax.set_xlabel("position")
        ax.set_ylabel("epoch")
        ax.set_title(name)
    fig.suptitle(title + " (black: correct)", y=1.03)
    return fig


def q1_factors(phases: pl.DataFrame):
    """Epochs to memorize against alphabet size, entropy, length and model (mean over the
    other factors; strings never memorized are left out and counted in the title)."""
    df = _pandas(phases, "model", "n_params", "init", "alphabet_size", "entropy_fraction",
                 "length", "memorized")
    factors = [("alphabet_size", "alphabet size"), ("entropy_fraction", "H(p) / log(l)"),
               ("length", "string length"), ("model", "model")]
    fig, axes = plt.subplots(1, len(factors), figsize=(3.3 * len(factors), 3), sharey=True)
    for ax, (col, label) in zip(axes, factors, strict=True):
        sns.pointplot(df, x=col, y="memorized", hue="init", errorbar=None, ax=ax,
                      legend=ax is axes[-1], dodge=0.2, order=sorted(df[col].unique()))
        ax.set_xlabel(label)
        ax.set_ylabel("epochs to memorize")
    never = int(phases["memorized"].is_null().sum())
    fig.suptitle(f"Q1: epochs to memorize ({never} of {phases.height} strings never)", y=1.04)
    return fig


def q2_context(q2: pl.DataFrame, model: str):
    """Accuracy at a position given its last k letters, per condition of the earlier context
    (k as a fraction of the length), per init and Q2 epoch."""
    d = q2.filter(pl.col("model") == model)
    inits, epochs = sorted(d["init"].unique()), sorted(d["epoch"].unique())
    fig, axes = plt.subplots(len(inits) or 1, len(epochs) or 1, sharex=True, sharey=True,
                             figsize=(3 * max(1, len(epochs)), 2.8 * max(1, len(inits))),
                             squeeze=False)
    df = _pandas(d, "init", "epoch", "condition", "k_fraction", "accuracy")
    for i, init in enumerate(inits):
        for j, e in enumerate(epochs):
            ax = axes[i][j]
            sns.lineplot(df[(df.init == init) & (df.epoch == e)], x="k_fraction", y="accuracy",
                         hue="condition", marker="o", errorbar=None, ax=ax,
                         legend=(i, j) == (0, len(epochs) - 1))
            ax.set_title(f"{init}, epoch {e}")
            ax.set_xscale("log")
            ax.set_xlabel("k / n")
            ax.set_ylim(-0.03, 1.03)
    if inits and epochs:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.suptitle(f"{model}: Q2 recall from the last k letters", y=1.02)
    return fig


def q3_forgetting(seq: pl.DataFrame, model: str):
    """Accuracy on each string over the sequential exposure (stage boundaries dashed)."""
    d = seq.filter(pl.col("model") == model).sort("init", "stage", "epoch")
    inits = sorted(d["init"].unique())
    fig, axes = plt.subplots(1, len(inits) or 1, figsize=(4.5 * max(1, len(inits)), 3),
                             squeeze=False, sharey=True)
    for ax, init in zip(axes[0], inits, strict=False):
        g = d.filter(pl.col("init") == init)
        # a running step count over stages: epoch 0 of each stage is the previous end
        steps = g.filter(pl.col("evaluated") == 0).select("stage", "epoch")
        offset = steps.group_by("stage").agg(pl.col("epoch").max()).sort("stage")
        start = dict(zip(offset["stage"], offset["epoch"].cum_sum() - offset["epoch"],
                         strict=True))
        g = g.with_columns((pl.col("stage").replace_strict(start) + pl.col("epoch"))
                           .alias("step"), ("s" + pl.col("evaluated").cast(pl.String))
                           .alias("string"))
        sns.lineplot(_pandas(g, "step", "accuracy", "string"), x="step", y="accuracy",
                     hue="string", ax=ax, legend=ax is axes[0][-1])
        for s in list(start.values())[1:]:
            ax.axvline(s, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("epoch (all stages)")
        ax.set_title(f"{init}")
        ax.set_ylim(-0.03, 1.03)
    fig.suptitle(f"{model}: Q3 sequential exposure (dashed: next string)", y=1.04)
    return fig
