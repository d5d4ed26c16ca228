"""Rule checkpoint_final_circuits: the final model's minimal circuits (main mode) evaluated
at one checkpoint on their task's and subset's evaluation pairs, and the clean-minus-corrupt
logit gap there."""

from _rule import minimal_circuits_and_evsets, rule

from vermem.circuits import checkpoints
from vermem.circuits.settings import FinalCircuitSettings
from vermem.core import files

with rule(snakemake) as log:
    cfg = snakemake.params.config
    st = FinalCircuitSettings.from_config(cfg)
    record, model, g, found, evsets, _ = minimal_circuits_and_evsets(snakemake, st,
                                                                     [st.placement])
    table = checkpoints.final_circuits(model, g, evsets, found, st, progress=log.info)
    files.write_parquet(table, snakemake.output.table, files.provenance(
        cfg["circuits"], model=record["name"], revision=record["revision"]))
    log.info("%s", table)
