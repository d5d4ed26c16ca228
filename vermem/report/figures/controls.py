"""Figures of Study A's controls: a memorization circuit on memorized and control pairs
(specificity), and cross-task transfer at matched size. Tables in, figures out; nothing is
computed that the tables do not hold."""

from __future__ import annotations

import matplotlib.pyplot as plt
import polars as pl

from vermem.core.vocabulary import MEANINGS, TASKS
from vermem.report.figures.common import empty_figure, note


def _axes(ax, i: int, j: int, xlabel: str, ylabel: str) -> None:
    """A panel of a 2 x 2 grid: log k axis, labels on the outer panels only (one legend for
    the figure, below it: a legend in a panel covers the curves and the random bands)."""
    ax.set_xscale("log")
    if i == 1:
        ax.set_xlabel(xlabel)
    if j == 0:
        ax.set_ylabel(ylabel)


def _done(fig, title: str, ncol: int = 3):
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    handles, labels = {}, []
    for ax in fig.axes:  # one entry per label, in the order first drawn
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in handles:
                handles[label] = h
                labels.append(label)
    if labels:
        fig.legend([handles[x] for x in labels], labels, loc="upper center",
                   bbox_to_anchor=(0.5, 0.0), ncol=ncol, frameon=False, fontsize=7)
    return fig


def _title(task: str) -> str:
    return task.replace("_", " ").capitalize()


def specificity_curves(curves: pl.DataFrame, table: pl.DataFrame, subset: str, model: str,
                       target: float):
    """Per task (rows) and meaning (columns) on `subset`: F of the memorization circuit's
    top-k against k on the memorized evaluation pairs and on the control pairs (95% CI
    shaded), the range of random circuits of the same sizes on each, the target band and
    the minimal size, with the specificity F(memorized) - F(control) at that size."""
    c = curves.filter(pl.col("subset") == subset) if curves.height else curves
    if not c.height:
        return empty_figure(f"{model}: specificity ({subset})",
                            "no memorization circuit with control pairs on this subset")
    fig, axes = plt.subplots(2, 2, figsize=(8.4, 5.6), sharex=True, sharey=True,
                             squeeze=False)
    colors = {"memorized": "C0", "control": "C1"}
    for i, task in enumerate(TASKS):
        for j, meaning in enumerate(MEANINGS):
            ax = axes[i][j]
            d = c.filter((pl.col("task") == task) & (pl.col("semantics") == meaning)
                         & (pl.col("k") > 0))
            ax.set_title(f"{_title(task)}, {meaning}", fontsize=8)
            ax.axhspan(target, 2 - target, color="C2", alpha=0.12, lw=0)
            if not d.height:
                note(ax, "no circuit in the band, or no control pairs")
                continue
            ns = []
            for pairs, color in colors.items():
                rnd = (d.filter((pl.col("pairs") == pairs) & (pl.col("circuit") == "random"))
                       .group_by("k").agg(pl.col("faithfulness").min().alias("lo"),
                                          pl.col("faithfulness").max().alias("hi")).sort("k"))
                if rnd.height > 1:
                    ax.fill_between(rnd["k"], rnd["lo"], rnd["hi"], color=color, alpha=0.10,
                                    lw=0, hatch="...", edgecolor=color,
                                    label=f"random circuits, {pairs} pairs (range)")
                top = d.filter((pl.col("pairs") == pairs)
                               & (pl.col("circuit") == "attribution")).sort("k")
                n = int(top["n_pairs"][0]) if top.height else 0
                ax.fill_between(top["k"], top["faithfulness_lo"].fill_null(float("nan")),
                                top["faithfulness_hi"].fill_null(float("nan")), color=color,
                                alpha=0.25, lw=0)
                ax.plot(top["k"], top["faithfulness"], marker=".", ms=3, color=color,
                        label=f"{pairs} pairs, shaded: 95% CI")
                ns.append(f"{pairs} n = {n}")
            row = table.filter((pl.col("task") == task) & (pl.col("subset") == subset)
                               & (pl.col("semantics") == meaning))
            if row.height:
                r = row.row(0, named=True)
                ax.axvline(r["k"], color="0.3", lw=0.7, ls=":")
                spec = ("n/a" if r["specificity"] is None or r["specificity_lo"] is None else
                        f"{r['specificity']:.2f} [{r['specificity_lo']:.2f}, "
                        f"{r['specificity_hi']:.2f}]")
                ax.text(0.02, 0.97, f"k = {r['k']}: F(mem) - F(ctl) = {spec}\n"
                        + ", ".join(ns), transform=ax.transAxes, fontsize=6.5, va="top")
            _axes(ax, i, j, "circuit size (edges, memorization ranking)", "faithfulness")
    ax.plot([], [], color="0.3", lw=0.7, ls=":", label="minimal size k (selection pairs)")
    ax.fill_between([], [], [], color="C2", alpha=0.25, lw=0,
                    label=f"band [{target:g}, {2 - target:g}]")
    return _done(fig, f"{model}: is the circuit about memorization? {subset}, main mode "
                      "(all panels)\nmemorized pairs: threshold label (score ≥ the subset's "
                      "high threshold); control pairs: the same construction on non-memorized "
                      "text")


def matched_transfer(matched: pl.DataFrame, model: str, margin: float):
    """Per target task (rows) and meaning (columns): F(other task's top-k) - F(own top-k)
    on the target's evaluation pairs against k, one line per subset (95% CI shaded); 0 is
    'as good as the target's own ranking', -margin the claims' margin."""
    if not matched.height:
        return empty_figure(f"{model}: transfer at matched size",
                            "no pair of rankings to compare (no attribution pairs)")
    fig, axes = plt.subplots(2, 2, figsize=(8.4, 5.6), sharex=True, sharey=True,
                             squeeze=False)
    subsets = sorted(matched["subset"].unique().to_list())
    for i, target in enumerate(TASKS):
        other = TASKS[1 - i]
        for j, meaning in enumerate(MEANINGS):
            ax = axes[i][j]
            ax.axhline(0, color="0.3", lw=0.7)
            ax.axhline(-margin, color="0.3", lw=0.7, ls="--")
            d = matched.filter((pl.col("target_task") == target)
                               & (pl.col("semantics") == meaning))
            ax.set_title(f"{_title(other)} ranking on {target.replace('_', ' ')} pairs, "
                         f"{meaning}", fontsize=7.5)
            if not d.height:
                note(ax, "no rankings to compare")
                continue
            ns = []
            for n_, subset in enumerate(subsets):
                s = d.filter(pl.col("subset") == subset).sort("k")
                if not s.height:
                    continue
                ax.fill_between(s["k"], s["gap_lo"].fill_null(float("nan")),
                                s["gap_hi"].fill_null(float("nan")), color=f"C{n_}",
                                alpha=0.2, lw=0)
                ax.plot(s["k"], s["gap"], marker=".", ms=3, color=f"C{n_}", label=subset)
                ns.append(f"{subset}: n = {int(s['n_pairs'][0])}")
            ax.text(0.02, 0.03, "\n".join(ns), transform=ax.transAxes, fontsize=6, va="bottom")
            _axes(ax, i, j, "circuit size k (both rankings)", "F(other's top-k) - F(own top-k)")
    return _done(fig, f"{model}: cross-task transfer at the same size (dashed: -margin "
                      f"{margin:g}; n evaluation pairs in each panel)\nmemorized = threshold "
                      "label (score ≥ the subset's high threshold)")
