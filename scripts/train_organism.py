"""Rule train_organism: tokenizer, planted duplicates and the trained tiny GPT-NeoX."""

from _rule import rule

from vermem import checkpoints, corpus, io, models, organism

with rule(snakemake) as log:
    p = snakemake.params
    report = corpus.IngestReport()
    docs = list(corpus.iter_documents(snakemake.input.shards, report))
    model, tok, table, result = organism.fit([d.doc_id for d in docs], [d.subset for d in docs],
                                             [d.text for d in docs], p.organism, p.sample_tokens)
    out = snakemake.output
    n = p.organism["checkpoints"]
    # the snapshots as subfolders of the model's folder, like a local model's checkpoints
    saved = [{"name": name, "step": step, "path": f"{out.folder}/{name}"} for name, step in
             zip(checkpoints.organism_names(n), checkpoints.organism_steps(result.steps, n),
                 strict=True)]
    with io.atomic_path(out.folder, directory=True) as tmp:
        final = {k: v.clone() for k, v in model.state_dict().items()}
        for c in saved:
            model.load_state_dict(result.snapshots[c["step"]])
            model.save_pretrained(tmp / c["name"])
            tok.save_pretrained(tmp / c["name"])
        model.load_state_dict(final)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    prov = io.provenance(p.organism, model=snakemake.wildcards.model, revision=None)
    io.write_parquet(table, out.duplicates, prov)
    io.write_parquet(result.log, out.train_log, prov)
    record = {"name": snakemake.wildcards.model, "source": "organism", "path": out.folder,
              "id": None, "revision": None, "commit": io.config_hash(p.organism),
              "dtype": "float32", "n_params": models.n_params(model),
              "train_seconds": round(result.seconds, 1), "train_steps": result.steps,
              "step": result.steps, "checkpoints": saved,
              "tokens_per_epoch": result.tokens_per_epoch,
              "final_loss": result.log["loss"].tail(20).mean(),
              **models.describe_folder(out.folder)}
    io.write_json(record, out.record)
    log.info("%s", record)
