"""Rule figure_circuit_view: the interactive, self-contained HTML view of the circuits of
each memorization task and subset of a model (vermem.circuits.view)."""

from pathlib import Path

import polars as pl
from _rule import rule

from vermem.attribution import storage
from vermem.circuits import view
from vermem.core import files

with rule(snakemake):
    i, p = snakemake.input, snakemake.params
    for curve, path, scores, out in zip(i.curves, i.minimal, i.scores, snakemake.output.views,
                                        strict=True):
        tensors, meta = storage.load(scores)
        data = view.payload(files.read_json(path), pl.read_parquet(curve), tensors, meta,
                            p.main, p.top)
        with files.atomic_path(out) as tmp:
            Path(tmp).write_text(view.render_html(data), encoding="utf-8")
