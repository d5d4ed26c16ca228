"""Rule figure_dynamics_q1: epochs to memorize against each Q1 factor, over all models."""

import polars as pl
from _rule import rule

from vermem import plots

with rule(snakemake):
    plots.save(plots.q1_factors(pl.read_parquet(snakemake.input.phases)),
               snakemake.output.figure)
