"""Rule checkpoint_tables: every checkpoint of a model gathered in step order: memorized
share of the fixed sample set with its graded scores, and per task, subset and direction the
logit gap, the minimal circuit, the final circuit's faithfulness and the overlap with the
final circuit."""

import polars as pl
from _rule import rule

from vermem.attribution import storage
from vermem.circuits import checkpoints
from vermem.core import files, stats

with rule(snakemake) as log:
    p, inp, model = snakemake.params, snakemake.input, snakemake.wildcards.model
    keys = pl.read_parquet(inp.samples)
    # inputs come per point (checkpoints in config order, the final model last)
    n_sets = len(p.tasks) * len(p.subsets)
    points = []
    for i, rec_path in enumerate(inp.records):
        rec = files.read_json(rec_path)
        final = i == len(inp.records) - 1
        pairs = [(t, s) for t in p.tasks for s in p.subsets]
        step = rec.get("step")  # a hub model's own record has none: final_step, from config
        points.append({
            "checkpoint": p.names[i], "step": p.final_step if step is None else step,
            "final": final,
            "labels": pl.read_parquet(inp.labels[i]),
            "minimal": {k: files.read_json(f) for k, f in
                        zip(pairs, inp.minimal[i * n_sets:(i + 1) * n_sets], strict=True)},
            "scores": {k: storage.load(f)[0] for k, f in
                       zip(pairs, inp.scores[i * n_sets:(i + 1) * n_sets], strict=True)},
            "evaluated": pl.read_parquet(inp.evaluated[i])})
    points.sort(key=lambda q: (q["step"] is None, q["step"] or 0))
    memo = checkpoints.memorization(model, [(q["checkpoint"], q["step"], q["final"],
                                             q["labels"]) for q in points], keys,
                                    stats.Bootstrap(**p.bootstrap))
    circ = checkpoints.circuit_table(model, points, p.main)
    prov = files.provenance({"main": p.main}, model=model)
    files.write_parquet(memo, snakemake.output.memorization, prov)
    files.write_parquet(circ, snakemake.output.circuits, prov)
    files.write_json(checkpoints.summary(memo, circ, p.target, p.min_documents),
                  snakemake.output.summary)
    log.info("%d checkpoints: %d memorization rows, %d circuit rows", len(points), memo.height,
             circ.height)
