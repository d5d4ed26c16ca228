"""Rule figure_duplicates: memorization rate against duplicate count (model organism)."""

import polars as pl
from _rule import rule

from vermem import plots

with rule(snakemake):
    model = snakemake.wildcards.model
    plots.save(plots.rate_by_duplicates(pl.read_parquet(snakemake.input.labels), model),
               snakemake.output.figure)
