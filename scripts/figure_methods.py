"""Rule figure_methods: attribution methods side by side (vermem.plots_mib)."""

import polars as pl
from _rule import rule

from vermem import plots, plots_mib

with rule(snakemake):
    plots.save(plots_mib.methods_figure(pl.read_parquet(snakemake.input.quality),
                                        pl.read_parquet(snakemake.input.agreement),
                                        snakemake.wildcards.model, snakemake.params.main_subset),
               snakemake.output.figure)
