"""The MIB figure (vermem.circuits.mib): faithfulness at MIB's edge fractions and CPR / CMD with
their intervals, per task, subset and direction of the main mode, next to random rankings.
Tables in, figures out."""

from __future__ import annotations

import matplotlib.pyplot as plt
import polars as pl

from vermem.circuits.mib import FRACTIONS
from vermem.core.vocabulary import DIRECTIONS
from vermem.report.figures.common import empty_figure, note


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
    n_rows = len(set(zip(q["task"], q["subset"], strict=True))) * len(DIRECTIONS)
    fig, axes = plt.subplots(1, 3, figsize=(12.5, max(3.6, 0.42 * n_rows + 1.2)),
                             gridspec_kw={"width_ratios": [1, 1, 1.3]})
    keys = sorted(set(zip(q["task"], q["subset"], strict=True)))
    # colour by subset, line style by task: twelve task / subset hues cannot be told apart
    subsets = sorted({k[1] for k in keys})
    tasks = sorted({k[0] for k in keys})
    colors = {k: f"C{subsets.index(k[1]) % 10}" for k in keys}
    styles = {k: ("-", "--", "-.", ":")[tasks.index(k[0]) % 4] for k in keys}
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
                key = (r["task"], r["subset"])
                ax.plot(x, f, color=colors[key], ls=styles[key], lw=1.4, marker="o", ms=2.5,
                        label=f"{r['task'].replace('_', ' ')} / {r['subset']}")
        if d == DIRECTIONS[0]:
            ax.plot([], [], color="0.6", lw=0.8, label="random rankings (mean over seeds)")
    axes[0].set_ylabel("faithfulness F (evaluation pairs)")
    ax = axes[2]
    labels = []
    for i, (k, d) in enumerate((k, d) for k in keys for d in DIRECTIONS):
        by = {r["circuit"]: r for r in q.filter((pl.col("task") == k[0]) & (pl.col("subset")
              == k[1]) & (pl.col("direction") == d)).iter_rows(named=True)}
        labels.append(f"{k[0].replace('_', ' ')}\n{k[1]}, {d}")
        for j, (metric, marker) in enumerate((("cpr", "o"), ("cmd", "s"))):
            for circ, fill in (("attribution", colors[k]), ("random", "none")):
                r = by.get(circ)
                if r is None or r[metric] is None:
                    continue
                lo, hi = r[f"{metric}_lo"], r[f"{metric}_hi"]
                # one document: lo = value = hi up to rounding, never a negative bar
                err = None if lo is None else [[max(0, r[metric] - lo)],
                                               [max(0, hi - r[metric])]]
                ax.errorbar(r[metric], i + 0.18 * (2 * j - 1), xerr=err, fmt=marker, ms=4,
                            color=colors[k], mfc=fill, elinewidth=0.8, capsize=1.5)
    ax.set_yticks(range(len(labels)), labels, fontsize=6.5)
    ax.invert_yaxis()
    ax.set_xlabel("area (CPR: circles, higher is better; CMD: squares, lower is better)",
                  fontsize=7)
    ax.set_title("CPR and CMD, 95% CI (open: random)", fontsize=9)
    n = sorted(set(q["n_pairs"]))
    fig.suptitle((f"{title} (n = {n[0]}-{n[-1]} evaluation pairs per row)"
                  if len(n) > 1 else f"{title} (n = {n[0]} evaluation pairs per row)")
                 + "\nmemorized = threshold label (score ≥ the subset's high threshold); "
                 "control rows: the same construction on non-memorized text",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    handles, names = axes[0].get_legend_handles_labels()
    order = sorted(range(len(names)), key=lambda i: (names[i].startswith("random"), names[i]))
    fig.legend([handles[i] for i in order], [names[i] for i in order], loc="lower center",
               ncol=4, fontsize=7, frameon=False)
    return fig


def methods_figure(quality: pl.DataFrame, agreement: pl.DataFrame, model: str, subset: str):
    """Attribution methods side by side (vermem.circuits.method_comparison): CPR per task and
    direction with
    95% intervals (left), the minimal size with its interval (middle, log axis), and the
    Spearman correlation of |scores| between methods per task (right)."""
    q = quality.filter(pl.col("n_pairs") > 0)
    title = f"{model}: attribution methods compared on {subset}"
    if not q.height or q["cpr"].is_null().all():
        return empty_figure(title, "no evaluation pairs on this subset: no comparison")
    methods = list(dict.fromkeys(q["method"]))
    rows = sorted(set(zip(q["task"], q["direction"], strict=True)))
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.5 + 0.45 * len(rows) * len(methods) / 2 + 2))
    colors = {m: f"C{i}" for i, m in enumerate(methods)}
    labels = []
    for i, (task, d) in enumerate(rows):
        labels.append(f"{task.split('_')[0]} / {d}")
        for j, m in enumerate(methods):
            r = q.filter((pl.col("task") == task) & (pl.col("direction") == d)
                         & (pl.col("method") == m))
            if not r.height:
                continue
            r = r.row(0, named=True)
            y = i + (j - (len(methods) - 1) / 2) * 0.8 / len(methods)
            for ax, key, lo, hi in ((axes[0], "cpr", "cpr_lo", "cpr_hi"),
                                    (axes[1], "k", "k_lo", "k_hi")):
                if r[key] is None:
                    continue
                err = None if r[lo] is None else [[max(0, r[key] - r[lo])],
                                                   [max(0, r[hi] - r[key])]]
                ax.errorbar(r[key], y, xerr=err, fmt="o", ms=4, color=colors[m],
                            elinewidth=0.9, capsize=2, label=m if i == 0 else None)
    for ax in axes[:2]:
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        ax.invert_yaxis()
    axes[0].set_xlabel("CPR (area under F, 0.1-100% of edges; higher is better)", fontsize=8)
    axes[0].set_title("MIB CPR, 95% CI", fontsize=9)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("minimal circuit size k (edges; selection pairs)", fontsize=8)
    axes[1].set_title("minimal size, 95% CI", fontsize=9)
    axes[1].set_yticklabels([])
    ax = axes[2]
    sp = agreement.filter(pl.col("statistic") == "spearman |score|")
    tasks = sorted(set(sp["task"])) if sp.height else []
    if not tasks:
        note(ax, "one method only: no agreement")
    pairs = list(dict.fromkeys(zip(sp["method_a"], sp["method_b"], strict=True)))
    for i, (a, b) in enumerate(pairs):
        for j, task in enumerate(tasks):
            r = sp.filter((pl.col("method_a") == a) & (pl.col("method_b") == b)
                          & (pl.col("task") == task))
            if not r.height or r["value"][0] is None:
                continue
            r = r.row(0, named=True)
            y = i + (j - (len(tasks) - 1) / 2) * 0.35
            ax.errorbar(r["value"], y, xerr=[[max(0, r["value"] - r["value_lo"])],
                                              [max(0, r["value_hi"] - r["value"])]],
                        fmt="s", ms=4, color=f"C{len(methods) + j}", elinewidth=0.9,
                        capsize=2, label=task.replace("_", " ") if i == 0 else None)
    ax.set_yticks(range(len(pairs)), [f"{a} vs {b}" for a, b in pairs], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("Spearman of |scores| (attribution pairs)", fontsize=8)
    ax.set_title("agreement, 95% CI", fontsize=9)
    if tasks:
        ax.legend(fontsize=6.5, loc="lower left")
    n = q.select("task", "n_attribution", "n_selection", "n_pairs").unique().sort("task")
    ns = "; ".join(f"{t.split('_')[0]} {a} / {s} / {e}" for t, a, s, e in n.iter_rows())
    fig.suptitle(f"{title}\n(pairs, attribution / selection / evaluation: {ns}; memorized = "
                 "threshold label)", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(methods), fontsize=7.5,
               frameon=False)
    return fig
