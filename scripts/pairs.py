"""Rule pairs: Branch Comparison and Memorization Decision pairs, split 90/10."""

import polars as pl
from _rule import rule

from vermem import contrastive, io, models

with rule(snakemake) as log:
    p = snakemake.params
    record = io.read_json(snakemake.input.model)
    model, _ = models.load(record, p.device)
    labels = pl.read_parquet(snakemake.input.labels)
    pairs, summary = contrastive.build(model, labels, pl.read_parquet(snakemake.input.divergence),
                                       p.batch_size, p.seed, p.eval_fraction, p.same_subset)
    for subset in sorted(labels["subset"].unique()):  # n = 0 where nothing got through
        summary["divergence"].setdefault(subset, {"memorized": 0, "with_divergence": 0})
        for task in (contrastive.BRANCH, contrastive.DECISION):
            summary[task].setdefault(subset, {
                "pairs": 0, "attribution": 0, "evaluation": 0,
                "clean_not_preferring_answer": 0, "corrupt_not_preferring_wrong": 0,
                "dropped": {}})
    io.write_parquet(pairs, snakemake.output.table,
                     io.provenance(p.config, model=record["name"], revision=record["revision"]))
    io.write_json(summary, snakemake.output.summary)
    log.info("%s", summary)
