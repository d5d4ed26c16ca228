"""Rule dynamics_sequential (Q3): the K strings one after another on one model copy,
accuracy on every string after every epoch, then the first string again."""

import polars as pl
from _rule import rule

from vermem.core import files
from vermem.dynamics import strings as dynamics
from vermem.models import loading

with rule(snakemake) as log:
    p, wc = snakemake.params, snakemake.wildcards
    dyn, seq = p.config, p.config["sequential"]
    record = files.read_json(snakemake.input.model)
    device = loading.pick_device(p.device)
    if device.type == "cuda":
        n_params = record.get("n_params") or dynamics.count_params(record["path"])
        dynamics.check_memory(wc.model, n_params, snakemake.config["gpu_memory_gb"],
                              dyn["training"]["memory_margin"])
    strings = pl.read_parquet(snakemake.input.strings).filter(pl.col("study") == "q3")
    strings = strings.sort(pl.col("string_id").str.extract(r"(\d+)$").cast(pl.Int32))
    model = dynamics.fresh_model(record["path"], wc.init, dyn["init_seed"], device)
    training = {**dyn["training"], "epochs": seq["epochs"]}
    df = dynamics.sequential(model, strings["token_ids"].to_list(), int(strings["bos_id"][0]),
                             training, seq["hold_epochs"], seq["seed"],
                             seq["relearn"], progress=log.info)
    files.write_parquet(df, snakemake.output.table,
                     files.provenance(dyn, model=wc.model, revision=record["revision"],
                                   init=wc.init))
    log.info("%s", dynamics.q3_table(df, []))
