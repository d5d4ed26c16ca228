"""Rule standin_corpus: write the offline Pile-format stand-in shards."""

from _rule import rule

from vermem.core import files
from vermem.data import standin

with rule(snakemake) as log:
    cfg = snakemake.params.standin
    records = standin.build(cfg["domains"], cfg["min_chars"], cfg["max_chars"],
                            cfg["dedup_chars"], snakemake.params.seed)
    standin.write_shards(records, list(snakemake.output.shards))
    files.write_json(standin.summary(records), snakemake.output.summary)
    log.info("%d documents in %d shards", len(records), len(snakemake.output.shards))
