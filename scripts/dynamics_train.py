"""Rule dynamics_train: every seed's string of one grid cell, each on a fresh copy of the
model (pretrained or randomly initialised): per-epoch, per-position metrics, and the Q2
context conditions at the configured epochs (evaluated in training, no checkpoints)."""

import polars as pl
from _rule import rule

from vermem.core import files, progress
from vermem.dynamics import strings as dynamics
from vermem.models import loading

with rule(snakemake) as log:
    p, wc = snakemake.params, snakemake.wildcards
    dyn = p.config
    record = files.read_json(snakemake.input.model)
    device = loading.pick_device(p.device)
    strings = pl.read_parquet(snakemake.input.strings).filter(
        (pl.col("study") == "q1") & (pl.col("string_id") == wc.cell)).sort("seed")
    if device.type == "cuda":
        n_params = record.get("n_params") or dynamics.count_params(record["path"])
        dynamics.check_memory(wc.model, n_params, snakemake.config["gpu_memory_gb"],
                              dyn["training"]["memory_margin"])
    q2cfg = dyn["q2"]
    curves, q2 = [], []
    epochs = progress.Progress(log.info, f"training {wc.cell} ({strings.height} seeds)",
                               strings.height * dyn["training"]["epochs"], "epochs")
    for s in strings.iter_rows(named=True):
        model = dynamics.fresh_model(record["path"], wc.init, dyn["init_seed"], device)
        ks = dynamics.q2_ks(s["length"], q2cfg["k"], q2cfg["k_fractions"])

        def at_epoch(e, model=model, s=s, ks=ks):
            if e in q2cfg["epochs"] and ks and q2cfg["conditions"]:
                df = dynamics.context_recall(model, s["token_ids"], s["bos_id"],
                                             s["letter_ids"], s["probs"], ks,
                                             q2cfg["conditions"], s["seed"] * 100_003 + e,
                                             q2cfg["batch_size"], device)
                q2.append(df.select(pl.lit(s["seed"], pl.Int32).alias("seed"),
                                    pl.lit(e, pl.Int32).alias("epoch"), pl.all()))

        df = dynamics.train_string(model, s["token_ids"], s["bos_id"], dyn["training"],
                                   s["seed"], at_epoch, progress=epochs)
        curves.append(df.select(pl.lit(s["seed"], pl.Int32).alias("seed"), pl.all()))
        final = df.filter(pl.col("epoch") == df["epoch"].max())["correct"].mean()
        log.info("%s seed %d: final accuracy %.3f", wc.cell, s["seed"], final)
    epochs.close()
    prov = files.provenance(dyn, model=wc.model, revision=record["revision"], init=wc.init,
                         string_id=wc.cell)
    cell = pl.lit(wc.cell).alias("string_id")
    files.write_parquet(pl.concat(curves).select(cell, pl.all()), snakemake.output.curves, prov)
    q2_schema = {"seed": pl.Int32, "epoch": pl.Int32, "condition": pl.String, "k": pl.Int32,
                 "position": pl.Int32, "correct": pl.Boolean, "p_true": pl.Float64}
    q2_df = pl.concat(q2) if q2 else pl.DataFrame(schema=q2_schema)
    files.write_parquet(q2_df.select(cell, pl.all()), snakemake.output.q2, prov)
