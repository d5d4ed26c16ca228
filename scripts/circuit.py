"""Rule circuit: faithfulness curves and minimal circuits of one task and subset: sizes
chosen on the selection pairs, faithfulness reported on the evaluation pairs, from the
edges ranked by attribution (vermem.circuits.search); MIB's scores of the ranking; the main
mode's minimal circuits also in the EAP-IG library's graph JSON, one file per direction."""

import polars as pl
from _rule import model_graph_pairs, rule

from vermem.attribution import storage
from vermem.circuits import evaluation, mib, search
from vermem.circuits.settings import SearchSettings
from vermem.core import files
from vermem.workflow import resources

with rule(snakemake) as log:
    p, wc, out = snakemake.params, snakemake.wildcards, snakemake.output
    st = SearchSettings.from_config(p.config)
    # the batch that fits gpu_memory_gb, or a one-line error, before the model is loaded
    batch = resources.circuit_batch(files.read_json(snakemake.input.model), snakemake.config)
    record, model, g, _ = model_graph_pairs(snakemake, "evaluation")
    all_pairs = pl.read_parquet(snakemake.input.pairs)
    st = st.with_resampler(all_pairs)  # the run's shared draws: one interval per number
    sel_pairs, ev_pairs = evaluation.split_sets(all_pairs, wc.task, p.subset,
                                                snakemake.input.pairs, st.max_pairs, st.seed)
    run = search.find_circuits(model, g, sel_pairs, ev_pairs, storage.load(snakemake.input.scores),
                               st, batch, progress=log.info)
    prov = files.provenance(st.section, model=record["name"], revision=record["revision"])
    if "mib" in out.keys():  # the final model's circuits (not at checkpoints)
        table = mib.score(model, g, run.ev, run.by_dir, run.modes, st.mib(),
                          run.meta.get("method", ""), progress=log.info)
        table = table.select(pl.lit(wc.task).alias("task"), pl.lit(p.subset).alias("subset"),
                             pl.all())
        files.write_parquet(table, out.mib, prov)
        mib.log_scores(table, log.info)
    minimal = search.minimal_record(record, wc.task, p.subset, g, run, st)
    files.write_parquet(run.curve, out.curve, prov)
    files.write_json(minimal, out.minimal)
    search.write_eap(out.eap, st.section["directions"], g, run, minimal, st)
    search.log_record(minimal, log.info)
