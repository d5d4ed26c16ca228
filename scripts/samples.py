"""Rule samples: first prefix + continuation tokens of each candidate, per model."""

import polars as pl
from _rule import rule

from vermem.core import files
from vermem.data import corpus
from vermem.data.settings import SampleSettings
from vermem.models import loading

with rule(snakemake) as log:
    p = snakemake.params
    record = files.read_json(snakemake.input.model)
    has_dups = "duplicates" in snakemake.input.keys()
    dups = pl.read_parquet(snakemake.input.duplicates) if has_dups else None
    settings = SampleSettings.from_config(p.config)
    df, summary = corpus.make_samples(pl.read_parquet(snakemake.input.candidates),
                                      loading.load_tokenizer(record), settings, dups)
    files.write_parquet(df, snakemake.output.table, files.provenance(
        settings.section, model=record["name"], revision=record["revision"]))
    files.write_json(summary, snakemake.output.summary)
    log.info("samples per subset: %s", summary)
