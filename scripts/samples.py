"""Rule samples: first prefix + continuation tokens of each candidate, per model."""

import polars as pl
from _rule import rule

from vermem import corpus, io, models

with rule(snakemake) as log:
    p = snakemake.params
    record = io.read_json(snakemake.input.model)
    has_dups = "duplicates" in snakemake.input.keys()
    dups = pl.read_parquet(snakemake.input.duplicates) if has_dups else None
    df, summary = corpus.make_samples(pl.read_parquet(snakemake.input.candidates),
                                      models.load_tokenizer(record), p.prefix_tokens,
                                      p.continuation_tokens, p.samples_per_subset, dups,
                                      p.windows["per_document"], p.windows["stride"],
                                      p.unplanted)
    io.write_parquet(df, snakemake.output.table,
                     io.provenance(p.config, model=record["name"], revision=record["revision"]))
    io.write_json(summary, snakemake.output.summary)
    log.info("samples per subset: %s", summary)
