"""Rule figure_duplicates: memorization rate against duplicate count (model organism)."""

import polars as pl
from _rule import rule

from vermem.report.figures import common, study_a

with rule(snakemake):
    model = snakemake.wildcards.model
    common.save(study_a.rate_by_duplicates(pl.read_parquet(snakemake.input.labels), model),
               snakemake.output.figure)
