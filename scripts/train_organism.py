"""Rule train_organism: tokenizer, planted duplicates and the trained tiny GPT-NeoX."""

from _rule import rule, save_points, trained_record

from vermem.core import files, naming
from vermem.data import corpus
from vermem.models import organism

with rule(snakemake) as log:
    p = snakemake.params
    report = corpus.IngestReport()
    docs = list(corpus.iter_documents(snakemake.input.shards, report))
    model, tok, table, result = organism.fit([d.doc_id for d in docs], [d.subset for d in docs],
                                             [d.text for d in docs], p.organism, p.sample_tokens,
                                             progress=log.info)
    out = snakemake.output
    n = p.organism["checkpoints"]
    # the snapshots as subfolders of the model's folder, like a local model's checkpoints
    saved = [{"name": name, "step": step, "path": f"{out.folder}/{name}"} for name, step in
             zip(naming.organism_names(n), naming.organism_steps(result.steps, n),
                 strict=True)]
    save_points(model, tok, out.folder, [(c["name"], result.snapshots[c["step"]])
                                         for c in saved])
    prov = files.provenance(p.organism, model=snakemake.wildcards.model, revision=None)
    files.write_parquet(table, out.duplicates, prov)
    files.write_parquet(result.log, out.train_log, prov)
    record = trained_record(snakemake, "organism", files.config_hash(p.organism), model, result,
                            saved)
    files.write_json(record, out.record)
    log.info("%s", record)
