"""Rule circuit_transfer: every task's and subset's minimal circuits (main ablation, every
placement; random circuits of the same size for the main placement) evaluated on every
evaluation pair set, directions paired by meaning (prevention with prevention); the same
cross-task comparison at matched sizes (each task's own ranking against the other's, at
every curve size); overlap between the main mode's circuits (same meaning, and prevention
against induction). Intervals from the run's shared bootstrap, whose replicates are kept
for the claims."""

import polars as pl
from _rule import minimal_circuits_and_evsets, rule

from vermem.attribution import storage
from vermem.circuits import evaluation
from vermem.circuits import transfer as circuits_transfer
from vermem.core import files, stats

with rule(snakemake) as log:
    p = snakemake.params
    cfg = p.config
    main = cfg["main"]
    record, model, g, found, evsets = minimal_circuits_and_evsets(snakemake)
    boot = stats.Bootstrap(**cfg["bootstrap"])
    shared = circuits_transfer.resampler(
        pl.read_parquet(snakemake.input.pairs), boot, cfg["max_pairs"], p.seed
    )
    reps: list = []
    transfer = circuits_transfer.transfer(model, g, evsets, found, main["ablation"],
                                 range(cfg["random_seeds"]), cfg["metric"], boot,
                                 cfg["circuits_per_forward"], [main["placement"]], shared, reps,
                                 progress=log.info)
    # size-matched: each task's own ranking and the other task's, at the curve sizes and
    # at both tasks' minimal sizes
    orders, sizes = {}, {}
    grid = evaluation.log_sizes(g.n_edges, cfg["curve_points"])
    for f, key in zip(snakemake.input.scores, p.score_keys, strict=True):
        tensors, meta = storage.load(f)
        if not meta.get("n_examples"):  # no attribution pairs: no ranking to compare
            continue
        for d in ("noising", "denoising"):
            orders[key["task"], key["subset"], d] = evaluation.ranking(
                g, storage.direction_scores(tensors, d))
        for meaning in ("prevention", "induction"):
            sizes.setdefault((key["subset"], meaning), set(grid))
    for (task, subset, d, placement), edges in found.items():
        if placement == main["placement"]:
            sizes[subset, circuits_transfer.semantics(task, d)].add(int(edges.sum()))
    matched_reps: list = []
    matched = circuits_transfer.matched_transfer(
        model, g, evsets, orders, {k: sorted(v) for k, v in sizes.items()}, main["placement"],
        main["ablation"], cfg["metric"], boot, cfg["circuits_per_forward"], shared, matched_reps,
        progress=log.info)
    main_found = {k[:3]: v for k, v in found.items() if k[3] == main["placement"]}
    prov = files.provenance(cfg, model=record["name"], revision=record["revision"])
    files.write_parquet(transfer, snakemake.output.transfer, prov)
    stats.save_replicates(snakemake.output.replicates, reps, ["faithfulness"])
    files.write_parquet(matched, snakemake.output.matched, prov)
    stats.save_replicates(snakemake.output.matched_replicates, matched_reps, ["gap"])
    files.write_parquet(circuits_transfer.overlap(main_found), snakemake.output.overlap, prov)
    log.info("%d circuits on %d evaluation sets: %d transfer cells, %d size-matched rows",
             len(found), len(evsets), transfer.height, matched.height)
