"""Rule pairs: Branch Comparison and Memorization Decision pairs, split by document."""

import polars as pl
from _rule import rule

from vermem.core import files
from vermem.data import contrastive
from vermem.data.settings import PairSettings
from vermem.models import loading

with rule(snakemake) as log:
    p = snakemake.params
    record = files.read_json(snakemake.input.model)
    model, _ = loading.load(record, p.device)
    labels = pl.read_parquet(snakemake.input.labels)
    docs = pl.read_parquet(snakemake.input.candidates, columns=["doc_id", "subset"])
    strata = None  # an organism's split is stratified by how often each document was seen
    if "duplicates" in snakemake.input.keys():
        dup = pl.read_parquet(snakemake.input.duplicates, columns=["doc_id", "dup_count"])
        strata = dict(zip(dup["doc_id"], dup["dup_count"], strict=True))
    pairs, summary = contrastive.build(model, labels, pl.read_parquet(snakemake.input.divergence),
                                       docs, PairSettings.from_config(p.config), strata)
    files.write_parquet(pairs, snakemake.output.table, files.provenance(
        p.config["contrastive"], model=record["name"], revision=record["revision"]))
    files.write_json(summary, snakemake.output.summary)
    log.info("%s", summary)
