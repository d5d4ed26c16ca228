"""Rule circuit_transfer: every task's and subset's minimal circuits (main ablation, every
placement; random circuits of the same size for the main placement) evaluated on every
evaluation pair set, directions paired by meaning (prevention with prevention); the same
cross-task comparison at matched sizes (each task's own ranking against the other's, at
every curve size); overlap between the main mode's circuits (same meaning, and prevention
against induction). Intervals from the run's shared bootstrap, whose replicates are kept
for the claims."""

from _rule import minimal_circuits_and_evsets, rule

from vermem.attribution import storage
from vermem.circuits import transfer as circuits_transfer
from vermem.circuits.settings import TransferSettings
from vermem.core import files, stats

with rule(snakemake) as log:
    p, out = snakemake.params, snakemake.output
    st = TransferSettings.from_config(p.config)
    record, model, g, found, evsets, pairs = minimal_circuits_and_evsets(snakemake, st)
    st = st.with_resampler(pairs)
    reps: list = []
    transfer = circuits_transfer.transfer(model, g, evsets, found, st, reps, progress=log.info)
    # size-matched: each task's own ranking and the other task's, at the curve sizes and
    # at both tasks' minimal sizes
    rankings = ((k, storage.load(f)) for f, k in zip(snakemake.input.scores, p.score_keys,
                                                      strict=True))
    orders, sizes = circuits_transfer.matched_inputs(g, rankings, found, st)
    matched_reps: list = []
    matched = circuits_transfer.matched_transfer(model, g, evsets, orders, sizes, st,
                                                 matched_reps, progress=log.info)
    main_found = {k[:3]: v for k, v in found.items() if k[3] == st.placement}
    prov = files.provenance(p.config["circuits"], model=record["name"],
                            revision=record["revision"])
    files.write_parquet(transfer, out.transfer, prov)
    stats.save_replicates(out.replicates, reps, ["faithfulness"])
    files.write_parquet(matched, out.matched, prov)
    stats.save_replicates(out.matched_replicates, matched_reps, ["gap"])
    files.write_parquet(circuits_transfer.overlap(main_found), out.overlap, prov)
    log.info("%d circuits on %d evaluation sets: %d transfer cells, %d size-matched rows",
             len(found), len(evsets), transfer.height, matched.height)
