"""Rule figure_faithfulness: faithfulness curves and the drawing of the minimal circuits."""

import polars as pl
from _rule import rule

from vermem.core import files
from vermem.report.figures import circuit_drawing, common, study_a

with rule(snakemake):
    minimal = files.read_json(snakemake.input.minimal)
    title = f"{minimal['model']}: {minimal['task'].replace('_', ' ')}, {minimal['subset']}"
    common.save(study_a.faithfulness_curves(pl.read_parquet(snakemake.input.curve), minimal, title,
                                         snakemake.params.main),
               snakemake.output.curves)
    common.save(circuit_drawing.circuit_drawing(minimal, snakemake.params.main, title),
               snakemake.output.drawing)
