"""Rule method_comparison: attribution methods side by side on the main subset, per task:
MIB's CPR and CMD, the minimal circuit, and the methods' agreement
(vermem.circuits.method_comparison)."""

import polars as pl
from _rule import evaluation_setup, rule

from vermem.circuits import evaluation, method_comparison
from vermem.core import files

with rule(snakemake) as log:
    p = snakemake.params
    cfg, att = p.config, p.attribution
    record, batch, model, g, pairs, boot = evaluation_setup(snakemake)
    quality, agree = [], []
    for task in p.tasks:
        attr = pairs.filter((pl.col("task") == task) & (pl.col("subset") == p.main_subset)
                            & (pl.col("split") == "attribution"))
        sel_pairs, ev_pairs = evaluation.split_sets(pairs, task, p.main_subset,
                                                  snakemake.input.pairs, cfg["max_pairs"],
                                                  p.seed)
        if p.select_on_evaluation:  # no selection part: the authors' design
            sel_pairs = ev_pairs
        sel, ev = (evaluation.EvalSet.of_pairs(model, q, batch) for q in (sel_pairs, ev_pairs))
        log.info("%s / %s: %d attribution pairs (%d documents), %d selection, %d evaluation; "
                 "methods %s", task, p.main_subset, attr.height, attr["doc_id"].n_unique(),
                 sel.n, ev.n, ", ".join(p.methods))
        q, a, secs = method_comparison.compare(model, g, attr, sel, ev, p.methods, att["ig_steps"],
                               cfg["metric"], cfg["main"], cfg["target"], cfg["curve_points"],
                               boot, batch, cfg["circuits_per_forward"], cfg["search_width"],
                               progress=log.info)
        front = [pl.lit(task).alias("task"), pl.lit(p.main_subset).alias("subset"), pl.all()]
        quality.append(q.select(front))
        agree.append(a.select(front))
        for r in q.iter_rows(named=True):
            log.info("%s %s: CPR %s, minimal k %s (attribution %.1f s)", r["method"],
                     r["direction"], "-" if r["cpr"] is None else f"{r['cpr']:.3f}", r["k"],
                     secs[r["method"]])
    prov = files.provenance(cfg, model=record["name"], revision=record["revision"])
    files.write_parquet(pl.concat(quality), snakemake.output.quality, prov)
    files.write_parquet(pl.concat(agree), snakemake.output.agreement, prov)
