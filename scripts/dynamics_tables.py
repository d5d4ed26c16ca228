"""Rule dynamics_tables: per-epoch curves, phase boundaries, the Q1 table, Q2 accuracy per
condition and k, Q3 stages, the run next to Speicher et al.'s findings, and a summary, over
every model and init (vermem.dynamics.findings.study_tables)."""

from _rule import rule

from vermem.core import files
from vermem.dynamics import findings

with rule(snakemake) as log:
    out, dyn = snakemake.output, snakemake.params.config
    tables, summary = findings.study_tables(dict(snakemake.input.items()), dyn,
                                            snakemake.params.seed)
    prov = files.provenance(dyn)
    for name, df in tables.items():
        files.write_parquet(df, getattr(out, name), prov)
    files.write_json(summary, out.summary)
    log.info("%s", summary)
