"""Rule figure_checkpoints: memorization and circuits across training checkpoints."""

import polars as pl
from _rule import rule

from vermem.report.figures import checkpoints, common

with rule(snakemake):
    model = snakemake.wildcards.model
    memorization = pl.read_parquet(snakemake.input.memorization)
    circuits = pl.read_parquet(snakemake.input.circuits)
    common.save(
        checkpoints.checkpoint_memorization(memorization, model), snakemake.output.memorization
    )
    common.save(checkpoints.checkpoint_circuits(circuits, model, snakemake.params.target),
               snakemake.output.circuits)
    common.save(checkpoints.checkpoint_overlap(circuits, model), snakemake.output.overlap)
