"""Rule checkpoint_final_circuits: the final model's minimal circuits (main mode) evaluated
at one checkpoint on their task's and subset's evaluation pairs, and the clean-minus-corrupt
logit gap there."""

from _rule import minimal_circuits_and_evsets, rule

from vermem.circuits import checkpoints
from vermem.core import files, stats

with rule(snakemake) as log:
    cfg = snakemake.params.config
    record, model, g, found, evsets = minimal_circuits_and_evsets(snakemake,
                                                                  [cfg["main"]["placement"]])
    table = checkpoints.final_circuits(model, g, evsets, found, cfg["directions"],
                                       cfg["main"]["ablation"], range(cfg["random_seeds"]),
                                       cfg["metric"], stats.Bootstrap(**cfg["bootstrap"]),
                                       cfg["circuits_per_forward"], progress=log.info)
    files.write_parquet(table, snakemake.output.table,
                     files.provenance(cfg, model=record["name"], revision=record["revision"]))
    log.info("%s", table)
