"""Rule pairs: Branch Comparison and Memorization Decision pairs, split by document."""

import polars as pl
from _rule import rule

from vermem import contrastive, io, models

with rule(snakemake) as log:
    p = snakemake.params
    record = io.read_json(snakemake.input.model)
    model, _ = models.load(record, p.device)
    labels = pl.read_parquet(snakemake.input.labels)
    docs = pl.read_parquet(snakemake.input.candidates, columns=["doc_id", "subset"])
    pairs, summary = contrastive.build(model, labels, pl.read_parquet(snakemake.input.divergence),
                                       docs, p.batch_size, p.seed, p.split, p.same_subset)
    for subset in sorted(labels["subset"].unique()):  # n = 0 where nothing got through
        summary["divergence"].setdefault(subset, {"memorized": 0, "with_divergence": 0,
                                                  "memorized_documents": 0})
        for task in (contrastive.BRANCH, contrastive.DECISION):
            summary[task].setdefault(subset, {
                "pairs": 0, "attribution": 0, "selection": 0, "evaluation": 0,
                "documents": {"attribution": 0, "selection": 0, "evaluation": 0},
                "clean_not_preferring_answer": 0, "corrupt_not_preferring_wrong": 0,
                "dropped": {}})
    io.write_parquet(pairs, snakemake.output.table,
                     io.provenance(p.config, model=record["name"], revision=record["revision"]))
    io.write_json(summary, snakemake.output.summary)
    log.info("%s", summary)
