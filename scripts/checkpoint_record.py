"""Rule checkpoint_record: locate one checkpoint of a model (a hub revision, fetched once; a
local subfolder; a snapshot the organism saved) and check it like the model itself."""

from _rule import rule

from vermem import io, models

with rule(snakemake) as log:
    wc = snakemake.wildcards
    record = models.resolve_checkpoint(wc.model, snakemake.params.spec,
                                       io.read_json(snakemake.input.final), wc.ckpt,
                                       models.requirements(wc.model, snakemake.config))
    io.write_json(record, snakemake.output.record)
    log.info("%s", record)
