"""Rule checkpoint_record: locate one checkpoint of a model (a hub revision, fetched once; a
local subfolder; a snapshot the organism saved) and check it like the model itself."""

from _rule import rule

from vermem.core import files
from vermem.models import loading

with rule(snakemake) as log:
    wc = snakemake.wildcards
    record = loading.resolve_checkpoint(wc.model, snakemake.params.spec,
                                       files.read_json(snakemake.input.final), wc.ckpt,
                                       loading.requirements(wc.model, snakemake.config))
    files.write_json(record, snakemake.output.record)
    log.info("%s", record)
