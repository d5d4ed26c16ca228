"""Rule figure_context_dependence: the context-dependence curves, memorized against
control (vermem.report.figures.context)."""

import polars as pl
from _rule import rule

from vermem.report.figures import common
from vermem.report.figures.context import context_curves

with rule(snakemake):
    curves = pl.read_parquet(snakemake.input.curves)
    title = f"{snakemake.wildcards.model}: context dependence"
    common.save(context_curves(curves, title), snakemake.output.figure)
