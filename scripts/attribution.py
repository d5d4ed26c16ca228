"""Rule attribution: edge scores of one task, subset and metric over its attribution pairs."""

import polars as pl
from _rule import rule

from vermem import attribution, graph, io, models

with rule(snakemake) as log:
    p, wc = snakemake.params, snakemake.wildcards
    cfg = p.config
    record = io.read_json(snakemake.input.model)
    model, _ = models.load(record, p.device)
    g = graph.Graph(graph.Shape.from_config(model.config))
    pairs = pl.read_parquet(snakemake.input.pairs).filter(
        (pl.col("task") == wc.task) & (pl.col("subset") == p.subset)
        & (pl.col("split") == "attribution"))
    if pairs.height == 0:
        log.warning("no attribution pairs for %s / %s: scores are all zero", wc.task, p.subset)
    scores, n = attribution.run(model, g, pairs["clean"].to_list(), pairs["corrupt"].to_list(),
                                pairs["answer"].to_list(), pairs["wrong"].to_list(),
                                cfg["method"], cfg["ig_steps"], wc.metric, cfg["batch_size"],
                                cfg["backend"])
    meta = {"model": record["name"], "revision": record["revision"], "task": wc.task,
            "subset": p.subset, "metric": wc.metric, "method": cfg["method"],
            "ig_steps": cfg["ig_steps"], "n_examples": n, "n_edges": g.n_edges,
            "provenance": io.provenance(cfg, model=record["name"])}
    attribution.save(snakemake.output.scores, g, scores, meta)
    log.info("%d pairs, %d edges, top |score| %.4g", n, g.n_edges, float(scores.abs().max()))
