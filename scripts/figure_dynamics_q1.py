"""Rule figure_dynamics_q1: epochs to memorize against each Q1 factor, over all models."""

import polars as pl
from _rule import rule

from vermem.report.figures import common, study_b

with rule(snakemake):
    common.save(study_b.q1_factors(pl.read_parquet(snakemake.input.phases)),
               snakemake.output.figure)
