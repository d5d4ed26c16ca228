"""Rule figures_dynamics: loss/accuracy curves with H(p), the position x epoch grid of the
example cell, Q2 recall against k, Q3 forgetting, for one model."""

from pathlib import Path

import polars as pl
from _rule import rule

from vermem.report.figures import common, study_b

with rule(snakemake):
    inp, out, model = snakemake.input, snakemake.output, snakemake.wildcards.model
    phases = pl.read_parquet(inp.phases)
    common.save(study_b.dynamics_curves(pl.read_parquet(inp.curves), phases, model), out.curves)
    runs = {}
    for init, path in zip(snakemake.params.inits, inp.examples, strict=True):
        df = pl.read_parquet(path)
        runs[init] = df.filter(pl.col("seed") == df["seed"].min())
    cell = Path(inp.examples[0]).stem
    title = f"{model}: one random string, {study_b.cell_title(cell)} (first seed)"
    common.save(study_b.position_grid(runs, title), out.grid)
    common.save(study_b.q2_context(pl.read_parquet(inp.q2), model), out.q2)
    common.save(study_b.q3_forgetting(pl.read_parquet(inp.sequential), model), out.q3)
