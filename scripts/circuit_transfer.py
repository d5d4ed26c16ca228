"""Rule circuit_transfer: every task's and subset's minimal circuits (main ablation, every
placement; random circuits of the same size for the main placement) evaluated on every
evaluation pair set, directions paired by meaning (prevention with prevention); overlap
between the main mode's circuits (same meaning, and prevention against induction)."""

from _rule import minimal_circuits_and_evsets, rule

from vermem import circuits, io, stats

with rule(snakemake) as log:
    cfg = snakemake.params.config
    record, model, g, found, evsets = minimal_circuits_and_evsets(snakemake)
    transfer = circuits.transfer(model, g, evsets, found, cfg["main"]["ablation"],
                                 range(cfg["random_seeds"]), cfg["metric"],
                                 stats.Bootstrap(**cfg["bootstrap"]),
                                 cfg["circuits_per_forward"], [cfg["main"]["placement"]])
    main = {k[:3]: v for k, v in found.items() if k[3] == cfg["main"]["placement"]}
    prov = io.provenance(cfg, model=record["name"], revision=record["revision"])
    io.write_parquet(transfer, snakemake.output.transfer, prov)
    io.write_parquet(circuits.overlap(main), snakemake.output.overlap, prov)
    log.info("%d circuits on %d evaluation sets: %d transfer cells", len(found), len(evsets),
             transfer.height)
