"""Rule model_record: locate a hub or local model (fetching it into the hub cache once) and
check it (config, model_type, weights, context, tokenizer) before any heavy job reads it."""

from _rule import rule

from vermem.core import files
from vermem.models import loading

with rule(snakemake) as log:
    name = snakemake.wildcards.model
    # what the config asks of the model (context) is read from the config, not params:
    # a change there must not rewrite the record and rerun everything downstream of it
    record = loading.resolve(name, snakemake.params.spec,
                            loading.requirements(name, snakemake.config),
                            **loading.uses(name, snakemake.config))
    files.write_json(record, snakemake.output.record)
    log.info("%s", record)
