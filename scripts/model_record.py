"""Rule model_record: locate a hub or local model (fetching it into the hub cache once) and
check it (config, model_type, weights, context, tokenizer) before any heavy job reads it."""

from _rule import rule

from vermem import io, models

with rule(snakemake) as log:
    record = models.resolve(snakemake.wildcards.model, snakemake.params.spec,
                            tuple(snakemake.params.needs))
    io.write_json(record, snakemake.output.record)
    log.info("%s", record)
