"""Rule figure_transfer: transfer and overlap heatmaps of a model's minimal circuits."""

import polars as pl
from _rule import rule

from vermem import plots

with rule(snakemake):
    model = snakemake.wildcards.model
    plots.save(plots.transfer_heatmaps(pl.read_parquet(snakemake.input.transfer), model),
               snakemake.output.transfer)
    plots.save(plots.overlap_heatmaps(pl.read_parquet(snakemake.input.overlap), model),
               snakemake.output.overlap)
