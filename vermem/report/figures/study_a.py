"""Study A's figures: labels, duplication, divergence, pair counts, attribution by layer,
faithfulness curves, transfer and overlap heatmaps.
"""

from __future__ import annotations

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import seaborn as sns  # noqa: E402

from vermem.report.figures.common import (
    _F_MAX,
    _F_MIN,
    _LABEL_COLORS,
    _bins,
    _pandas,
    empty_figure,
    note,
)


def score_histograms(labels: pl.DataFrame, score: str, model: str):
    """Memorization score per subset, one unstacked step histogram per label on a log count
    axis (a stacked one hides the labels under each other), each label's count and share of
    the subset's samples in the panel's legend, n per subset in its title."""
    subsets = sorted(labels["subset"].unique())
    if not subsets:
        return empty_figure(f"{model}: memorization score per subset",
                            "no samples (n = 0): nothing was labelled")
    fig, axes = plt.subplots(1, len(subsets), figsize=(3.6 * len(subsets), 3.3), sharey=True,
                             squeeze=False, layout="constrained")
    value = labels[score].cast(pl.Float64)
    d_all = labels.with_columns(value.alias("_score")).filter(pl.col("_score").is_not_null())
    bins = _bins(d_all["_score"].to_list())
    peak = 1
    for ax, s in zip(axes[0], subsets, strict=True):
        d = d_all.filter(pl.col("subset") == s)
        for label, color in _LABEL_COLORS.items():
            x = d.filter(pl.col("label") == label)["_score"].to_numpy()
            counts, _ = np.histogram(x, bins=bins)
            peak = max(peak, int(counts.max(initial=0)))
            share = len(x) / d.height if d.height else 0.0
            ax.stairs(counts, bins, color=color, lw=1.4, baseline=None, gid=label,
                      label=f"{label}: {len(x)} ({100 * share:.1f}%)")
            ax.stairs(counts, bins, color=color, alpha=0.12, fill=True, baseline=0.5)
        n_mem = d.filter(pl.col("label") == "memorized").height
        ax.set_title(f"{s}\nn = {d.height}, {n_mem} memorized", fontsize=9)
        if d.height and d["_score"].n_unique() == 1:
            note(ax, f"all {d.height} scores = {d['_score'][0]:.3g}")
        ax.set_yscale("log")
        ax.set_xlabel(score.replace("_", " "))
        ax.legend(fontsize=6.5, loc="upper center", title="label: samples (share)",
                  title_fontsize=6.5, framealpha=0.9)
    axes[0][0].set_ylim(0.7, peak * 60)  # headroom for the legends above the bars
    axes[0][0].set_ylabel("samples (log scale)")
    fig.suptitle(f"{model}: memorization score per subset (label from the per-subset "
                 "thresholds; histograms not stacked)", fontsize=10)
    return fig


# The two definitions of 'memorized' the figures use, named on their axes (docs/study-a.md §2):
# k-extractable (every continuation token reproduced by greedy decoding; the organism's
# ground truth, over every window) and the threshold label (memorization score at or above
# the subset's high threshold; what the pairs and the checkpoint figure use)
MEMORIZED_EXTRACTABLE = "share memorized: k-extractable\n(all windows)"
MEMORIZED_LABEL = "share memorized: threshold label\n(document-start windows)"


def rate_by_duplicates(labels: pl.DataFrame, model: str):
    """Share of samples memorized (k-extractable) against how often the model saw them."""
    title = f"{model}: memorization against duplication"
    seen = labels.filter(pl.col("dup_count").is_not_null())
    if seen.height == 0:
        return empty_figure(title, "no sample with a known duplicate count (n = 0)")
    df = (seen.group_by("subset", "dup_count")
          .agg(pl.col("extractable").mean().alias("memorized"), pl.len().alias("n"))
          .sort("dup_count", "subset"))  # group_by order varies: fixes the hue order
    overall = (seen.group_by("dup_count")
               .agg(pl.col("extractable").mean().alias("memorized")).sort("dup_count")
               .with_columns(pl.lit("all").alias("subset")))
    both = _pandas(pl.concat([df.drop("n"), overall.select(df.drop("n").columns)]),
                   "subset", "dup_count", "memorized")
    both["seen"] = both["dup_count"].clip(lower=0.5)  # unseen (0) drawn at 0.5 on the log axis
    fig, ax = plt.subplots(figsize=(4.5, 3))
    sns.lineplot(both, x="seen", y="memorized", hue="subset", marker="o", ax=ax)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("times seen per epoch (0 = never, drawn at 0.5)")
    ax.set_ylabel(MEMORIZED_EXTRACTABLE)
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"{title} (n = {seen.height} windows)\n"
                 "memorized = k-extractable: greedy continuation equals the true one",
                 fontsize=9)
    if both["seen"].nunique() == 1:
        note(ax, "one duplicate count only: a single point per subset")
    return fig


def divergence_histogram(div: pl.DataFrame, prefix_tokens: int, model: str):
    import numpy as np

    fig, ax = plt.subplots(figsize=(4.5, 3))
    df = _pandas(div.filter(pl.col("d").is_not_null()), "d", "subset")
    n_drop = div.filter(pl.col("d").is_null()).height
    if len(df):
        sns.histplot(df, x="d", hue="subset", multiple="stack", ax=ax,
                     bins=np.arange(prefix_tokens + 2) - 0.5)
    elif div.height == 0:
        note(ax, "no memorized sample (n = 0):\nno divergence point to find")
    else:
        note(ax, f"none of the {div.height} memorized samples has a divergence point")
    ax.set_xlim(-0.5, prefix_tokens + 1)
    ax.set_xlabel("divergence point d (tokens)")
    ax.set_title(f"{model}: divergence points ({n_drop} of {div.height} without one)")
    return fig


def pair_counts(pairs: pl.DataFrame, model: str, subsets=(), tasks=()):
    """Pairs per task, subset and split; task / subset combinations with none are named."""
    df = _pandas(pairs.group_by("task", "subset", "split").len().sort("task", "subset", "split"),
                 "task", "subset", "split", "len")
    have = set(zip(df["task"], df["subset"], strict=True)) if len(df) else set()
    none = [f"{t.replace('_', ' ')} / {s}" for t in tasks for s in subsets
            if (t, s) not in have]
    fig, ax = plt.subplots(figsize=(5, 3))
    if len(df):
        df["task / split"] = df["task"].str.replace("_", " ") + " / " + df["split"]
        sns.barplot(df, x="subset", y="len", hue="task / split", ax=ax)
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False)
        if none:
            ax.text(0.0, -0.35, "no pairs (n = 0): " + "; ".join(none), fontsize=6,
                    transform=ax.transAxes, va="top", wrap=True)
    else:
        ax.set_xticks([])
        note(ax, "no contrastive pairs (n = 0)\nfor any task and subset")
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


def faithfulness_curves(curve: pl.DataFrame, minimal: dict, title: str):
    """F against circuit size per mode (rows: ablation; columns: direction / placement) on
    the evaluation pairs with its bootstrap interval (shaded), the selection pairs' curve
    (dashed), random circuits (range over seeds and mean), the target band and the minimal
    circuit (chosen on the selection pairs, its evaluation F with interval)."""
    ev = curve.filter(pl.col("split") == "evaluation") if curve.height else curve
    combos = ev.select("direction", "placement").unique(maintain_order=True).rows()
    ablations = ev["ablation"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(max(1, len(ablations)), max(1, len(combos)), squeeze=False,
                             figsize=(3.2 * max(1, len(combos)), 2.6 * max(1, len(ablations))),
                             sharex=True)
    found = {(c["direction"], c["placement"], c["ablation"]): c for c in minimal["circuits"]}
    target = minimal["target"]
    for i, abl in enumerate(ablations):
        for j, (direction, placement) in enumerate(combos):
            ax = axes[i][j]
            mode = ((pl.col("direction") == direction) & (pl.col("placement") == placement)
                    & (pl.col("ablation") == abl) & (pl.col("k") > 0))
            d = ev.filter(mode)
            rnd = (d.filter(pl.col("circuit") == "random").group_by("k")
                   .agg(pl.col("faithfulness").min().alias("lo"),
                        pl.col("faithfulness").max().alias("hi"),
                        pl.col("faithfulness").mean().alias("mean")).sort("k"))
            if rnd.height:
                ax.fill_between(rnd["k"], rnd["lo"], rnd["hi"], color="0.85",
                                label="random (range)")
                ax.plot(rnd["k"], rnd["mean"], color="0.5", lw=0.8)
            top = d.filter((pl.col("circuit") == "attribution") & ~pl.col("search")).sort("k")
            ax.fill_between(top["k"], top["faithfulness_lo"].fill_null(float("nan")),
                            top["faithfulness_hi"].fill_null(float("nan")), color="C0",
                            alpha=0.25, lw=0)
            ax.plot(top["k"], top["faithfulness"], marker=".", ms=3, color="C0",
                    label=f"top-k, evaluation (n = {minimal['n_pairs']}), 95% CI")
            sel = curve.filter(mode & (pl.col("split") == "selection")
                               & (pl.col("circuit") == "attribution")).sort("k")
            if sel.height:
                ax.plot(sel["k"], sel["faithfulness"], ls="--", lw=0.8, color="C1",
                        label=f"top-k, selection (n = {minimal.get('n_selection', 0)})")
            ax.axhspan(target, 2 - target, color="C2", alpha=0.12, lw=0)
            ax.axhline(target, ls="--", color="k", lw=0.7)
            c = found.get((direction, placement, abl))
            if c is not None and c.get("faithfulness") is not None:
                lo, hi = c.get("faithfulness_lo"), c.get("faithfulness_hi")
                err = None if lo is None or hi is None else [
                    [max(0.0, c["faithfulness"] - lo)], [max(0.0, hi - c["faithfulness"])]]
                ax.errorbar([c["k"]], [c["faithfulness"]], yerr=err, fmt="o", color="C3",
                            capsize=2, label=f"minimal: {c['k']} edges")
            ax.legend(fontsize=5, loc="lower right")
            ax.set_xscale("log")
            ax.set_title(f"{direction}, {placement}, {abl}", fontsize=8)
            ax.set_xlabel("circuit size (edges)" if i == len(ablations) - 1 else "")
            ax.set_ylabel("faithfulness" if j == 0 else "")
    fig.suptitle(f"{title} ({minimal['n_pairs']} evaluation, "
                 f"{minimal.get('n_selection', 0)} selection pairs, {minimal['n_edges']} edges;"
                 f" band [{target:g}, {2 - target:g}])", y=1.01)
    fig.tight_layout()
    return fig


def _group_heatmaps(df: pl.DataFrame, group: list[str], rows: list[str], cols: list[str],
                    value: str, title: str, interval: tuple[str, str] | None = None,
                    threshold: float | None = None, **heatmap):
    """One heatmap of `value` per value of the `group` columns, indexed by the
    'task / subset' named by the `rows` and `cols` column pairs; cells annotated with the
    value and, where `interval` names lo/hi columns, its interval. With a `threshold`,
    cells whose value lies below it are hatched and the threshold is drawn on the colour
    bar."""
    import numpy as np
    import pandas as pd

    keys = (df.select(group).unique(maintain_order=True).rows() if df.height
            else [("none",) * len(group)])
    ncols = min(2, len(keys))
    nrows = -(-len(keys) // ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, figsize=(7.5 * ncols, 6.0 * nrows))
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, keys, strict=False):
        d = df
        for g_, v in zip(group, key, strict=True):
            d = d.filter(pl.col(g_) == v) if d.height else d
        if d.height:
            d = d.with_columns(
                (pl.col(rows[0]).str.replace("_", " ") + " / " + pl.col(rows[1])).alias("_r"),
                (pl.col(cols[0]).str.replace("_", " ") + " / " + pl.col(cols[1])).alias("_c"))
            p = pd.DataFrame(d.select("_r", "_c", value).to_dict(as_series=False))
            table = p.pivot(index="_r", columns="_c", values=value)
            annot = True
            if interval is not None:
                text = {(r["_r"], r["_c"]): "n/a" if r[value] is None else (
                    f"{r[value]:.2f}" + ("" if r[interval[0]] is None or r[interval[1]] is None
                                         else f"\n[{r[interval[0]]:.2f}, {r[interval[1]]:.2f}]"))
                        for r in d.iter_rows(named=True)}
                annot = np.array([[text.get((r, c), "") for c in table.columns]
                                  for r in table.index])
            sns.heatmap(table, annot=annot, fmt="" if interval is not None else ".2f", ax=ax,
                        annot_kws={"fontsize": 6}, **heatmap)
            if threshold is not None:
                _mark_below(ax, table.to_numpy(dtype=float), threshold)
        ax.set_xlabel("")
        ax.set_ylabel("")
        if " vs " in str(key[-1]):  # a panel across meanings: say which axis is which
            rows_m, cols_m = str(key[-1]).split(" vs ", 1)
            ax.set_ylabel(f"{rows_m} circuits")
            ax.set_xlabel(f"{cols_m} circuits")
        ax.set_title(f"{title}, " + ", ".join(map(str, key)), fontsize=9)
    fig.tight_layout()
    return fig


def _mark_below(ax, values, threshold: float) -> None:
    """Hatch the cells of a heatmap on `ax` whose value is below `threshold` (NaN cells are
    left alone) and draw the threshold across its colour bar, labelled."""
    from matplotlib.patches import Rectangle

    for i, j in zip(*np.nonzero(np.nan_to_num(values, nan=np.inf) < threshold), strict=True):
        ax.add_patch(Rectangle((j, i), 1, 1, fill=False, hatch="//", edgecolor="0.1",
                               lw=0.0, gid="below-threshold"))
    bar = ax.collections[0].colorbar
    if bar is not None:
        bar.ax.axhline(threshold, color="k", lw=2, gid="threshold")
        bar.ax.text(-0.15, threshold, f"threshold {threshold:g}", ha="right", va="center",
                    fontsize=7, transform=bar.ax.get_yaxis_transform(), rotation=90)


def _faithfulness_cmap():
    from matplotlib.colors import LinearSegmentedColormap

    base = plt.get_cmap("viridis")
    inner = [base(x) for x in np.linspace(0.0, 1.0, 200)]
    over = [plt.get_cmap("magma_r")(x) for x in np.linspace(0.15, 0.55, 100)]
    return LinearSegmentedColormap.from_list("faithfulness", inner + over).with_extremes(
        under="0.2")


def transfer_heatmaps(transfer: pl.DataFrame, model: str, threshold: float | None = None):
    """Faithfulness (95% bootstrap interval below) of every circuit (rows) on every
    evaluation set (columns), one panel per placement and meaning (prevention circuits
    evaluated as prevention on the other task, induction as induction). Colour: viridis
    from F = 0 to 1, a second (pink) ramp from 1 to 1.5 for overshoot, dark grey below 0;
    cells below `threshold` (circuits.claims.transfer_threshold) hatched, the threshold
    drawn on the colour bar."""
    return _group_heatmaps(transfer, ["placement", "semantics"],
                           ["source_task", "source_subset"], ["target_task", "target_subset"],
                           "faithfulness", f"{model}: transfer (rows: circuit, columns: pairs)",
                           ("faithfulness_lo", "faithfulness_hi"), threshold=threshold,
                           cmap=_faithfulness_cmap(), vmin=_F_MIN, vmax=_F_MAX,
                           cbar_kws={"label": "faithfulness F (hatched: below the threshold)"
                                     if threshold is not None else "faithfulness F",
                                     "extend": "both"})


def overlap_heatmaps(overlap: pl.DataFrame, model: str):
    """Jaccard index of every two circuits' edge sets, circuits of the same meaning; the
    'prevention vs induction' panel (rows prevention, columns induction circuits) holds
    each task's noising against de-noising circuit where row and column agree."""
    return _group_heatmaps(overlap, ["semantics"], ["a_task", "a_subset"],
                           ["b_task", "b_subset"], "jaccard", f"{model}: circuit overlap",
                           vmin=0, vmax=1, cmap="viridis", cbar_kws={"label": "Jaccard"})
