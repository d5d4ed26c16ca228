"""Rule circuit_location: a localized injection's circuits scored against the components
that learned the planted documents (vermem.models.injection, step 5): recall of them among the
nodes the top edges touch, at the minimal size and MIB's sizes, against random circuits,
with a bootstrap interval over the attribution documents."""

import polars as pl
from _rule import model_graph_pairs, rule

from vermem.attribution import storage
from vermem.circuits import checkpoints, location
from vermem.core import files, stats
from vermem.models import injection
from vermem.workflow import resources

with rule(snakemake) as log:
    p = snakemake.params
    batch = resources.attribution_batch(files.read_json(snakemake.input.model), snakemake.config)
    record, model, g, pairs = model_graph_pairs(snakemake, "attribution")
    tensors, _ = storage.load(snakemake.input.scores)
    minimal = files.read_json(snakemake.input.minimal)
    by_dir, ks = {}, {}
    for d in p.directions:
        by_dir[d] = storage.direction_scores(tensors, d)
        c = checkpoints.main_circuit(minimal, d, p.main)
        ks[d] = None if c is None or c.get("k") is None else int(c["k"])
    # each attribution document's summed scores: a resample of documents ranks their mean
    docs = location.document_scores(model, g, pairs, directions=p.directions,
                                     method=p.attribution["method"],
                                     steps=p.attribution["ig_steps"], metric=p.rank_by,
                                     batch_size=batch, backend=p.attribution["backend"])
    for d, s in docs.items():
        if s.counts.numel():
            gap = float((s.mean().float() - by_dir[d]).abs().max())
            log.info("%s: %d documents, %d pairs; largest difference from the attribution "
                     "file's scores %.2g", d, s.counts.numel(), int(s.counts.sum()), gap)
    nodes = [c.node for c in injection.components(record["trainable"])]
    boot = stats.Bootstrap(**p.bootstrap)
    # attribution pairs 0: the ranking is no ranking (the circuit rule found no curve)
    table = location.circuit_location(g, by_dir, ks, nodes, level=boot.level,
                                       documents=docs, boot=boot).with_columns(
        pl.lit(int(minimal.get("attribution_pairs", 0))).alias("attribution_pairs"))
    mass = location.location_mass(g, docs, nodes, boot)
    prov = files.provenance({"main": p.main, "bootstrap": p.bootstrap}, model=record["name"],
                         revision=record["revision"])
    files.write_parquet(table, snakemake.output.table, prov)
    files.write_parquet(mass, snakemake.output.mass, prov)
    log.info("injected %s; minimal sizes %s\n%s\n%s", nodes, ks, table, mass.drop("replicates"))
