"""Rule checkpoint_tables: every checkpoint of a model gathered in step order: memorized
share of the fixed sample set with its graded scores, and per task, subset and direction the
logit gap, the minimal circuit, the final circuit's faithfulness and the overlap with the
final circuit (vermem.circuits.checkpoints)."""

import polars as pl
from _rule import rule

from vermem.circuits import checkpoints
from vermem.core import files, stats

with rule(snakemake) as log:
    p, inp, model = snakemake.params, snakemake.input, snakemake.wildcards.model
    sets = [(t, s) for t in p.tasks for s in p.subsets]
    points = checkpoints.read_points(dict(inp.items()), p.names, sets, p.final_step)
    memo = checkpoints.memorization(model, [(q["checkpoint"], q["step"], q["final"],
                                             q["labels"]) for q in points],
                                    pl.read_parquet(inp.samples), stats.Bootstrap(**p.bootstrap))
    circ = checkpoints.circuit_table(model, points, p.main)
    prov = files.provenance({"main": p.main}, model=model)
    files.write_parquet(memo, snakemake.output.memorization, prov)
    files.write_parquet(circ, snakemake.output.circuits, prov)
    files.write_json(checkpoints.summary(memo, circ, p.target, p.min_documents),
                     snakemake.output.summary)
    log.info("%d checkpoints: %d memorization rows, %d circuit rows", len(points), memo.height,
             circ.height)
