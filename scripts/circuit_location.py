"""Rule circuit_location: a localized injection's circuits scored against the components
that learned the planted documents (vermem.injection, step 5): recall of them among the
nodes the top edges touch, at the minimal size and MIB's sizes, against random circuits."""

import polars as pl
from _rule import rule
from transformers import AutoConfig

from vermem import attribution, checkpoints, graph, injection, io

with rule(snakemake) as log:
    p = snakemake.params
    record = io.read_json(snakemake.input.model)
    g = graph.Graph(graph.Shape.from_config(AutoConfig.from_pretrained(record["path"])))
    tensors, _ = attribution.load(snakemake.input.scores)
    minimal = io.read_json(snakemake.input.minimal)
    by_dir, ks = {}, {}
    for d in p.directions:
        by_dir[d] = attribution.direction_scores(tensors, d)
        c = checkpoints.main_circuit(minimal, d, p.main)
        ks[d] = None if c is None or c.get("k") is None else int(c["k"])
    nodes = [c.node for c in injection.components(record["trainable"])]
    # attribution pairs 0: the ranking is no ranking (the circuit rule found no curve)
    table = injection.circuit_location(g, by_dir, ks, nodes, level=p.level).with_columns(
        pl.lit(int(minimal.get("attribution_pairs", 0))).alias("attribution_pairs"))
    io.write_parquet(table, snakemake.output.table,
                     io.provenance({"main": p.main}, model=record["name"],
                                   revision=record["revision"]))
    log.info("injected %s; minimal sizes %s\n%s", nodes, ks, table)
