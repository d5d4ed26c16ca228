"""Rule circuit_transfer: every task's and subset's minimal circuits (main ablation, every
placement; random circuits of the same size for the main placement) evaluated on every
evaluation pair set, directions paired by meaning (prevention with prevention); overlap
between the main mode's circuits."""

import polars as pl
from _rule import rule

from vermem import circuits, graph, io, models, resources

with rule(snakemake) as log:
    p = snakemake.params
    cfg = p.config
    record = io.read_json(snakemake.input.model)
    # the batch that fits gpu_memory_gb, or a one-line error, before the model is loaded
    batch = resources.circuit_batch(record, snakemake.config, "circuit_transfer")
    model, _ = models.load(record, p.device)
    g = graph.Graph(graph.Shape.from_config(model.config))
    pairs = pl.read_parquet(snakemake.input.pairs)
    records = [io.read_json(f) for f in snakemake.input.minimal]
    found = circuits.main_circuits(g, records, cfg["main"]["ablation"])
    evsets = {}
    for rec in records:
        _, q = circuits.split_sets(pairs, rec["task"], rec["subset"], snakemake.input.pairs,
                                   cfg["max_pairs"], p.seed)
        evsets[rec["task"], rec["subset"]] = circuits.EvalSet.make(
            model, q["clean"].to_list(), q["corrupt"].to_list(), q["answer"].to_list(),
            q["wrong"].to_list(), batch, q["doc_id"].to_list())
    transfer = circuits.transfer(model, g, evsets, found, cfg["main"]["ablation"],
                                 range(cfg["random_seeds"]), cfg["metric"],
                                 circuits.Bootstrap(**cfg["bootstrap"]),
                                 cfg["circuits_per_forward"], [cfg["main"]["placement"]])
    main = {k[:3]: v for k, v in found.items() if k[3] == cfg["main"]["placement"]}
    prov = io.provenance(cfg, model=record["name"], revision=record["revision"])
    io.write_parquet(transfer, snakemake.output.transfer, prov)
    io.write_parquet(circuits.overlap(main), snakemake.output.overlap, prov)
    log.info("%d circuits on %d evaluation sets: %d transfer cells", len(found), len(evsets),
             transfer.height)
