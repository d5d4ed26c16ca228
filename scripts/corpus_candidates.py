"""Rule corpus_candidates: one scan of the Pile shards, a seeded candidate pool per subset."""

from _rule import rule

from vermem.core import files
from vermem.data import corpus

with rule(snakemake) as log:
    p = snakemake.params
    df, report = corpus.scan_candidates(list(snakemake.input.shards), p.subsets,
                                        p.candidates_per_subset, p.seed,
                                        p.max_malformed_fraction)
    files.write_parquet(df, snakemake.output.table, files.provenance(p.config))
    files.write_json(report.as_dict(), snakemake.output.report)
    log.info("%d candidates; ingest: %s", df.height, report.as_dict())
