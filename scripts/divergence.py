"""Rule divergence: the divergence point of every memorized sample."""

import polars as pl
from _rule import rule

from vermem.core import files
from vermem.data import divergence
from vermem.models import loading

with rule(snakemake) as log:
    p = snakemake.params
    record = files.read_json(snakemake.input.model)
    model, _ = loading.load(record, p.device)
    df = divergence.run(model, pl.read_parquet(snakemake.input.labels), p.prefix_tokens,
                        p.batch_size, p.drop, p.epsilon, progress=log.info)
    files.write_parquet(df, snakemake.output.table,
                     files.provenance(p.config, model=record["name"], revision=record["revision"]))
    log.info("%d memorized, %d with a divergence point, %d generation calls",
             df.height, df["d"].is_not_null().sum(), df["generations"].sum())
