"""Rule pairs: Branch Comparison and Memorization Decision pairs, split 90/10."""

import polars as pl
from _rule import rule

from vermem import contrastive, io, models

with rule(snakemake) as log:
    p = snakemake.params
    record = io.read_json(snakemake.input.model)
    model, _ = models.load(record, p.device)
    pairs, summary = contrastive.build(model, pl.read_parquet(snakemake.input.labels),
                                       pl.read_parquet(snakemake.input.divergence),
                                       p.batch_size, p.seed, p.eval_fraction, p.same_subset)
    io.write_parquet(pairs, snakemake.output.table,
                     io.provenance(p.config, model=record["name"], revision=record["revision"]))
    io.write_json(summary, snakemake.output.summary)
    log.info("%s", summary)
