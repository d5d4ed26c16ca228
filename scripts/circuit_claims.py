"""Rule circuit_claims: the paper's claims (docs/study-a.md §11) against this run's own numbers,
each with n, intervals (combined cells: from the joint bootstrap's replicates), random
circuits of the same size and a three-way verdict; and, with the controls, whether each
memorization circuit is specific to memorization."""

import polars as pl
from _rule import rule

from vermem.core import files, stats
from vermem.report import claims

with rule(snakemake) as log:
    p = snakemake.params
    cfg = p.config
    main = cfg["main"]
    inp = snakemake.input
    sizes = {(rec["task"], rec["subset"], c["direction"]): c
             for rec in map(files.read_json, inp.minimal) for c in rec["circuits"]
             if (c["placement"], c["ablation"]) == (main["placement"], main["ablation"])}
    spec = pl.read_parquet(inp.specificity) if "specificity" in inp.keys() else None
    table = claims.claims(
        pl.read_parquet(inp.transfer), sizes, p.main_subset, cfg["claims"]["transfer_threshold"],
        cfg["claims"]["margin"], cfg["claims"]["min_pairs"], cfg["bootstrap"]["level"],
        main["placement"], transfer_reps=stats.load_replicates(inp.transfer_replicates)[0][:, 0],
        matched=pl.read_parquet(inp.matched),
        matched_reps=stats.load_replicates(inp.matched_replicates)[0][:, 0], specificity=spec)
    records = [files.read_json(f) for f in inp.minimal]
    if any(rec.get("selection_on_evaluation") for rec in records):
        table = claims.flag_selection_on_evaluation(table)
    # the documents each bootstrap resamples: a claim resting on < 10 says so
    table = claims.flag_few_clusters(table, {
        (rec["task"], rec["subset"], part): len(rec[f"{part}_docs"])
        for rec in records for part in ("selection", "evaluation")}, p.main_subset)
    files.write_parquet(table, snakemake.output.table,
                     files.provenance(cfg, model=snakemake.wildcards.model))
    with files.atomic_path(snakemake.output.csv) as tmp:
        table.write_csv(tmp)
    with files.atomic_path(snakemake.output.html) as tmp:
        tmp.write_text(claims.to_html(table, f"{snakemake.wildcards.model}: the paper's claims"))
    for row in table.iter_rows(named=True):
        log.info("%s [%s]: %s -> %s (%s)", row["claim"], row["semantics"], row["evidence"],
                 row["verdict"], row["reason"])
