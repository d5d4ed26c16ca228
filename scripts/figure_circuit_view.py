"""Rule figure_circuit_view: the interactive, self-contained HTML view of one task and
subset's circuits (vermem.circuits.view)."""

from pathlib import Path

import polars as pl
from _rule import rule

from vermem.attribution import storage
from vermem.circuits import view
from vermem.core import files

with rule(snakemake):
    minimal = files.read_json(snakemake.input.minimal)
    tensors, meta = storage.load(snakemake.input.scores)
    data = view.payload(minimal, pl.read_parquet(snakemake.input.curve), tensors, meta,
                                snakemake.params.main, snakemake.params.top)
    with files.atomic_path(snakemake.output.view) as tmp:
        Path(tmp).write_text(view.render_html(data), encoding="utf-8")
