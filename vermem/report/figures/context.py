"""Figure of the context dependence of memorized recall (vermem.data.context): the share
of samples whose greedy token is still the memorized one, and the tokens of the
continuation still reproduced, against r, when all but the last r prefix tokens are
replaced by a non-memorized window's (positions kept) or cut off; memorized samples against
their matched controls, with cluster-bootstrap intervals. Tables in, figure out."""

from __future__ import annotations

import polars as pl

from vermem.report.figures.common import note, plt

PANELS = (("target_top1", "top-1 = text's next token"),
          ("clean_top1", "top-1 = clean run's token"),
          ("text_run", "text tokens reproduced"),
          ("clean_run", "clean run's tokens reproduced"))
STYLE = {"memorized": ("C3", "-"), "control": ("C0", "--")}
MODE_MARK = {"replace": "o", "truncate": "s"}


def context_curves(curves: pl.DataFrame, title: str):
    """One panel per measure (`curves`: vermem.data.context.curves): the mean against r
    (log scale) per group (colour) and mode (replace: circles, truncate: squares), the 95%
    interval as bars, the clean prompt's mean as a horizontal line per group."""
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.0 * len(PANELS), 3.3), squeeze=False)
    for ax, (measure, label) in zip(axes[0], PANELS, strict=True):
        d = curves.filter(pl.col("measure") == measure) if curves.height else curves
        if not d.height:
            note(ax, "no samples")
            continue
        for group, (color, ls) in STYLE.items():
            g = d.filter(pl.col("group") == group)
            clean = g.filter(pl.col("mode") == "clean")
            if clean.height:
                ax.axhline(clean["mean"][0], color=color, lw=0.8, ls=":",
                           label=f"{group}, clean (n={clean['n'][0]})")
            for mode, mark in MODE_MARK.items():
                m = g.filter(pl.col("mode") == mode).sort("r")
                if not m.height:
                    continue
                ax.errorbar(m["r"].to_list(), m["mean"].to_list(),
                            yerr=[(m["mean"] - m["low"]).to_list(),
                                  (m["high"] - m["mean"]).to_list()],
                            color=color, ls=ls, marker=mark, ms=3, lw=1, capsize=2,
                            label=f"{group}, {mode}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("r (prefix tokens kept next to the predicted position)")
        ax.set_title(label, fontsize=8)
    axes[0][0].legend(fontsize=5.5, loc="best")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
