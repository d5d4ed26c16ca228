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
    """Share of windows memorized (k-extractable) at each planted duplicate count, per
    subset and over all: points at the counts that hold documents only (no line through
    counts without any), Wilson 95% interval bars (windows treated as independent; windows
    of one document are not, so the bars are if anything too narrow), n windows and
    documents per count."""
    from vermem.core.stats import wilson

    title = f"{model}: memorization against duplication"
    seen = labels.filter(pl.col("dup_count").is_not_null())
    if seen.height == 0:
        return empty_figure(title, "no sample with a known duplicate count (n = 0):\n"
                            "a model without planted copies has no duplication axis")
    per = (seen.group_by("subset", "dup_count")
           .agg(pl.col("extractable").sum().alias("k"), pl.len().alias("n"))
           .sort("dup_count", "subset"))
    overall = (seen.group_by("dup_count")
               .agg(pl.col("extractable").sum().alias("k"), pl.len().alias("n"),
                    pl.col("doc_id").n_unique().alias("docs") if "doc_id" in seen.columns
                    else pl.len().alias("docs"))
               .sort("dup_count"))
    counts = overall["dup_count"].to_list()
    subsets = sorted(per["subset"].unique().to_list())
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    series = [(s, per.filter(pl.col("subset") == s), f"C{i}", "o", 5)
              for i, s in enumerate(subsets)] + [("all subsets", overall, "k", "D", 4)]
    width = 0.8 / len(series)
    for i, (name, d, color, marker, ms) in enumerate(series):
        pos = {c: counts.index(c) + (i - (len(series) - 1) / 2) * width for c in counts}
        xs, ys, lo, hi = [], [], [], []
        for c, k, n in d.select("dup_count", "k", "n").iter_rows():
            a, b = wilson(int(k), int(n))
            xs.append(pos[c])
            ys.append(k / n)
            lo.append(max(0.0, k / n - a))
            hi.append(max(0.0, b - k / n))
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt=marker, ms=ms, color=color, capsize=2,
                    elinewidth=1, label=name, mfc=color if name != "all subsets" else "white")
    ax.set_xticks(range(len(counts)),
                  [f"{'never' if c == 0 else f'{c}×'}\n{n} win.\n{docs} docs"
                   for c, n, docs in overall.select("dup_count", "n", "docs").iter_rows()],
                  fontsize=7)
    ax.set_xlim(-0.6, len(counts) - 0.4)
    ax.set_xlabel("planted copies per epoch (only the counts that hold documents)")
    ax.set_ylabel(MEMORIZED_EXTRACTABLE)
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False,
              title="subset", title_fontsize=7)
    ax.set_title(f"{title} (n = {seen.height} windows)\n"
                 "memorized = k-extractable: greedy continuation equals the true one;\n"
                 "bars: Wilson 95% over windows", fontsize=9)
    if len(counts) == 1:
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
    ax.set_title(f"{model}: divergence points ({n_drop} of {div.height} without one)\n"
                 "of the memorized samples (threshold label)", fontsize=9)
    return fig


def pair_counts(pairs: pl.DataFrame, model: str, subsets=(), tasks=()):
    """Pairs per split (bars in the pipeline's order: attribution, selection, evaluation;
    one sequential colour each), subset (x) and task (one panel each, the control tasks
    beside their task), each bar labelled with its count; task / subset combinations with
    none are named."""
    from vermem.core.vocabulary import PARTS

    counts = pairs.group_by("task", "subset", "split").len()
    have = set(zip(counts["task"], counts["subset"], strict=True)) if counts.height else set()
    none = [f"{t.replace('_', ' ')} / {s}" for t in tasks for s in subsets
            if (t, s) not in have]
    title = f"{model}: contrastive pairs per task, subset and split"
    if not counts.height:
        return empty_figure(title, "no contrastive pairs (n = 0)\nfor any task and subset")
    names = sorted(set(counts["task"]), key=lambda t: (t.removesuffix("_control"),
                                                       t.endswith("_control")))
    splits = [p for p in PARTS if p in set(counts["split"])] + sorted(
        set(counts["split"]) - set(PARTS))
    columns = [s for s in subsets if s in set(counts["subset"])] or sorted(
        set(counts["subset"]))
    colors = dict(zip(splits, sns.color_palette("crest", n_colors=len(splits)), strict=True))
    ncols = min(2, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, sharey=True,
                             figsize=(4.2 * ncols, 2.6 * nrows + 0.6))
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    width = 0.8 / len(splits)
    for ax, task in zip(axes.flat, names, strict=False):
        d = counts.filter(pl.col("task") == task)
        for i, split in enumerate(splits):
            got = {s: n for s, n in d.filter(pl.col("split") == split)
                   .select("subset", "len").iter_rows()}
            xs = [j + (i - (len(splits) - 1) / 2) * width for j in range(len(columns))]
            ys = [got.get(c, 0) for c in columns]
            bars = ax.bar(xs, ys, width=width * 0.95, color=colors[split], label=split)
            ax.bar_label(bars, fontsize=6, padding=1)
        ax.set_xticks(range(len(columns)), [c.replace(" ", "\n", 1) for c in columns],
                      fontsize=7)
        ax.set_title(task.replace("_", " "), fontsize=8)
        ax.set_ylabel("pairs" if ax in axes[:, 0] else "")
        ax.margins(y=0.15)
    total = counts["len"].sum()
    fig.suptitle(f"{title} (n = {total} pairs)", fontsize=9)
    fig.tight_layout()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="split (pipeline order)", fontsize=7, title_fontsize=7,
               loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    if none:  # under the bottom-left panel
        axes[-1][0].text(0.0, -0.3, "no pairs (n = 0): " + "; ".join(none), fontsize=6,
                         transform=axes[-1][0].transAxes, va="top", wrap=True)
    return fig


# one colour scale for every attribution-by-layer figure of every run: the share of a
# direction's summed |edge score| that a cell holds, on a log scale over four decades (a
# linear scale is one bright cell at layer 0 and dark elsewhere)
LAYER_SHARE_RANGE = (1e-4, 1.0)


def layer_heatmap(per_layer, columns, title: str):
    """Share of the summed |edge score| per layer (rows) and node type (columns), one panel
    per attribution direction (`per_layer`: {direction: [L, len(columns)] tensor}), on the
    fixed log colour scale LAYER_SHARE_RANGE (the same in every such figure)."""
    import pandas as pd
    from matplotlib.colors import LogNorm

    if not isinstance(per_layer, dict):
        per_layer = {"noising": per_layer}
    lo, hi = LAYER_SHARE_RANGE
    n_layers = next(iter(per_layer.values())).shape[0]
    fig, axes = plt.subplots(1, len(per_layer), squeeze=False, sharey=True,
                             figsize=(1.0 * len(columns) * len(per_layer) + 2.2,
                                      0.42 * n_layers + 1.8))
    for j, (ax, (direction, t)) in enumerate(zip(axes[0], per_layer.items(), strict=True)):
        values = t.double().numpy()
        total = values.sum()
        share = values / total if total > 0 else values * np.nan
        df = pd.DataFrame(np.clip(share, lo, None), columns=list(columns),
                          index=[f"layer {i}" for i in range(n_layers)])
        text = np.array([[("<1e-4" if v < lo else f"{v:.2g}") for v in row] for row in share])
        last = j == len(per_layer) - 1
        sns.heatmap(df, annot=text if n_layers <= 16 else False, fmt="", cmap="viridis",
                    norm=LogNorm(lo, hi), ax=ax, cbar=last, annot_kws={"fontsize": 6.5},
                    cbar_kws={"label": "share of the direction's summed |edge score|\n"
                              "(log scale, the same in every figure)"} if last else None)
        ax.set_title(f"{direction}: " + ("clean run, corrupt activations patched in"
                                         if direction == "noising" else
                                         "corrupt run, clean activations patched in"),
                     fontsize=8)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        if j:
            ax.set_ylabel("")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _pairs_definition(task: str) -> str:
    """What the pairs of `task` are memorized by (docs/study-a.md §2), for a figure's title."""
    if task.endswith("_control"):
        return "control pairs: non-memorized text"
    return "memorized = threshold label (score ≥ the subset's high threshold)"


def _edges(k) -> str:
    return f"{k} edge" + ("" if k == 1 else "s")


def _mark_main(ax, label: str = "main mode") -> None:
    """Frame a panel of the main mode (the one the claims and tables use) and say so."""
    for side in ax.spines.values():
        side.set_edgecolor("k")
        side.set_linewidth(1.6)
    ax.set_title(f"{ax.get_title()} ({label})", fontsize=8, fontweight="bold")


def faithfulness_curves(curve: pl.DataFrame, minimal: dict, title: str,
                        main: dict | None = None):
    """F against circuit size per mode (rows: ablation; columns: direction / placement) on
    the evaluation pairs with its bootstrap interval (shaded), the selection pairs' curve
    (dashed), random circuits (range over seeds and mean), the target band and the minimal
    circuit (chosen on the selection pairs, its evaluation F with interval). One y range per
    row, one legend below the panels, the `main` mode's panels framed."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    ev = curve.filter(pl.col("split") == "evaluation") if curve.height else curve
    if not ev.height:
        return empty_figure(title, "no faithfulness curve: "
                            f"{minimal['n_pairs']} evaluation and "
                            f"{minimal.get('n_selection', 0)} selection pairs\n(a curve needs "
                            "pairs in both parts)", size=(6, 3))
    combos = ev.select("direction", "placement").unique(maintain_order=True).rows()
    ablations = ev["ablation"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(max(1, len(ablations)), max(1, len(combos)), squeeze=False,
                             figsize=(3.2 * max(1, len(combos)), 2.6 * max(1, len(ablations))),
                             sharex=True, sharey="row")
    found = {(c["direction"], c["placement"], c["ablation"]): c for c in minimal["circuits"]}
    target = minimal["target"]
    any_random = any_selection = False
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
                any_random = True
                ax.fill_between(rnd["k"], rnd["lo"], rnd["hi"], color="0.85")
                ax.plot(rnd["k"], rnd["mean"], color="0.5", lw=0.8)
            top = d.filter((pl.col("circuit") == "attribution") & ~pl.col("search")).sort("k")
            ax.fill_between(top["k"], top["faithfulness_lo"].fill_null(float("nan")),
                            top["faithfulness_hi"].fill_null(float("nan")), color="C0",
                            alpha=0.25, lw=0)
            ax.plot(top["k"], top["faithfulness"], marker=".", ms=3, color="C0")
            sel = curve.filter(mode & (pl.col("split") == "selection")
                               & (pl.col("circuit") == "attribution")).sort("k")
            if sel.height:
                any_selection = True
                ax.plot(sel["k"], sel["faithfulness"], ls="--", lw=0.8, color="C1")
            ax.axhspan(target, 2 - target, color="C2", alpha=0.12, lw=0)
            ax.axhline(target, ls="--", color="k", lw=0.7)
            c = found.get((direction, placement, abl))
            if c is not None and c.get("faithfulness") is not None:
                lo, hi = c.get("faithfulness_lo"), c.get("faithfulness_hi")
                err = None if lo is None or hi is None else [
                    [max(0.0, c["faithfulness"] - lo)], [max(0.0, hi - c["faithfulness"])]]
                ax.errorbar([c["k"]], [c["faithfulness"]], yerr=err, fmt="o", color="C3",
                            capsize=2, zorder=5)
                ax.text(0.03, 0.97, f"minimal: {_edges(c['k'])}\nF = {c['faithfulness']:.2f}",
                        transform=ax.transAxes, fontsize=6.5, va="top", color="C3")
            elif not top.height:
                note(ax, "no curve for this mode")
            ax.set_xscale("log")
            ax.set_title(f"{direction}, {placement}, {abl}", fontsize=8)
            if main is not None and (placement, abl) == (main["placement"], main["ablation"]):
                _mark_main(ax)
            ax.set_xlabel("circuit size (edges)" if i == len(ablations) - 1 else "")
            ax.set_ylabel("faithfulness F" if j == 0 else "")
    handles = [Line2D([], [], color="C0", marker=".", label=f"top-k, evaluation pairs "
                      f"(n = {minimal['n_pairs']}), shaded: 95% CI")]
    if any_selection:
        handles.append(Line2D([], [], color="C1", ls="--", lw=0.8, label="top-k, selection "
                              f"pairs (n = {minimal.get('n_selection', 0)})"))
    if any_random:
        handles.append(Patch(color="0.85", label="random circuits: range over seeds "
                             "(line: mean)"))
    handles += [Patch(color="C2", alpha=0.25, label=f"band [{target:g}, {2 - target:g}]"),
                Line2D([], [], color="C3", marker="o", ls="", label="minimal circuit (size "
                       "chosen on selection pairs), evaluation F with 95% CI")]
    fig.suptitle(f"{title} ({minimal['n_pairs']} evaluation, "
                 f"{minimal.get('n_selection', 0)} selection pairs, "
                 f"{_edges(minimal['n_edges'])})\n{_pairs_definition(minimal.get('task', ''))}",
                 y=1.01,
                 fontsize=9)
    fig.tight_layout()
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2,
               frameon=False, fontsize=7)
    return fig


def _cell_name(task: str, subset: str) -> str:
    """A heatmap row / column label on two lines (rotated one-line labels took half the
    figure's height)."""
    return f"{task.replace('_', ' ')}\n{subset}"


def _group_heatmaps(df: pl.DataFrame, group: list[str], rows: list[str], cols: list[str],
                    value: str, title: str, interval: tuple[str, str] | None = None,
                    threshold: float | None = None, empty: str = "no rows", **heatmap):
    """One heatmap of `value` per value of the `group` columns, indexed by the
    'task / subset' named by the `rows` and `cols` column pairs; cells annotated with the
    value and, where `interval` names lo/hi columns, its interval. With a `threshold`,
    cells whose value lies below it get a black corner mark (hatching hid the numbers) and
    the threshold is drawn on the colour bar. An even number of panels in two columns, an
    odd one in one (no empty quadrant); a table with no rows gives a figure saying
    `empty`."""
    import pandas as pd

    if not df.height:
        return empty_figure(title, empty)
    keys = df.select(group).unique(maintain_order=True).rows()
    ncols = 2 if len(keys) % 2 == 0 else 1  # an odd count in one column: no empty quadrant
    nrows = -(-len(keys) // ncols)
    n_r = df.select(rows).unique().height
    n_c = df.select(cols).unique().height
    size = (1.25 * n_c + 2.6, 0.62 * n_r + 1.9)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=(size[0] * ncols, size[1] * nrows))
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, keys, strict=False):
        d = df
        for g_, v in zip(group, key, strict=True):
            d = d.filter(pl.col(g_) == v)
        d = d.with_columns(
            pl.struct(rows).map_elements(lambda r: _cell_name(*r.values()),
                                         return_dtype=pl.String).alias("_r"),
            pl.struct(cols).map_elements(lambda r: _cell_name(*r.values()),
                                         return_dtype=pl.String).alias("_c"))
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
                    annot_kws={"fontsize": 7.5}, **heatmap)
        ax.set_xticklabels(ax.get_xticklabels(), rotation=0, fontsize=7)
        ax.set_yticklabels(ax.get_yticklabels(), rotation=0, fontsize=7)
        if threshold is not None:
            _mark_below(ax, table.to_numpy(dtype=float), threshold)
        ax.set_xlabel("")
        ax.set_ylabel("")
        if " vs " in str(key[-1]):  # a panel across meanings: say which axis is which
            rows_m, cols_m = str(key[-1]).split(" vs ", 1)
            ax.set_ylabel(f"{rows_m} circuits")
            ax.set_xlabel(f"{cols_m} circuits")
        ax.set_title(", ".join(map(str, key)), fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _mark_below(ax, values, threshold: float) -> None:
    """Mark the cells of a heatmap on `ax` whose value is below `threshold` with a black
    triangle in their top-left corner (NaN cells are left alone) and draw the threshold
    across its colour bar."""
    from matplotlib.patches import Polygon

    for i, j in zip(*np.nonzero(np.nan_to_num(values, nan=np.inf) < threshold), strict=True):
        ax.add_patch(Polygon([(j, i), (j + 0.2, i), (j, i + 0.2)], closed=True, color="k",
                             lw=0, gid="below-threshold"))
    bar = ax.collections[0].colorbar
    if bar is not None:
        bar.ax.axhline(threshold, color="k", lw=2, gid="threshold")


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
    ns = sorted(set(transfer["n_pairs"].drop_nulls())) if "n_pairs" in transfer.columns \
        and transfer.height else []
    n = "" if not ns else (f"; n = {ns[0]} evaluation pairs" if len(ns) == 1
                           else f"; n = {ns[0]}-{ns[-1]} evaluation pairs per column")
    return _group_heatmaps(transfer, ["placement", "semantics"],
                           ["source_task", "source_subset"], ["target_task", "target_subset"],
                           "faithfulness", f"{model}: transfer (rows: circuit, columns: the "
                           f"pairs it is evaluated on; 95% CI below{n})\nmemorized = threshold "
                           "label (score ≥ the subset's high threshold)",
                           ("faithfulness_lo", "faithfulness_hi"), threshold=threshold,
                           cmap=_faithfulness_cmap(), vmin=_F_MIN, vmax=_F_MAX,
                           empty="no transfer rows (n = 0): no task has a minimal circuit\n"
                           "and evaluation pairs on two sets, so nothing transfers",
                           cbar_kws={"label": f"faithfulness F (black line: threshold "
                                     f"{threshold:g};\ncorner mark: cell below it)"
                                     if threshold is not None else "faithfulness F",
                                     "extend": "both"})


def overlap_heatmaps(overlap: pl.DataFrame, model: str):
    """Jaccard index of every two circuits' edge sets, circuits of the same meaning; the
    'prevention vs induction' panel (rows prevention, columns induction circuits) holds
    each task's noising against de-noising circuit where row and column agree."""
    return _group_heatmaps(overlap, ["semantics"], ["a_task", "a_subset"],
                           ["b_task", "b_subset"], "jaccard",
                           f"{model}: circuit overlap (Jaccard of the minimal circuits' edge "
                           "sets)", empty="no overlap rows (n = 0): fewer than two minimal "
                           "circuits to compare", vmin=0, vmax=1, cmap="viridis",
                           cbar_kws={"label": "Jaccard |A∩B| / |A∪B|"})
