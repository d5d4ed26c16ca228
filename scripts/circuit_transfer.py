"""Rule circuit_transfer: every task's and subset's minimal circuit (main placement and
ablation) evaluated on every held-out pair set; overlap between the circuits."""

import polars as pl
from _rule import rule

from vermem import circuits, graph, io, models

with rule(snakemake) as log:
    p = snakemake.params
    cfg = p.config
    record = io.read_json(snakemake.input.model)
    model, _ = models.load(record, p.device)
    g = graph.Graph(graph.Shape.from_config(model.config))
    pairs = pl.read_parquet(snakemake.input.pairs).filter(pl.col("split") == "evaluation")
    found = circuits.main_circuits(g, [io.read_json(f) for f in snakemake.input.minimal],
                                   cfg["main"])
    evsets = {}
    for rec in map(io.read_json, snakemake.input.minimal):
        q = pairs.filter((pl.col("task") == rec["task"]) & (pl.col("subset") == rec["subset"]))
        evsets[rec["task"], rec["subset"]] = circuits.EvalSet.make(
            model, q["clean"].to_list(), q["corrupt"].to_list(), q["answer"].to_list(),
            q["wrong"].to_list(), cfg["batch_size"])
    transfer = circuits.transfer(model, g, evsets, found, cfg["main"],
                                 range(cfg["random_seeds"]), cfg["metric"])
    prov = io.provenance(cfg, model=record["name"], revision=record["revision"])
    io.write_parquet(transfer, snakemake.output.transfer, prov)
    io.write_parquet(circuits.overlap(found), snakemake.output.overlap, prov)
    log.info("%d circuits on %d evaluation sets", len(found), len(evsets))
