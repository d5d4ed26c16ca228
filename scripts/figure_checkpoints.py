"""Rule figure_checkpoints: memorization and circuits across training checkpoints."""

import polars as pl
from _rule import rule

from vermem import plots

with rule(snakemake):
    model = snakemake.wildcards.model
    memorization = pl.read_parquet(snakemake.input.memorization)
    circuits = pl.read_parquet(snakemake.input.circuits)
    plots.save(plots.checkpoint_memorization(memorization, model), snakemake.output.memorization)
    plots.save(plots.checkpoint_circuits(circuits, model, snakemake.params.target),
               snakemake.output.circuits)
    plots.save(plots.checkpoint_overlap(circuits, model), snakemake.output.overlap)
