"""Rule checkpoint_samples: the fixed sample set every checkpoint of a model is labelled on."""

import polars as pl
from _rule import rule

from vermem.circuits import checkpoints
from vermem.core import files

with rule(snakemake) as log:
    p = snakemake.params
    samples = checkpoints.sample_set(pl.read_parquet(snakemake.input.samples), p.per_group,
                                     p.seed)
    files.write_parquet(samples, snakemake.output.samples,
                     files.provenance({"per_group": p.per_group, "seed": p.seed}))
    log.info("%d samples (one per document) of %d documents", samples.height,
             samples["doc_id"].n_unique())
