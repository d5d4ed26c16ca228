"""Rule figure_transfer: transfer and overlap heatmaps of a model's minimal circuits, and
cross-task transfer at matched size."""

import polars as pl
from _rule import rule

from vermem.report.figures import common, controls, study_a

with rule(snakemake):
    model = snakemake.wildcards.model
    common.save(study_a.transfer_heatmaps(pl.read_parquet(snakemake.input.transfer), model,
                                       snakemake.params.transfer_threshold),
               snakemake.output.transfer)
    common.save(study_a.overlap_heatmaps(pl.read_parquet(snakemake.input.overlap), model),
               snakemake.output.overlap)
    common.save(controls.matched_transfer(pl.read_parquet(snakemake.input.matched), model,
                                               snakemake.params.margin),
               snakemake.output.matched)
