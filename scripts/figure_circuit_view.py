"""Rule figure_circuit_view: the interactive, self-contained HTML view of one task and
subset's circuits (vermem.circuit_view)."""

from pathlib import Path

import polars as pl
from _rule import rule

from vermem import attribution, circuit_view, io

with rule(snakemake):
    minimal = io.read_json(snakemake.input.minimal)
    tensors, meta = attribution.load(snakemake.input.scores)
    data = circuit_view.payload(minimal, pl.read_parquet(snakemake.input.curve), tensors, meta,
                                snakemake.params.main, snakemake.params.top)
    with io.atomic_path(snakemake.output.view) as tmp:
        Path(tmp).write_text(circuit_view.render_html(data), encoding="utf-8")
