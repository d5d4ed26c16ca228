"""Checkpoint figures: memorization, circuit size and faithfulness, and circuit overlap
along a model's training axis.
"""

from __future__ import annotations

import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
import seaborn as sns  # noqa: E402

from vermem.circuits.checkpoints import defined
from vermem.core.vocabulary import MEANINGS, TASKS
from vermem.report.figures.common import empty_figure, note
from vermem.report.figures.study_a import MEMORIZED_LABEL

# -- checkpoints: memorization and circuits across training ------------------------------------


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
               label: str | None = None, marker: str = "o", **line) -> int:
    """`y` against step with markers, points where `y` is null skipped, and the [lo, hi]
    interval shaded (a gap where it is null); returns the number of points drawn."""
    d = d.filter(pl.col("step").is_not_null()).sort("step")
    if lo is not None and hi is not None:
        ax.fill_between(d["step"].to_list(), _values(d, lo), _values(d, hi), color=color,
                        alpha=0.18, lw=0)
    d = d.filter(pl.col(y).is_not_null() & pl.col(y).is_not_nan())
    line.setdefault("ms", 3.5)
    ax.plot(d["step"].to_list(), d[y].to_list(), marker=marker, color=color, label=label,
            **line)
    return d.height


def _bar_line(ax, d: pl.DataFrame, color, dodge: float, marker: str) -> int:
    """The share memorized against step with its Wilson interval as error bars (bands of
    several groups overlap into one block), drawn `dodge` points to the side so that the
    bars of groups at the same step stay apart; returns the number of points drawn."""
    from matplotlib.transforms import offset_copy

    d = d.filter(pl.col("step").is_not_null() & pl.col("share").is_not_null()).sort("step")
    if not d.height:
        return 0
    y = d["share"].to_list()
    lo, hi = d["share_lo"].fill_null(d["share"]), d["share_hi"].fill_null(d["share"])
    err = [[max(0.0, a - b) for a, b in zip(y, lo, strict=True)],
           [max(0.0, b - a) for a, b in zip(y, hi, strict=True)]]
    shift = offset_copy(ax.transData, fig=ax.figure, x=dodge, y=0, units="points")
    ax.errorbar(d["step"].to_list(), y, yerr=err, marker=marker, ms=4, capsize=2.5, lw=1,
                elinewidth=0.9, color=color, transform=shift)
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
    from matplotlib.lines import Line2D

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
    handles = []  # in group order, a group without points (n = 0) included
    for g in groups:
        rows = d.filter(pl.col("group") == g).sort("step")
        last = rows.filter(pl.col("final")) if rows["final"].any() else rows.tail(1)
        n = int(last["n"].fill_null(0).max())
        total += n
        marker = _MARKERS[groups.index(g) % len(_MARKERS)]
        drawn += _bar_line(ax, rows, colors[g], (groups.index(g) - (len(groups) - 1) / 2) * 4.0,
                           marker)
        handles.append(Line2D([], [], color=colors[g], marker=marker, ms=4,
                              label=f"{names[g]} (n = {n})"))
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
    _legend_outside(ax, handles, title="duplicate count" if by == "dup_count" else "subset",
                    title_fontsize=7)
    n_ck = d["checkpoint"].n_unique()
    ax.set_title(f"{title}\nmemorized = threshold label (score ≥ the subset's high "
                 "threshold) on each document's start window\n"
                 f"({n_ck} points, n = {total} documents, one sample each; "
                 "bars: Wilson 95%, set a few points apart"
                 + ("; below: bootstrap 95% over documents" if graded else "") + ")",
                 fontsize=9, pad=12)
    return fig


def _line_keys(df: pl.DataFrame):
    """(panels, lines) of the checkpoint circuit figures: with one subset, a column per
    task and a line per semantics; with several, a column per task and semantics and a line
    per subset (six lines with their intervals in one panel do not read)."""
    tasks = _ordered(df["task"].to_list(), TASKS)
    semantics = _ordered(df["semantics"].to_list(), MEANINGS)
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
            for t in _ordered(d["task"].to_list(), TASKS)
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
        d, undefined = _defined_only(_panel(df, task, sem))
        k_ax, f_ax, g_ax = axes[:, j]
        n_k = n_f = n_g = 0
        ks = [v for c in ("k", "k_lo", "k_hi") for v in d[c].drop_nulls().to_list() if v > 0]
        fs = [v for c in ("final_faithfulness", "final_faithfulness_lo",
                          "final_faithfulness_hi", "final_random_faithfulness")
              for v in d[c].drop_nulls().to_list() if np.isfinite(v)]
        f_min = max(lo_f, min([-0.1, *fs]))
        f_max = min(hi_f, max([2 - target + 0.1, *fs]))
        shared_gap = _same_gap(d, lines)
        any_shared |= shared_gap
        for i, (kind, value, color) in enumerate(lines):
            ld = d.filter(pl.col(kind) == value).filter(pl.col("step").is_not_null())
            if ld.height == 0:
                continue
            # every point at its own step (no offset); the lines told apart by marker, and
            # F left out where it means nothing (the model does not tell clean from corrupt)
            marker = _MARKERS[i % len(_MARKERS)]
            kd = ld.filter(pl.col("k").is_not_null()).sort("step")
            if kd.height:
                k = np.array(kd["k"].to_list())
                err = [np.maximum(0, k - np.array(kd["k_lo"].fill_null(kd["k"]).to_list())),
                       np.maximum(0, np.array(kd["k_hi"].fill_null(kd["k"]).to_list()) - k)]
                k_ax.errorbar(kd["step"].to_list(), k, yerr=err, marker=marker,
                              ms=7 - 2.5 * min(i, 2), capsize=5 - 2 * min(i, 2), color=color,
                              lw=1, zorder=3 + i)
                n_k += kd.height
            n_f += _band_line(f_ax, ld, "final_faithfulness", "final_faithfulness_lo",
                              "final_faithfulness_hi", color, marker=marker,
                              ms=7 - 2.5 * min(i, 2), zorder=3 + i)
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
        _undefined_note(f_ax, undefined)
        same = _coinciding(d, lines, ("k", "k_lo", "k_hi", "final_faithfulness"))
        if same:
            k_ax.text(0.01, 0.98, same, transform=k_ax.transAxes, fontsize=6, color="0.3",
                      va="top", wrap=True)
        k_ax.set_title(_panel_title(d, task, sem), fontsize=8, pad=12)
    handles = [Line2D([], [], color=c, marker=_MARKERS[i % len(_MARKERS)],
                      ms=7 - 2.5 * min(i, 2), label=_line_label(kind, v, df))
               for i, (kind, v, c) in enumerate(lines)]
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


# the lines of a checkpoint panel: told apart by marker (filled, open) as well as colour,
# since they sit at the same steps and often at the same values
_MARKERS = ("o", "s", "D", "P")  # not the triangles of the beyond-the-axis marks
# what means nothing at a step where the model does not tell the clean run from the corrupt
# one (vermem.circuits.checkpoints.defined): the circuit found there and the final circuit's F
_UNDEFINED_COLUMNS = ("k", "k_lo", "k_hi", "faithfulness", "faithfulness_lo",
                      "faithfulness_hi", "final_faithfulness", "final_faithfulness_lo",
                      "final_faithfulness_hi", "final_random_faithfulness", "jaccard",
                      "overlap_coefficient")


def _defined_only(d: pl.DataFrame) -> tuple[pl.DataFrame, list[int]]:
    """`d` with the sizes, F and overlaps nulled at the steps where F is undefined (the
    checkpoint summary's `undefined`: no logit gap, or its interval contains 0), and those
    steps: nothing is drawn there."""
    ok = pl.Series([defined(r) for r in d.iter_rows(named=True)], dtype=pl.Boolean)
    cols = [c for c in _UNDEFINED_COLUMNS if c in d.columns]
    undefined = sorted({int(s) for s, o in zip(d["step"], ok, strict=True)
                        if not o and s is not None})
    return (d.with_columns(pl.when(ok).then(pl.col(c)).otherwise(None).alias(c)
                           for c in cols), undefined)


def _undefined_note(ax, undefined: list[int]) -> None:
    if undefined:
        ax.text(0.01, 0.02, "F undefined (not drawn) at step " + ", ".join(map(str, undefined)),
                transform=ax.transAxes, fontsize=6, color="0.3", va="bottom")


def _coinciding(d: pl.DataFrame, lines, columns) -> str:
    """A note naming the lines of a panel whose values agree at every step in every one of
    `columns` (they are drawn on top of each other), '' when none do."""
    if len(lines) < 2:
        return ""
    kind = lines[0][0]
    cols = [c for c in columns if c in d.columns]

    def values(v):
        g = d.filter(pl.col(kind) == v).sort("step")
        return [(s, *[None if x is None else round(float(x), 9) for x in r])
                for s, *r in g.select("step", *cols).iter_rows()]
    first = values(lines[0][1])
    same = [v for _, v, _ in lines[1:] if first and values(v) == first]
    return (f"{' and '.join([lines[0][1], *same])}: the same\nvalues at every step "
            "(drawn on top of each other)") if same else ""


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
        d, undefined = _defined_only(_panel(df, task, sem))
        j_ax, r_ax = axes[:, j]
        counts = {"jaccard": 0, "rank_corr": 0}
        for i, (kind, value, color) in enumerate(lines):
            ld = d.filter(pl.col(kind) == value)
            # lines that coincide stay visible: the first drawn largest, the next smaller
            # on top with another marker
            style = {"marker": _MARKERS[i % len(_MARKERS)], "ms": 7 - 2.5 * min(i, 2),
                     "zorder": 3 + i}
            for ax, col in ((j_ax, "jaccard"), (r_ax, "rank_corr")):
                counts[col] += _band_line(ax, ld, col, None, None, color, **style)
            if "overlap_coefficient" in ld.columns:
                _band_line(j_ax, ld, "overlap_coefficient", None, None, color, ls="--",
                           mfc="white", **style)
        for ax, cols, y in ((j_ax, ("jaccard", "overlap_coefficient"), 0.12),
                            (r_ax, ("rank_corr",), 0.02)):  # each row on its own
            same = _coinciding(d, lines, cols)
            if same:
                ax.text(0.01, y, same, transform=ax.transAxes, fontsize=6, color="0.3",
                        va="bottom")
        _undefined_note(j_ax, undefined)
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
    handles = [Line2D([], [], color=c, marker=_MARKERS[i % len(_MARKERS)],
                      ms=7 - 2.5 * min(i, 2), label=_line_label(kind, v, df))
               for i, (kind, v, c) in enumerate(lines)]
    handles += [Line2D([], [], color="0.2", marker="o", ms=3.5, label="Jaccard |A∩B| / |A∪B|"),
                Line2D([], [], color="0.2", marker="o", ms=3.5, ls="--", mfc="white",
                       label="overlap coefficient\n|A∩B| / min(|A|, |B|)"),
                Line2D([], [], color="0.35", ls=":", lw=1, label="final model")]
    fig.suptitle(f"{title}{_subset_note(subsets)} (no interval: one attribution per "
                 "checkpoint)", fontsize=9)
    fig.tight_layout()
    _legend_below(fig, handles, "subset" if lines[0][0] == "subset" else None)
    return fig
