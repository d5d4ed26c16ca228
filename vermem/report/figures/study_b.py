"""Study B's figures: the per-epoch curves with their phases, the position grid, the
factor figure (Q1), context recall (Q2) and forgetting (Q3).
"""

from __future__ import annotations

import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
import seaborn as sns  # noqa: E402

from vermem.report.figures.checkpoints import _span
from vermem.report.figures.common import _pandas

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


def cell_title(cell: str) -> str:
    """'l26-h1-n64' (a Study B grid cell's file name) -> 'alphabet size 26, entropy
    fraction 1, length 64'; a name of another form is returned as it is."""
    import re

    m = re.fullmatch(r"l(\d+)-h([\d.]+)-n(\d+)", cell)
    if m is None:
        return cell
    return (f"alphabet size {m[1]}, H(p) / log(l) = {m[2]}, string length {m[3]}")


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
        ax.set_title(f"init: {name}", fontsize=9)
    fig.suptitle(title + "\n(black: the model's argmax at that position is the true letter)",
                 y=1.06, fontsize=9)
    return fig


def q1_factors(phases: pl.DataFrame):
    """Per Q1 factor (pooling the other factors) and init: the median epochs to memorize
    with never-memorized strings censored at the horizon, the last epoch at which a
    memorized run can start (top; a triangle at the horizon marks a median beyond it, bars
    are the order-statistic 95% interval where n allows one), and the share of strings
    memorized with its Wilson 95% interval (bottom); n strings under each point."""
    from vermem.dynamics.strings import time_to_memorize

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
        n_strings = g["string"].n_unique()
        for s in list(start.values())[1:]:
            ax.axvline(s, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("epoch (all stages)")
        ax.set_title(f"{init} (n = {n_strings} strings in sequence)", fontsize=9)
        ax.set_ylim(-0.03, 1.03)
    if inits:  # beside the panels: inside, the legend covered a curve
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.01, 1), frameon=False,
                        title="string", fontsize=7, title_fontsize=7)
    fig.suptitle(f"{model}: Q3 sequential exposure (dashed: next string; accuracy = share "
                 "of positions whose argmax is the true letter)", y=1.06,
                 fontsize=9)
    return fig
