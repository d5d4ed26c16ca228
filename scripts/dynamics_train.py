"""Rule dynamics_train: every seed's string of one grid cell, each on a fresh copy of the
model (pretrained or randomly initialised): per-epoch, per-position metrics, and the Q2
context conditions at the configured epochs (evaluated in training, no checkpoints;
vermem.dynamics.strings.train_cell)."""

import polars as pl
from _rule import rule

from vermem.core import files
from vermem.dynamics import strings
from vermem.models import loading

with rule(snakemake) as log:
    p, wc, out = snakemake.params, snakemake.wildcards, snakemake.output
    dyn = p.config
    record = files.read_json(snakemake.input.model)
    device = loading.pick_device(p.device)
    rows = pl.read_parquet(snakemake.input.strings).filter(
        (pl.col("study") == "q1") & (pl.col("string_id") == wc.cell)).sort("seed")
    if device.type == "cuda":
        n_params = record.get("n_params") or strings.count_params(record["path"])
        strings.check_memory(wc.model, n_params, snakemake.config["gpu_memory_gb"],
                             dyn["training"]["memory_margin"])
    curves, q2 = strings.train_cell(record["path"], wc.init, rows, dyn, device,
                                    progress=log.info)
    prov = files.provenance(dyn, model=wc.model, revision=record["revision"], init=wc.init,
                            string_id=wc.cell)
    cell = pl.lit(wc.cell).alias("string_id")
    files.write_parquet(curves.select(cell, pl.all()), out.curves, prov)
    files.write_parquet(q2.select(cell, pl.all()), out.q2, prov)
