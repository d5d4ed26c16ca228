"""Rule circuit_specificity: every memorization circuit (main mode) on its task's control
pairs at the same size, the control ranking's circuit on the memorized pairs, random circuits
and logit gaps on both, from one joint bootstrap (vermem.circuits.specificity)."""

import polars as pl
from _rule import evaluation_setup, rule

from vermem.attribution import storage
from vermem.circuits import evaluation, specificity, transfer
from vermem.core import files, progress, stats
from vermem.data import contrastive

with rule(snakemake) as log:
    p = snakemake.params
    cfg = p.config
    main = cfg["main"]
    record, batch, model, g, pairs, boot = evaluation_setup(snakemake)
    shared = transfer.resampler(pairs, boot, cfg["max_pairs"], p.seed)
    scores = {}
    for f, t in zip(snakemake.input.scores, p.score_keys, strict=True):
        tensors, meta = storage.load(f)
        if meta.get("n_examples"):  # a ranking only from attribution pairs
            scores[t["task"], t["subset"]] = tensors
    rows, curves, reps = [], [], []
    records = [files.read_json(f) for f in snakemake.input.minimal]
    todo = progress.Progress(log.info, "specificity", sum(
        (c["placement"], c["ablation"]) == (main["placement"], main["ablation"])
        for rec in records for c in rec["circuits"]), "circuits")
    for rec in records:
        task, subset = rec["task"], rec["subset"]
        ctl_task = contrastive.control_task(task)
        evs = {}
        for t in (task, ctl_task):
            _, q = evaluation.split_sets(pairs, t, subset, snakemake.input.pairs,
                                       cfg["max_pairs"], p.seed)
            evs[t] = evaluation.EvalSet.of_pairs(model, q, batch)
        ctl_scores = scores.get((ctl_task, subset))
        for c in rec["circuits"]:
            if (c["placement"], c["ablation"]) != (main["placement"], main["ablation"]):
                continue
            if evs[ctl_task].n == 0:
                log.warning("%s / %s: no control evaluation pairs", ctl_task, subset)
                todo.advance()
                continue
            d = c["direction"]
            own = evaluation.ranking(g, storage.direction_scores(scores[task, subset], d))
            control = (None if ctl_scores is None else
                       evaluation.ranking(g, storage.direction_scores(ctl_scores, d)))
            mode = evaluation.Mode(d, main["placement"], main["ablation"])
            row, curve, r = specificity.evaluate(
                model, g, evs[task], evs[ctl_task], own, control, mode, int(c["k"]),
                evaluation.log_sizes(g.n_edges, cfg["curve_points"]), range(cfg["random_seeds"]),
                subset == p.main_subset, cfg["metric"], boot, shared, cfg["circuits_per_forward"])
            key = {"task": task, "subset": subset, "direction": d,
                   "semantics": transfer.semantics(task, d)}
            rows.append({**key, "placement": main["placement"], "ablation": main["ablation"],
                         **row})
            curves += [{**key, **x} for x in curve]
            reps.append(r)
            log.info("%s / %s / %s: k = %d, F(memorized) %s, F(control) %s, specificity %s "
                     "[%s, %s]", task, subset, d, row["k"], *map(progress.number, (
                         row["f_memorized"], row["f_control"], row["specificity"],
                         row["specificity_lo"], row["specificity_hi"])))
            todo.advance()
    todo.close()
    prov = files.provenance(cfg, model=record["name"], revision=record["revision"])
    files.write_parquet(pl.DataFrame(rows, schema=specificity.SCHEMA), snakemake.output.table, prov)
    files.write_parquet(pl.DataFrame(curves, schema=specificity.CURVE_SCHEMA),
                     snakemake.output.curves, prov)
    stats.save_replicates(snakemake.output.replicates, reps, specificity.REPLICATES)
