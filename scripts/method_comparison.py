"""Rule method_comparison: attribution methods side by side on the main subset, per task:
MIB's CPR and CMD, the minimal circuit, and the methods' agreement
(vermem.circuits.method_comparison)."""

from _rule import evaluation_setup, rule

from vermem.circuits import method_comparison
from vermem.circuits.settings import ComparisonSettings
from vermem.core import files

with rule(snakemake) as log:
    p = snakemake.params
    settings = ComparisonSettings.from_config(p.config)
    record, batch, model, g, pairs = evaluation_setup(snakemake)
    quality, agree = method_comparison.compare_tasks(model, g, pairs, snakemake.input.pairs,
                                                     p.tasks, settings, batch,
                                                     progress=log.info)
    prov = files.provenance(p.config["circuits"], model=record["name"],
                            revision=record["revision"])
    files.write_parquet(quality, snakemake.output.quality, prov)
    files.write_parquet(agree, snakemake.output.agreement, prov)
