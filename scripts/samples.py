"""Rule samples: first prefix + continuation tokens of each candidate, per model."""

import polars as pl
from _rule import rule

from vermem.core import files
from vermem.data import corpus
from vermem.models import loading

with rule(snakemake) as log:
    p = snakemake.params
    record = files.read_json(snakemake.input.model)
    has_dups = "duplicates" in snakemake.input.keys()
    dups = pl.read_parquet(snakemake.input.duplicates) if has_dups else None
    df, summary = corpus.make_samples(pl.read_parquet(snakemake.input.candidates),
                                      loading.load_tokenizer(record), p.prefix_tokens,
                                      p.continuation_tokens, p.samples_per_subset, dups,
                                      p.windows["per_document"], p.windows["stride"],
                                      p.unplanted)
    files.write_parquet(df, snakemake.output.table,
                     files.provenance(p.config, model=record["name"], revision=record["revision"]))
    files.write_json(summary, snakemake.output.summary)
    log.info("samples per subset: %s", summary)
