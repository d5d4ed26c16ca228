"""Rule figure_mib: MIB's CPR and CMD of every task and subset's ranking
(vermem.report.figures.method_scores)."""

import polars as pl
from _rule import rule

from vermem.report.figures import common, method_scores

with rule(snakemake):
    table = pl.concat([pl.read_parquet(f) for f in snakemake.input.mib])
    common.save(method_scores.mib_figure(table, snakemake.wildcards.model, snakemake.params.main),
               snakemake.output.figure)
