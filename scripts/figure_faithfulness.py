"""Rule figure_faithfulness: the faithfulness curves and the drawing of the minimal circuits
of each memorization task and subset of a model."""

import polars as pl
from _rule import rule

from vermem.core import files
from vermem.report.figures import circuit_drawing, common, study_a

with rule(snakemake):
    i, o, main = snakemake.input, snakemake.output, snakemake.params.main
    for curve, path, curves, drawing in zip(i.curves, i.minimal, o.curves, o.drawings,
                                            strict=True):
        minimal = files.read_json(path)
        title = f"{minimal['model']}: {minimal['task'].replace('_', ' ')}, {minimal['subset']}"
        common.save(study_a.faithfulness_curves(pl.read_parquet(curve), minimal, title, main),
                    curves)
        common.save(circuit_drawing.circuit_drawing(minimal, main, title), drawing)
