"""Figures (seaborn). Each function takes tables and returns a matplotlib Figure;
`save` writes it atomically. No figure computes anything a table does not hold."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
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


def _node_xy(name: str, n_layers: int, width: int) -> tuple[float, float]:
    """Layout by layer: input at 0, layer l's heads at 2l + 1 (x = head index), its MLP at
    2l + 2 to the right of the heads, alternating between two columns (x = width + 0.4 or
    width + 1.2) so that edges between MLPs of non-adjacent layers do not run along the
    MLPs in between; input and logits centred under / over the heads."""
    if name == "input":
        return (width - 1) / 2, 0.0
    if name == "logits":
        return (width - 1) / 2, 2.0 * n_layers + 1
    if name.startswith("m"):
        layer = int(name[1:])
        return width + 0.4 + 0.8 * (layer % 2), 2.0 * layer + 2
    layer, head = name.split(".")
    return float(int(head[1:])), 2.0 * int(layer[1:]) + 1


_INPUT_STYLE = {"q": "-", "k": "--", "v": ":"}
# the q, k and v edges from one source into one head would lie on one line: each its own bend
_INPUT_BEND = {"q": 0.0, "k": 0.18, "v": -0.18}


def _edge_bend(y0: float, y1: float, kind: str) -> float:
    """arc3 `rad` of an edge: straight between adjacent rows, bent where it skips rows (so
    that it does not run over the nodes in between), the q / k / v inputs of a head apart."""
    skip = abs(y1 - y0) > 1.0
    return (0.22 if skip else 0.0) + _INPUT_BEND.get(kind, 0.0)


def _draw_circuit(ax, edges: Sequence[str], scores: Sequence[float], n_layers: int,
                  n_heads: int) -> None:
    """One circuit on `ax`: its edges ('source->destination', graph.Graph.edge_names) as
    lines laid out by layer (bent where they skip rows), red for a positive score and blue
    for a negative one, width by |score|, key inputs dashed and value inputs dotted; its
    nodes named."""
    from matplotlib.patches import FancyArrowPatch

    L = n_layers
    top = max((abs(s) for s in scores), default=1.0) or 1.0
    used = set()
    for name, score in zip(edges, scores, strict=True):
        src, dst = name.split("->")
        kind = dst[-2] if dst.endswith(">") else ""
        node = dst.split("<")[0]
        used |= {src, node}
        (x0, y0), (x1, y1) = _node_xy(src, L, n_heads), _node_xy(node, L, n_heads)
        ax.add_patch(FancyArrowPatch(
            (x0, y0), (x1, y1), arrowstyle="-", shrinkA=0, shrinkB=0,
            connectionstyle=f"arc3,rad={_edge_bend(y0, y1, kind)}",
            color="C3" if score > 0 else "C0", lw=0.5 + 3 * abs(score) / top, alpha=0.8,
            ls=_INPUT_STYLE.get(kind, "-"), gid=name))
    nodes = (["input", "logits"] + [f"a{layer}.h{h}" for layer in range(L)
                                    for h in range(n_heads)]
             + [f"m{layer}" for layer in range(L)])
    for n in nodes:
        x, y = _node_xy(n, L, n_heads)
        ax.scatter([x], [y], s=60 if n in used else 15, zorder=3,
                   color="k" if n in used else "0.75", gid=n,
                   marker=_node_marker(n))
        if n in used:
            ax.annotate(n, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points",
                        zorder=4)
    ax.set_xlim(-0.7, n_heads + 1.9)
    ax.set_ylim(-0.7, 2 * L + 1.7)
    ax.set_yticks([2 * i + 1.5 for i in range(L)], [f"layer {i}" for i in range(L)])
    ax.set_xticks([])
    ax.grid(False)
    for i in range(L):  # a light band per layer: its heads' row and its MLP's row
        ax.axhspan(2 * i + 0.6, 2 * i + 2.4, color="0.93" if i % 2 else "0.97", lw=0,
                   zorder=0)


def _node_marker(name: str) -> str:
    if name in ("input", "logits"):
        return "D"
    return "s" if name.startswith("m") else "o"


def circuit_legend(fig) -> None:
    """The drawing's key below its panels: edge colour (sign of the score), width (|score|,
    relative to the panel's largest), line style (the head input an edge enters) and node
    types."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="C3", lw=2, label="positive score"),
               Line2D([], [], color="C0", lw=2, label="negative score"),
               Line2D([], [], color="0.3", lw=0.5 + 3 * 0.1, label="small |score|"),
               Line2D([], [], color="0.3", lw=3.5, label="largest |score| (width ∝ |score|)"),
               Line2D([], [], color="0.3", ls="-", lw=1, label="into a query / MLP / logits"),
               Line2D([], [], color="0.3", ls="--", lw=1, label="into a key"),
               Line2D([], [], color="0.3", ls=":", lw=1.3, label="into a value"),
               Line2D([], [], color="k", marker="o", ls="", ms=6, label="attention head"),
               Line2D([], [], color="k", marker="s", ls="", ms=6, label="MLP"),
               Line2D([], [], color="k", marker="D", ls="", ms=5, label="input / logits"),
               Line2D([], [], color="0.75", marker="o", ls="", ms=4,
                      label="not in the circuit")]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4,
               frameon=False, fontsize=7)


MAX_DRAWN = 300  # edges drawn per circuit: more are a solid tangle (SmolLM2's have 6,000+)


def _strongest(edges: Sequence[str], scores: Sequence[float], cap: int | None = None
               ) -> tuple[list[str], list[float], str]:
    """The `cap` (default MAX_DRAWN) edges of largest |score|, all when fewer, and a title
    note saying so."""
    cap = MAX_DRAWN if cap is None else cap
    if len(edges) <= cap:
        return list(edges), list(scores), ""
    keep = sorted(range(len(edges)), key=lambda i: -abs(scores[i]))[:cap]
    return ([edges[i] for i in keep], [scores[i] for i in keep],
            f" (the {cap} of largest |score| drawn)")


def _drawing_size(n_layers: int, n_heads: int, panels: int = 1) -> tuple[float, float]:
    return max(4.5, 0.55 * n_heads + 3) * max(1, panels), 0.9 * n_layers + 2.5


def circuit(graph, edges, scores, title: str = ""):
    """A circuit of your own: `edges` an [S, D] boolean edge mask of `graph`
    (vermem.graph.Graph; e.g. circuits.circuit), `scores` its [S, D] edge scores (e.g.
    attribution.run's), drawn as `circuit_drawing` draws the workflow's."""
    index = edges.flatten().nonzero().flatten()
    names = graph.edge_names(index)
    values = [float(scores.flatten()[i]) for i in index]
    s = graph.shape
    fig, ax = plt.subplots(figsize=_drawing_size(s.n_layers, s.n_heads))
    drawn, drawn_scores, note_ = _strongest(names, values)
    _draw_circuit(ax, drawn, drawn_scores, s.n_layers, s.n_heads)
    ax.set_title((title or f"{len(names)} edges") + note_, fontsize=9)
    fig.tight_layout()
    circuit_legend(fig)
    return fig


def circuit_drawing(minimal: dict, main: dict, title: str):
    """The minimal circuits of the main mode, one panel per direction, laid out by layer."""
    chosen = [c for c in minimal["circuits"]
              if (c["placement"], c["ablation"]) == (main["placement"], main["ablation"])]
    L, n_heads = minimal["n_layers"], minimal["n_heads"]
    fig, axes = plt.subplots(1, max(1, len(chosen)), squeeze=False,
                             figsize=_drawing_size(L, n_heads, len(chosen)))
    for ax, c in zip(axes[0], chosen, strict=False):
        drawn, drawn_scores, note_ = _strongest(c["edges"], c["scores"])
        _draw_circuit(ax, drawn, drawn_scores, L, n_heads)
        f, lo, hi = (c.get(x) for x in ("faithfulness", "faithfulness_lo", "faithfulness_hi"))
        ftxt = "n/a" if f is None else f"{f:.2f}" + (
            "" if lo is None or hi is None else f" [{lo:.2f}, {hi:.2f}]")
        ax.set_title(f"{c['direction']}: {c['k']} edges, F = {ftxt}{note_}", fontsize=9)
    fig.suptitle(title, y=1.02)
    fig.tight_layout()
    circuit_legend(fig)
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


# transfer F: sequential over [0, 1] (0.4 and 1.0 far apart), an overshoot band above 1
# (F > 1: the circuit does more than the model), negative values in the 'under' colour
_F_MIN, _F_MAX = 0.0, 1.5


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


# line styles of the string lengths in the dynamics curves: none of them dotted, the style of
# the reference lines (H(p), max p), so that one style means one thing
_LENGTH_DASHES = ["", (5, 2), (8, 2, 2, 2), (12, 3), (3, 2, 3, 2, 8, 2)]
_REFERENCE_STYLE = {"color": "0.15", "ls": ":", "lw": 1.1}


def dynamics_curves(curves: pl.DataFrame, phases: pl.DataFrame, model: str):
    """Loss and accuracy against epoch per alphabet size: the mean over seeds with the
    seeds' range (min to max) shaded; colour: init, line style: string length. On the loss
    panels H(p) (dotted) and the range of the strings' own letter entropies H(q) (grey
    band, the guessing phase's reference), on the accuracy panels max p (dotted) and the
    range of the strings' best constant guess; one legend says which is which."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    own = [c for c in ("empirical_entropy", "guess_accuracy") if c in phases.columns]
    c = curves.filter(pl.col("model") == model).join(
        phases.select("model", "init", "string_id", "seed", "alphabet_size", "length",
                      pl.col("entropy").alias("h"), "max_p", *own),
        on=["model", "init", "string_id", "seed"])  # h: H(p); entropy: the model's
    sizes = sorted(c["alphabet_size"].unique())
    inits = sorted(c["init"].unique())
    lengths = [str(v) for v in sorted(c["length"].unique())]
    palette = dict(zip(inits, sns.color_palette(n_colors=max(1, len(inits))), strict=False))
    dashes = {n: _LENGTH_DASHES[i % len(_LENGTH_DASHES)] for i, n in enumerate(lengths)}
    fig, axes = plt.subplots(2, len(sizes) or 1, figsize=(3.2 * max(1, len(sizes)), 5.2),
                             sharex=True, squeeze=False)
    df = _pandas(c.with_columns(pl.col("length").cast(pl.String)), "init", "alphabet_size",
                 "length", "epoch", "loss", "accuracy")
    for j, l in enumerate(sizes):
        d = df[df.alphabet_size == l]
        for i, metric in enumerate(("loss", "accuracy")):
            ax = axes[i][j]
            sns.lineplot(d, x="epoch", y=metric, hue="init", style="length", palette=palette,
                         dashes=dashes, hue_order=inits, style_order=lengths,
                         errorbar=("pi", 100), err_kws={"alpha": 0.15, "lw": 0}, ax=ax,
                         legend=False)
            ref = c.filter(pl.col("alphabet_size") == l)
            for v in sorted(ref["h" if i == 0 else "max_p"].unique()):
                ax.axhline(v, gid="reference", **_REFERENCE_STYLE)
            col = "empirical_entropy" if i == 0 else "guess_accuracy"
            if col in ref.columns:  # a band over the strings, a line where they agree
                lo, hi = ref[col].min(), ref[col].max()
                if hi > lo:
                    ax.axhspan(lo, hi, color="0.5", alpha=0.2, lw=0, zorder=0)
                else:
                    ax.axhline(lo, color="0.5", alpha=0.5, lw=3, zorder=0)
            if i == 0:
                ax.set_yscale("log")
                ax.set_title(f"alphabet size {l}", fontsize=9)
            else:
                ax.set_ylim(-0.03, 1.03)
            if j:
                ax.set_ylabel("")
    n_seeds = c.select("init", "string_id", "seed").unique().group_by("init", "string_id").len()
    seeds = _span(n_seeds["len"].to_list()) if n_seeds.height else "0"
    handles = [Line2D([], [], color=palette[i], lw=2, label=f"init: {i}") for i in inits]
    handles += [Line2D([], [], color="0.3", lw=1.3, dashes=dashes[n] or (None, None),
                       label=f"length {n}") for n in lengths]
    if seeds != "1":
        handles.append(Patch(color="0.3", alpha=0.2, lw=0,
                             label=f"range over the {seeds} seeds\n(line: their mean)"))
    handles += [Line2D([], [], label="dotted: H(p) (loss),\nmax p (accuracy)",
                       **_REFERENCE_STYLE),
                Patch(color="0.5", alpha=0.35, lw=0,
                      label="grey: strings' own H(q) (loss),\nbest constant guess (accuracy)")]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.92), frameon=False,
               fontsize=7)
    spread = ("one seed per line" if seeds == "1" else
              f"mean of {seeds} seeds per line, shaded: their range")
    fig.suptitle(f"{model}: memorizing random strings ({spread})", y=1.02)
    fig.tight_layout()
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
    """Per Q1 factor (pooling the other factors) and init: the median epochs to memorize
    with never-memorized strings censored at the horizon, the last epoch at which a
    memorized run can start (top; a triangle at the horizon marks a median beyond it, bars
    are the order-statistic 95% interval where n allows one), and the share of strings
    memorized with its Wilson 95% interval (bottom); n strings under each point."""
    from .dynamics import time_to_memorize

    factors = [("alphabet_size", "alphabet size"), ("entropy_fraction", "H(p) / log(l)"),
               ("length", "string length"), ("model", "model")]
    inits = sorted(phases["init"].unique()) if phases.height else []
    fig, axes = plt.subplots(2, len(factors), figsize=(3.4 * len(factors), 5.6),
                             sharey="row", squeeze=False)
    col = "horizon" if "horizon" in phases.columns else "epochs"
    horizon = int(phases[col].max()) if phases.height else 0
    colors = sns.color_palette(n_colors=max(1, len(inits)))
    for j, (col, label) in enumerate(factors):
        levels = sorted(phases[col].unique()) if phases.height else []
        for i, init in enumerate(inits):
            off = (i - (len(inits) - 1) / 2) * 0.25
            for x, level in enumerate(levels):
                t = time_to_memorize(phases.filter((pl.col(col) == level)
                                                   & (pl.col("init") == init)))
                if not t["strings"]:
                    continue
                ax, c = axes[0][j], colors[i]
                if t["median_censored"]:
                    ax.plot(x + off, horizon, marker="^", color=c, ms=8)
                else:
                    ax.plot(x + off, t["median_epochs"], marker="o", color=c)
                if t["median_lo"] is not None:
                    hi = horizon if t["median_hi"] is None else t["median_hi"]
                    ax.vlines(x + off, t["median_lo"], hi, color=c, lw=1.2,
                              linestyles="dotted" if t["median_hi"] is None else "solid")
                ax = axes[1][j]
                ax.errorbar(x + off, t["share_memorized"],
                            yerr=[[max(0.0, t["share_memorized"] - t["share_lo"])],
                                  [max(0.0, t["share_hi"] - t["share_memorized"])]],
                            marker="o", color=c, capsize=2,
                            label=init if x == 0 and j == len(factors) - 1 else None)
                ax.annotate(f"{t['strings']}", (x + off, -0.02), fontsize=6, ha="center",
                            va="top", color=c)
        for row in (0, 1):
            axes[row][j].set_xticks(range(len(levels)), [str(v) for v in levels])
            axes[row][j].set_xlim(-0.5, max(0.5, len(levels) - 0.5))
        axes[1][j].set_xlabel(label)
        axes[1][j].set_ylim(-0.12, 1.05)
    axes[0][0].set_ylabel("median epochs to memorize")
    axes[1][0].set_ylabel("share memorized")
    if horizon:
        for ax in axes[0]:
            ax.axhline(horizon, color="grey", ls="--", lw=0.8)
    if inits:
        axes[1][-1].legend(title="init", loc="upper left", bbox_to_anchor=(1.01, 1),
                           frameon=False)
    never = int(phases["memorized"].is_null().sum()) if phases.height else 0
    fig.suptitle(f"Q1: epochs to memorize (accuracy 1 held), censored at {horizon} "
                 "(triangle: median > "
                 f"{horizon}; {never} of {phases.height} strings never memorized; "
                 "n strings under each point)", y=1.02)
    return fig


def _fraction_label(x: float) -> str:
    """0.015625 -> '1/64', 0.5 -> '1/2', 0.3 -> '0.3': short tick labels for shares."""
    from fractions import Fraction

    f = Fraction(x).limit_denominator(1024)
    return f"{f.numerator}/{f.denominator}" if abs(float(f) - x) < 1e-9 and f < 1 else f"{x:g}"


def _fraction_axis(ax, values) -> None:
    """A log x axis with one tick per value drawn (labelled as a fraction, no minor ticks
    whose labels overprint), thinned to every other value beyond 6 and rotated."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ax.set_xscale("log")
    values = [float(v) for v in values if v and v > 0]
    shown = values if len(values) <= 6 else values[::2]
    ax.xaxis.set_major_locator(FixedLocator(shown))
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _pos: _fraction_label(x)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelrotation=45 if len(shown) > 4 else 0, labelsize=7)


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
            _fraction_axis(ax, sorted(d["k_fraction"].unique()))
            ax.set_xlabel("k / n (share of the string)")
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


# -- checkpoints: memorization and circuits across training ------------------------------------

_SEMANTICS = ("prevention", "induction")
_TASKS = ("branch_comparison", "memorization_decision")


def _ordered(values, first=()) -> list:
    """The distinct non-null `values`, those named in `first` in that order, then the rest
    sorted."""
    seen = {v for v in values if v is not None}
    return [v for v in first if v in seen] + sorted(seen - set(first))


def _final_step(df: pl.DataFrame) -> int | None:
    final = df.filter(pl.col("final") & pl.col("step").is_not_null())["step"]
    return int(final.max()) if final.len() else None


def _steps_label(x: float, _pos=None) -> str:
    """1000 -> '1k', 143000 -> '143k': readable step ticks on a log axis."""
    return f"{x / 1000:g}k" if abs(x) >= 1000 else f"{x:g}"


def _step_axis(ax, steps, final: int | None, label_final: bool = True) -> None:
    """Training step on x: log when the steps span more than 20x (Pythia: step1000 ..
    step143000; symlog if step 0 is among them), linear otherwise with a tick per step when
    there are few; a dotted vertical line at the final model's step, labelled 'final'."""
    from matplotlib.ticker import FuncFormatter

    steps = sorted({int(s) for s in steps if s is not None})
    positive = [s for s in steps if s > 0]
    if positive and positive[-1] / positive[0] > 20:
        if steps[0] <= 0:
            ax.set_xscale("symlog", linthresh=positive[0])
        else:
            ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_steps_label))
    elif 0 < len(steps) <= 10:
        ax.set_xticks(steps, [str(s) for s in steps])
    if final is not None:
        ax.axvline(final, color="0.35", ls=":", lw=1, zorder=1)
        if label_final:
            ax.text(final, 1.005, "final", transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=7, color="0.35")
    ax.set_xlabel("training step")


def _values(d: pl.DataFrame, column: str) -> list[float]:
    """The column as floats with null as NaN (matplotlib leaves a gap there)."""
    return d[column].cast(pl.Float64).fill_null(float("nan")).to_list()


def _band_line(ax, d: pl.DataFrame, y: str, lo: str | None, hi: str | None, color,
               label: str | None = None, **line) -> int:
    """`y` against step with markers, points where `y` is null skipped, and the [lo, hi]
    interval shaded (a gap where it is null); returns the number of points drawn."""
    d = d.filter(pl.col("step").is_not_null()).sort("step")
    if lo is not None and hi is not None:
        ax.fill_between(d["step"].to_list(), _values(d, lo), _values(d, hi), color=color,
                        alpha=0.18, lw=0)
    d = d.filter(pl.col(y).is_not_null() & pl.col(y).is_not_nan())
    ax.plot(d["step"].to_list(), d[y].to_list(), marker="o", ms=3.5, color=color,
            label=label, **line)
    return d.height


def _legend_outside(ax, handles=None, **kwargs) -> None:
    if handles is not None:
        kwargs["handles"] = handles
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False, fontsize=7,
              **kwargs)


def _count(group: str) -> float | None:
    """A duplicate count written as a string ('0', '16'), or None ('None': unknown)."""
    try:
        return float(group)
    except ValueError:
        return None


_GRADED_PANELS = (("match_fraction", "mean match fraction\n(continuation reproduced)"),
                  ("exact_prefix", "mean exact prefix\n(tokens before a mismatch)"))


def checkpoint_memorization(df: pl.DataFrame, model: str):
    """Share of a fixed sample set labelled memorized at each training checkpoint: a
    line per duplicate count when the table has them (the model organism; 0 = unseen), else
    per subset, with the Wilson 95% interval shaded; n per group in the legend. Below it,
    where the table has them, the graded scores behind the label: the mean match fraction
    and the mean exact-prefix length, with bootstrap intervals over documents."""
    title = f"{model}: memorization across training"
    if df.height == 0:
        return empty_figure(title, "no checkpoint rows (n = 0): nothing to draw")
    counts = {g: _count(g) for g in df.filter(pl.col("by") == "dup_count")["group"]}
    # duplicate counts only where some are known (a hub model's are all null: 'None')
    by = "dup_count" if any(c is not None for c in counts.values()) else "subset"
    d = df.filter(pl.col("by") == by)
    if by == "dup_count":
        groups = sorted(counts, key=lambda g: (counts[g] is None, counts[g] or 0, g))
        shade = plt.cm.viridis([0.1 + 0.75 * i / max(1, len(groups) - 1)
                                for i in range(len(groups))])
        colors = {g: ("0.45" if counts[g] in (0, None) else shade[i])
                  for i, g in enumerate(groups)}
        names = {g: ("count unknown" if counts[g] is None else "unseen" if counts[g] == 0
                     else f"seen {g}×") for g in groups}
    else:
        groups = _ordered(d["group"].to_list())
        colors = dict(zip(groups, sns.color_palette(n_colors=len(groups)), strict=True))
        names = {g: g for g in groups}
    final = _final_step(d)
    graded = [(c, label) for c, label in _GRADED_PANELS
              if c in d.columns and d[c].is_not_null().any()]
    fig, axes = plt.subplots(1 + len(graded), 1, sharex=True, squeeze=False,
                             figsize=(5.6, 3.0 + 2.1 * len(graded)))
    ax = axes[0][0]
    total = drawn = 0
    for g in groups:
        rows = d.filter(pl.col("group") == g).sort("step")
        last = rows.filter(pl.col("final")) if rows["final"].any() else rows.tail(1)
        n = int(last["n"].fill_null(0).max())
        total += n
        drawn += _band_line(ax, rows, "share", "share_lo", "share_hi", colors[g],
                            label=f"{names[g]} (n = {n})")
        for (c, _), gax in zip(graded, axes[1:, 0], strict=True):
            _band_line(gax, rows, c, f"{c}_lo", f"{c}_hi", colors[g])
    for i, a in enumerate(axes[:, 0]):
        _step_axis(a, d["step"].to_list(), final, label_final=i == 0)
        if i < len(graded):
            a.set_xlabel("")
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel(MEMORIZED_LABEL, fontsize=8)
    for (c, label), gax in zip(graded, axes[1:, 0], strict=True):
        gax.set_ylabel(label, fontsize=8)
        if c == "match_fraction":
            gax.set_ylim(-0.03, 1.03)
        else:
            gax.set_ylim(bottom=-0.5)
    if drawn == 0:
        note(ax, "no share to draw: every group has n = 0 at every checkpoint")
    _legend_outside(ax, title="duplicate count" if by == "dup_count" else "subset",
                    title_fontsize=7)
    n_ck = d["checkpoint"].n_unique()
    ax.set_title(f"{title}\nmemorized = threshold label (score ≥ the subset's high "
                 "threshold) on each document's start window\n"
                 f"({n_ck} points, n = {total} documents, one sample each; "
                 "shaded: Wilson 95%" + ("; below: bootstrap 95% over documents" if graded
                                         else "") + ")",
                 fontsize=9, pad=12)
    return fig


def _line_keys(df: pl.DataFrame):
    """(panels, lines) of the checkpoint circuit figures: with one subset, a column per
    task and a line per semantics; with several, a column per task and semantics and a line
    per subset (six lines with their intervals in one panel do not read)."""
    tasks = _ordered(df["task"].to_list(), _TASKS)
    semantics = _ordered(df["semantics"].to_list(), _SEMANTICS)
    subsets = _ordered(df["subset"].to_list())
    if len(subsets) <= 1:
        panels = [(t, None) for t in tasks]
        palette = dict(zip(semantics, ["C0", "C3", "C2", "C4"], strict=False))
        lines = [("semantics", s, palette.get(s, "C5")) for s in semantics]
    else:
        panels = [(t, s) for t in tasks for s in semantics
                  if df.filter((pl.col("task") == t) & (pl.col("semantics") == s)).height]
        lines = [("subset", s, c) for s, c in zip(subsets, sns.color_palette(
            n_colors=len(subsets)), strict=True)]
    return panels, lines, subsets


def _panel(df: pl.DataFrame, task: str, semantics: str | None) -> pl.DataFrame:
    d = df.filter(pl.col("task") == task)
    return d if semantics is None else d.filter(pl.col("semantics") == semantics)


def _span(values) -> str:
    values = [int(v) for v in values if v is not None]
    if not values:
        return "?"
    return str(values[0]) if min(values) == max(values) else f"{min(values)}–{max(values)}"


def _panel_title(d: pl.DataFrame, task: str, semantics: str | None) -> str:
    head = task.replace("_", " ")
    if semantics is not None:
        directions = ", ".join(_ordered(d["direction"].to_list()))
        head += f"\n{semantics} ({directions})"
    return (f"{head}\nn = {_span(d['n_pairs'].to_list())} evaluation, "
            f"{_span(d['n_selection'].to_list())} selection pairs")


def _line_label(kind: str, value: str, d: pl.DataFrame) -> str:
    if kind == "semantics":
        directions = "; ".join(
            f"{t.replace('_', ' ')}: {', '.join(_ordered(g['direction'].to_list()))}"
            for t in _ordered(d["task"].to_list(), _TASKS)
            for g in [d.filter((pl.col("task") == t) & (pl.col("semantics") == value))]
            if g.height)
        return f"{value}\n({directions})"
    return value


def _subset_note(subsets: list[str]) -> str:
    return f", subset {subsets[0]}" if len(subsets) == 1 else ""


def _mark_outside(ax, d: pl.DataFrame, y: str, lo: float, hi: float, color) -> None:
    """Points beyond the panel's y range drawn as triangles at its edge."""
    d = d.filter(pl.col("step").is_not_null() & pl.col(y).is_not_null())
    for side, marker, keep in ((hi, "^", d[y] > hi), (lo, "v", d[y] < lo)):
        steps = d.filter(keep)["step"].to_list()
        if steps:
            ax.plot(steps, [side] * len(steps), ls="", marker=marker, ms=6, color=color,
                    clip_on=False, zorder=4)


def checkpoint_circuits(df: pl.DataFrame, model: str, target: float):
    """Per task (columns): the minimal circuit's size at each checkpoint with its bootstrap
    interval (top), the faithfulness F of the final model's minimal circuit evaluated at each
    checkpoint with its interval, the target band and random circuits of the same size
    (middle), and the clean-minus-corrupt logit gap with its interval (bottom)."""
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    title = f"{model}: circuits across training"
    if df.height == 0:
        return empty_figure(title, "no checkpoint circuit rows (n = 0): nothing to draw")
    panels, lines, subsets = _line_keys(df)
    final = _final_step(df)
    steps = df["step"].drop_nulls().to_list()
    fig, axes = plt.subplots(3, len(panels), squeeze=False, sharex="col",
                             figsize=(3.4 * len(panels) + 0.8, 7.6))
    lo_f, hi_f = -1.5, 2.5  # F explodes where the full model's logit gap is ~0: clip
    any_shared = False
    for j, (task, sem) in enumerate(panels):
        d = _panel(df, task, sem)
        k_ax, f_ax, g_ax = axes[:, j]
        n_k = n_f = n_g = 0
        ks = [v for c in ("k", "k_lo", "k_hi") for v in d[c].drop_nulls().to_list() if v > 0]
        fs = [v for c in ("final_faithfulness", "final_faithfulness_lo",
                          "final_faithfulness_hi", "final_random_faithfulness")
              for v in d[c].drop_nulls().to_list() if np.isfinite(v)]
        f_min = max(lo_f, min([-0.1, *fs]))
        f_max = min(hi_f, max([2 - target + 0.1, *fs]))
        spread = max(steps, default=1) / max(1, min(steps, default=1))
        width = (max(steps, default=1) - min(steps, default=0)) or 1
        shared_gap = _same_gap(d, lines)
        any_shared |= shared_gap
        for i, (kind, value, color) in enumerate(lines):
            ld = d.filter(pl.col(kind) == value).filter(pl.col("step").is_not_null())
            if ld.height == 0:
                continue
            # a shift per line of 2.5% of the axis, so the size intervals do not hide each other
            shift = (i - (len(lines) - 1) / 2) * 0.025
            x = ld.with_columns(pl.col("step").cast(pl.Float64) * spread ** shift if spread > 20
                                else pl.col("step") + shift * width)
            kd = x.filter(pl.col("k").is_not_null()).sort("step")
            if kd.height:
                k = np.array(kd["k"].to_list())
                err = [np.maximum(0, k - np.array(kd["k_lo"].fill_null(kd["k"]).to_list())),
                       np.maximum(0, np.array(kd["k_hi"].fill_null(kd["k"]).to_list()) - k)]
                k_ax.errorbar(kd["step"].to_list(), k, yerr=err, marker="o", ms=3.5,
                              capsize=2, color=color, lw=1)
                n_k += kd.height
            n_f += _band_line(f_ax, ld, "final_faithfulness", "final_faithfulness_lo",
                              "final_faithfulness_hi", color)
            _mark_outside(f_ax, ld, "final_faithfulness", f_min, f_max, color)
            rnd = ld.filter(pl.col("final_random_faithfulness").is_not_null()).sort("step")
            f_ax.plot(rnd["step"].to_list(), rnd["final_random_faithfulness"].to_list(),
                      ls=":", color=color, lw=1.2)
            if not shared_gap:
                n_g += _band_line(g_ax, ld, "logit_gap", "logit_gap_lo", "logit_gap_hi",
                                  color)
        if shared_gap:
            n_g += _band_line(g_ax, d.filter(pl.col(lines[0][0]) == lines[0][1]), "logit_gap",
                              "logit_gap_lo", "logit_gap_hi", "0.25")
        if ks and max(ks) / min(ks) > 20:
            from matplotlib.ticker import LogFormatter

            k_ax.set_yscale("log")
            # plain edge counts (2, 5, 20), not 2×10^0
            k_ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
            k_ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False,
                                                         minor_thresholds=(2, 0.5)))
        edges = _span(d["n_edges"].to_list())
        k_ax.set_ylabel(f"minimal circuit size k\n(edges, of {edges})" if j == 0 else "")
        f_ax.axhspan(target, 2 - target, color="C2", alpha=0.12, lw=0)
        for level in (target, 2 - target):
            f_ax.axhline(level, ls="--", color="C2", lw=0.9)
        f_ax.axhline(0, color="0.3", lw=0.7)
        f_ax.set_ylim(f_min - 0.05, f_max + 0.05)
        f_ax.set_ylabel("F of the final model's\ncircuit at this step" if j == 0 else "")
        g_ax.axhline(0, color="0.3", lw=0.7)
        g_ax.set_ylabel("logit gap\n(clean − corrupt)" if j == 0 else "")
        for ax, n, what in ((k_ax, n_k, "no minimal circuit reached the band\n"
                             "at any checkpoint (k is null)"),
                            (f_ax, n_f, "no F of the final circuit\n(no final circuit, or "
                             "too few pairs)"),
                            (g_ax, n_g, "no logit gap (no evaluation pairs)")):
            if n == 0:
                note(ax, what)
            _step_axis(ax, steps, final, label_final=ax is k_ax)
            if ax is not g_ax:
                ax.set_xlabel("")
        k_ax.set_title(_panel_title(d, task, sem), fontsize=8, pad=12)
    handles = [Line2D([], [], color=c, marker="o", ms=3.5, label=_line_label(kind, v, df))
               for kind, v, c in lines]
    handles += [Line2D([], [], color="0.3", ls=":", lw=1.2,
                       label="random circuits of the\nfinal circuit's size (mean F)"),
                Patch(color="C2", alpha=0.25, label=f"faithfulness band\n"
                      f"[{target:g}, {2 - target:g}]"),
                Line2D([], [], color="0.35", ls=":", lw=1, label="final model")]
    if any_shared:
        handles.append(Line2D([], [], color="0.25", marker="o", ms=3.5,
                              label="logit gap: both meanings\n(the same pairs)"))
    fig.suptitle(f"{title}{_subset_note(subsets)} (error bars, shading: 95% cluster bootstrap "
                 "over documents; triangles: beyond the axis)", fontsize=9)
    fig.tight_layout()
    _legend_below(fig, handles, "subset" if lines[0][0] == "subset" else None)
    return fig


def _same_gap(d: pl.DataFrame, lines) -> bool:
    """Whether the lines of a panel (one per meaning) share their logit gap at every step:
    both directions of a task are measured on the same pairs, so one line is drawn."""
    if len(lines) < 2 or lines[0][0] != "semantics":
        return False
    cols = ("logit_gap", "logit_gap_lo", "logit_gap_hi")
    per_step = d.group_by("step", "subset").agg(pl.col(c).n_unique() for c in cols)
    return all(per_step[c].max() == 1 for c in cols)


def _legend_below(fig, handles, title: str | None) -> None:
    """One legend for all panels, below them (beside them it squeezes the panels)."""
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(len(handles), 4), frameon=False, fontsize=7, title=title,
               title_fontsize=7)


def checkpoint_overlap(df: pl.DataFrame, model: str):
    """Per task (columns): the edge Jaccard index (solid) and overlap coefficient (dashed) of
    each checkpoint's minimal circuit with the final model's (top) and the Spearman
    correlation of |edge score| between each checkpoint's attribution and the final model's
    (bottom)."""
    from matplotlib.lines import Line2D

    title = f"{model}: circuits against the final model's"
    if df.height == 0:
        return empty_figure(title, "no checkpoint circuit rows (n = 0): nothing to draw")
    panels, lines, subsets = _line_keys(df)
    final = _final_step(df)
    steps = df["step"].drop_nulls().to_list()
    fig, axes = plt.subplots(2, len(panels), squeeze=False, sharex="col",
                             figsize=(3.4 * len(panels) + 0.8, 5.2))
    for j, (task, sem) in enumerate(panels):
        d = _panel(df, task, sem)
        j_ax, r_ax = axes[:, j]
        counts = {"jaccard": 0, "rank_corr": 0}
        for kind, value, color in lines:
            ld = d.filter(pl.col(kind) == value)
            for ax, col in ((j_ax, "jaccard"), (r_ax, "rank_corr")):
                counts[col] += _band_line(ax, ld, col, None, None, color)
            if "overlap_coefficient" in ld.columns:
                _band_line(j_ax, ld, "overlap_coefficient", None, None, color, ls="--",
                           mfc="white")
        j_ax.set_ylim(-0.03, 1.03)
        r_ax.set_ylim(-1.05, 1.05)
        r_ax.axhline(0, color="0.3", lw=0.7)
        j_ax.set_ylabel("edge overlap with the\nfinal minimal circuit" if j == 0 else "")
        r_ax.set_ylabel("Spearman ρ of |edge score|\nwith the final model" if j == 0 else "")
        for ax, col, what in ((j_ax, "jaccard", "no Jaccard: a minimal circuit\nis missing "
                               "at every checkpoint"),
                              (r_ax, "rank_corr", "no rank correlation\n(no edge scores)")):
            if counts[col] == 0:
                note(ax, what)
            _step_axis(ax, steps, final, label_final=ax is j_ax)
        j_ax.set_xlabel("")
        j_ax.set_title(_panel_title(d, task, sem), fontsize=8, pad=12)
    handles = [Line2D([], [], color=c, marker="o", ms=3.5, label=_line_label(kind, v, df))
               for kind, v, c in lines]
    handles += [Line2D([], [], color="0.2", marker="o", ms=3.5, label="Jaccard |A∩B| / |A∪B|"),
                Line2D([], [], color="0.2", marker="o", ms=3.5, ls="--", mfc="white",
                       label="overlap coefficient\n|A∩B| / min(|A|, |B|)"),
                Line2D([], [], color="0.35", ls=":", lw=1, label="final model")]
    fig.suptitle(f"{title}{_subset_note(subsets)} (no interval: one attribution per "
                 "checkpoint)", fontsize=9)
    fig.tight_layout()
    _legend_below(fig, handles, "subset" if lines[0][0] == "subset" else None)
    return fig
