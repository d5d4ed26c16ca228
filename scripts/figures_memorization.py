"""Rule figures_memorization: score histograms, divergence positions, pair counts."""

import polars as pl
from _rule import rule

from vermem.report.figures import common, study_a

with rule(snakemake):
    p, inp, out = snakemake.params, snakemake.input, snakemake.output
    model = snakemake.wildcards.model
    labels, div = pl.read_parquet(inp.labels), pl.read_parquet(inp.divergence)
    common.save(study_a.score_histograms(labels, p.score, model), out.scores)
    common.save(study_a.divergence_histogram(div, p.prefix_tokens, model), out.divergence)
    common.save(study_a.pair_counts(pl.read_parquet(inp.pairs), model, p.subsets, p.tasks),
               out.pairs)
