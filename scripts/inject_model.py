"""Rule inject_model: a pretrained model trained further on ordinary text and planted
documents (vermem.models.injection), with its checkpoints before (t0) and during injection."""

from _rule import rule, save_points, trained_record

from vermem.core import files, naming
from vermem.data import corpus
from vermem.models import injection, loading

with rule(snakemake) as log:
    p, out = snakemake.params, snakemake.output
    recipe = p.spec["injection"]
    base = files.read_json(snakemake.input.base)
    model, tok = loading.load(base, p.device)
    docs = list(corpus.iter_documents(snakemake.input.shards, corpus.IngestReport()))
    log.info("base %s (%s, %d parameters) on %s; %d documents", base["name"],
             base["model_type"], loading.n_params(model), next(model.parameters()).device,
             len(docs))
    inj = injection.inject(model, tok, [d.doc_id for d in docs], [d.subset for d in docs],
                           [d.text for d in docs], recipe, p.sample_tokens, progress=log.info)
    result, n = inj.result, recipe["checkpoints"]
    steps = naming.organism_steps(result.steps, n) or [0]  # from 0: the base model
    saved = [{"name": name, "step": step, "path": f"{out.folder}/{name}"} for name, step in
             zip(injection.checkpoint_names(n), steps, strict=True)]
    save_points(model, tok, out.folder,
                [(c["name"], inj.before if c["step"] == 0 else result.snapshots[c["step"]])
                 for c in saved])
    prov = files.provenance(recipe, model=snakemake.wildcards.model, revision=None)
    files.write_parquet(inj.table, out.duplicates, prov)
    files.write_parquet(result.log, out.train_log, prov)
    commit = files.config_hash({"recipe": recipe, "base": base["commit"]})
    record = trained_record(snakemake, "injected", commit, model, result, saved,
                            base=base["name"], base_path=base["path"],
                            trainable_params=inj.trainable,
                            trainable=recipe.get("trainable"))
    files.write_json(record, out.record)
    log.info("%s", record)
