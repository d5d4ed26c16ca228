"""Rule figure_specificity: the memorization circuits on memorized and control pairs, and
cross-task transfer at matched size (vermem.report.figures.controls)."""

import polars as pl
from _rule import rule

from vermem.report.figures import common, controls

with rule(snakemake):
    p, model = snakemake.params, snakemake.wildcards.model
    common.save(controls.specificity_curves(
        pl.read_parquet(snakemake.input.curves), pl.read_parquet(snakemake.input.table),
        p.main_subset, model, p.target), snakemake.output.specificity)
