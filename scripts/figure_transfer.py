"""Rule figure_transfer: transfer and overlap heatmaps of a model's minimal circuits, and
cross-task transfer at matched size."""

import polars as pl
from _rule import rule

from vermem import plots, plots_controls

with rule(snakemake):
    model = snakemake.wildcards.model
    plots.save(plots.transfer_heatmaps(pl.read_parquet(snakemake.input.transfer), model,
                                       snakemake.params.transfer_threshold),
               snakemake.output.transfer)
    plots.save(plots.overlap_heatmaps(pl.read_parquet(snakemake.input.overlap), model),
               snakemake.output.overlap)
    plots.save(plots_controls.matched_transfer(pl.read_parquet(snakemake.input.matched), model,
                                               snakemake.params.margin),
               snakemake.output.matched)
