"""Rule circuit_claims: the paper's claims (docs/study-a.md §11) against this run's own numbers."""

import polars as pl
from _rule import rule

from vermem import circuits, io

with rule(snakemake) as log:
    p = snakemake.params
    cfg = p.config
    minimal = [io.read_json(f) for f in snakemake.input.minimal]
    sizes = {(rec["task"], rec["subset"], c["direction"]): (c["k"], rec["n_edges"])
             for rec in minimal for c in rec["circuits"]
             if (c["placement"], c["ablation"]) == (cfg["main"]["placement"],
                                                    cfg["main"]["ablation"])}
    table = circuits.claims(pl.read_parquet(snakemake.input.transfer), sizes, p.main_subset,
                            cfg["claims"]["transfer_threshold"], cfg["claims"]["margin"])
    io.write_parquet(table, snakemake.output.table,
                     io.provenance(cfg, model=snakemake.wildcards.model))
    with io.atomic_path(snakemake.output.csv) as tmp:
        table.write_csv(tmp)
    for row in table.iter_rows(named=True):
        log.info("%s [%s]: %s -> %s", row["claim"], row["direction"], row["evidence"],
                 row["supported"])
