"""Rule dynamics_strings: the Q1 grid and Q3 strings as token ids of one model, each letter
checked to be one token that round-trips; the model's full fine-tuning memory checked
before any training job starts."""

import polars as pl
from _rule import rule

from vermem.core import files
from vermem.dynamics import strings as dynamics
from vermem.models import loading

with rule(snakemake) as log:
    p = snakemake.params
    dyn, name = p.config, snakemake.wildcards.model
    record = files.read_json(snakemake.input.model)
    n_params = record.get("n_params") or dynamics.count_params(record["path"])
    train = dyn["training"]
    if p.device != "cpu":  # training may run on a GPU: fail here, before any GPU job
        dynamics.check_memory(name, n_params, snakemake.config["gpu_memory_gb"],
                              train["memory_margin"])
    context = dynamics.context_length(record["path"])
    strings = pl.concat([dynamics.grid_strings(dyn["grid"]),
                         dynamics.sequential_strings(dyn["sequential"])])
    longest = int(strings["length"].max())
    if context is not None and longest + 1 > context:
        raise dynamics.DynamicsError(f"dynamics: model {name}: {longest} letters + BOS exceed "
                                     f"its context of {context} tokens")
    table = dynamics.tokenize_strings(strings, loading.load_tokenizer(record), name)
    files.write_parquet(table, snakemake.output.table,
                     files.provenance(dyn, model=name, revision=record["revision"]))
    summary = {"model": name, "n_params": n_params, "context": context,
               "full_finetune_bytes": dynamics.full_finetune_bytes(n_params,
                                                                   train["memory_margin"]),
               "bos_id": int(table["bos_id"][0]), "strings": table.height,
               "letter_ids": dict(zip(dynamics.LETTERS, table["letter_ids"][
                   int(table["alphabet_size"].arg_max())], strict=False))}
    files.write_json(summary, snakemake.output.summary)
    log.info("%s", summary)
