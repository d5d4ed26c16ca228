"""Rule figure_faithfulness: faithfulness curves and the drawing of the minimal circuits."""

import polars as pl
from _rule import rule

from vermem import io, plots

with rule(snakemake):
    minimal = io.read_json(snakemake.input.minimal)
    title = f"{minimal['model']}: {minimal['task'].replace('_', ' ')}, {minimal['subset']}"
    plots.save(plots.faithfulness_curves(pl.read_parquet(snakemake.input.curve), minimal, title),
               snakemake.output.curves)
    plots.save(plots.circuit_drawing(minimal, snakemake.params.main, title),
               snakemake.output.drawing)
