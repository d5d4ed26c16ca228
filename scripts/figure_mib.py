"""Rule figure_mib: MIB's CPR and CMD of every task and subset's ranking (vermem.plots_mib)."""

import polars as pl
from _rule import rule

from vermem import plots, plots_mib

with rule(snakemake):
    table = pl.concat([pl.read_parquet(f) for f in snakemake.input.mib])
    plots.save(plots_mib.mib_figure(table, snakemake.wildcards.model, snakemake.params.main),
               snakemake.output.figure)
