"""Rule figure_methods: attribution methods side by side (vermem.report.figures.method_scores)."""

import polars as pl
from _rule import rule

from vermem.report.figures import common, method_scores

with rule(snakemake):
    common.save(method_scores.methods_figure(pl.read_parquet(snakemake.input.quality),
                                        pl.read_parquet(snakemake.input.agreement),
                                        snakemake.wildcards.model, snakemake.params.main_subset),
               snakemake.output.figure)
