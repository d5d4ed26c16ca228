"""Rule labels: greedy decoding of every sample, three scores, a label per sample."""

import polars as pl
from _rule import rule

from vermem.core import files
from vermem.data import labels
from vermem.models import loading

with rule(snakemake) as log:
    p = snakemake.params
    record = files.read_json(snakemake.input.model)
    model, _ = loading.load(record, p.device)
    samples = pl.read_parquet(snakemake.input.samples)
    gen = labels.generate_all(model, samples["prefix"].to_list(), p.continuation_tokens,
                              p.batch_size, model.device, progress=log.info)
    df = labels.label_samples(samples, gen, p.score, p.thresholds, p.continuation_tokens)
    files.write_parquet(df, snakemake.output.table,
                     files.provenance(p.config, model=record["name"], revision=record["revision"]))
    # every configured subset, n = 0 said rather than left out
    summary = labels.summarize(df, p.subsets)
    for subset in p.subsets:
        if not sum(summary["labels_per_subset"][subset].values()):
            log.warning("subset %r: no samples to label (n = 0; see the samples log)", subset)
    files.write_json(summary, snakemake.output.summary)
    log.info("%s", summary)
