"""Rule model_record: locate a hub or local model (fetching it into the hub cache once) and
check it (config, model_type, weights, context, tokenizer) before any heavy job reads it."""

from _rule import rule

from vermem import io, models

with rule(snakemake) as log:
    name = snakemake.wildcards.model
    # what the config asks of the model (context) is read from the config, not params:
    # a change there must not rewrite the record and rerun everything downstream of it
    record = models.resolve(name, snakemake.params.spec,
                            models.requirements(name, snakemake.config))
    io.write_json(record, snakemake.output.record)
    log.info("%s", record)
