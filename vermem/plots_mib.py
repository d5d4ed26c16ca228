"""The MIB figure (vermem.mib): faithfulness at MIB's edge fractions and CPR / CMD with
their intervals, per task, subset and direction of the main mode, next to random rankings.
Tables in, figures out."""

from __future__ import annotations

import matplotlib.pyplot as plt
import polars as pl

from .mib import FRACTIONS
from .plots import empty_figure, note

DIRECTIONS = ("noising", "denoising")


def mib_figure(table: pl.DataFrame, model: str, main: dict):
    """Left two panels: F against the share of edges (log axis; the areas are taken on a
    linear axis, as MIB's) for each task and subset, random rankings in grey, one panel per
    direction. Right: CPR and CMD per task / subset / direction with 95% intervals, the
    random rankings' as open markers."""
    q = table.filter((pl.col("placement") == main["placement"])
                     & (pl.col("ablation") == main["ablation"]) & (pl.col("n_pairs") > 0))
    title = f"{model}: MIB scores, main mode {main['placement']}/{main['ablation']}"
    if not q.height or q["cpr"].is_null().all():
        return empty_figure(title, "no evaluation pairs: no MIB scores")
    fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.6), gridspec_kw={"width_ratios": [1, 1, 1.3]})
    keys = sorted(set(zip(q["task"], q["subset"], strict=True)))
    colors = {k: f"C{i}" for i, k in enumerate(keys)}
    x = [100 * f for f in FRACTIONS]
    for ax, d in zip(axes[:2], DIRECTIONS, strict=True):
        rows = q.filter(pl.col("direction") == d)
        ax.set_title(d, fontsize=9)
        ax.set_xscale("log")
        ax.set_xlabel("edges in the circuit (% of all)")
        ax.axhline(1, color="0.6", lw=0.6, ls=":")
        if not rows.height:
            note(ax, f"no {d} scores")
            continue
        for r in rows.iter_rows(named=True):
            f = r["faithfulness"]
            if r["circuit"] == "random":
                ax.plot(x, f, color="0.6", lw=0.8, label=None)
            else:
                ax.plot(x, f, color=colors[(r["task"], r["subset"])], lw=1.4, marker="o",
                        ms=2.5, label=f"{r['task'].replace('_', ' ')} / {r['subset']}")
        if d == DIRECTIONS[0]:
            ax.plot([], [], color="0.6", lw=0.8, label="random rankings (mean over seeds)")
    axes[0].set_ylabel("faithfulness F (evaluation pairs)")
    ax = axes[2]
    labels = []
    for i, (k, d) in enumerate((k, d) for k in keys for d in DIRECTIONS):
        by = {r["circuit"]: r for r in q.filter((pl.col("task") == k[0]) & (pl.col("subset")
              == k[1]) & (pl.col("direction") == d)).iter_rows(named=True)}
        labels.append(f"{k[0].split('_')[0]} / {k[1]} / {d[:3]}")
        for j, (metric, marker) in enumerate((("cpr", "o"), ("cmd", "s"))):
            for circ, fill in (("attribution", colors[k]), ("random", "none")):
                r = by.get(circ)
                if r is None or r[metric] is None:
                    continue
                lo, hi = r[f"{metric}_lo"], r[f"{metric}_hi"]
                err = None if lo is None else [[r[metric] - lo], [hi - r[metric]]]
                ax.errorbar(r[metric], i + 0.18 * (2 * j - 1), xerr=err, fmt=marker, ms=4,
                            color=colors[k], mfc=fill, elinewidth=0.8, capsize=1.5)
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("area (CPR: circles, higher is better; CMD: squares, lower is better)",
                  fontsize=7)
    ax.set_title("CPR and CMD, 95% CI (open: random)", fontsize=9)
    n = sorted(set(q["n_pairs"]))
    fig.suptitle(f"{title} (n = {n[0]}-{n[-1]} evaluation pairs per row)"
                 if len(n) > 1 else f"{title} (n = {n[0]} evaluation pairs per row)", fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=4, fontsize=7, frameon=False)
    return fig
