"""Rule dynamics_tables: per-epoch curves, phase boundaries, the Q1 table, Q2 accuracy per
condition and k, Q3 stages, the run next to Speicher et al.'s findings, and a summary, over
every model and init."""

from pathlib import Path

import polars as pl
from _rule import rule

from vermem.core import files
from vermem.dynamics import findings
from vermem.dynamics import strings as dynamics

KEYS = ["model", "init"]


def tagged(path):
    """A per-run table with its model and init (from results/dynamics/{model}/{init}/...)."""
    model, init = Path(path).parts[-3:-1]
    return pl.read_parquet(path).select(pl.lit(model).alias("model"), pl.lit(init).alias("init"),
                                        pl.all())


with rule(snakemake) as log:
    inp, out, dyn = snakemake.input, snakemake.output, snakemake.params.config
    strings = pl.concat([pl.read_parquet(f).select(pl.lit(Path(f).parts[-2]).alias("model"),
                                                   pl.all()) for f in inp.strings])
    n_params = {files.read_json(f)["model"]: files.read_json(f)["n_params"] for f in inp.summaries}
    curves = pl.concat([dynamics.epoch_curves(tagged(f), [*KEYS, "string_id", "seed"])
                        for f in inp.curves])
    phases = pl.concat([
        dynamics.phases_table(g, strings.filter((pl.col("model") == m) & (pl.col("study") == "q1")),
                              KEYS, dyn["phases"])
        for (m,), g in curves.group_by("model", maintain_order=True)])
    phases = phases.with_columns(pl.col("model").replace_strict(n_params, return_dtype=pl.Int64)
                                 .alias("n_params")).sort(*KEYS, "string_id", "seed")
    q1 = dynamics.q1_table(phases)
    lengths = strings.filter(pl.col("study") == "q1").select("model", "string_id", "seed",
                                                             "length")
    q2 = dynamics.q2_table(pl.concat([tagged(f) for f in inp.q2]).join(
        lengths, on=["model", "string_id", "seed"]), KEYS)
    seq = pl.concat([tagged(f) for f in inp.sequential])
    q3 = dynamics.q3_table(seq, KEYS, dyn["sequential"]["hold_epochs"])
    found = findings.table(phases, q3, dyn["phases"]["accuracy_rise"], snakemake.params.seed)
    prov = files.provenance(dyn)
    for df, path in ((curves, out.curves), (phases, out.phases), (q1, out.q1), (q2, out.q2),
                     (q3, out.q3), (seq, out.sequential), (found, out.findings)):
        files.write_parquet(df, path, prov)
    summary = dynamics.summarize(phases, q1, q2, q3)
    files.write_json(summary, out.summary)
    log.info("%s", summary)
