"""Rule circuit_specificity: every memorization circuit (main mode) on its task's control
pairs at the same size, the control ranking's circuit on the memorized pairs, random circuits
and logit gaps on both, from one joint bootstrap (vermem.circuits.specificity)."""

from _rule import evaluation_setup, rule

from vermem.attribution import storage
from vermem.circuits import evaluation, specificity
from vermem.circuits.settings import SpecificitySettings
from vermem.core import files, stats

with rule(snakemake) as log:
    p, out = snakemake.params, snakemake.output
    record, batch, model, g, pairs = evaluation_setup(snakemake)
    st = SpecificitySettings.from_config(p.config).with_resampler(pairs)

    def eval_set(task, subset):
        _, q = evaluation.split_sets(pairs, task, subset, snakemake.input.pairs, st.max_pairs,
                                     st.seed)
        return evaluation.EvalSet.of_pairs(model, q, batch)

    scores = {}
    for f, t in zip(snakemake.input.scores, p.score_keys, strict=True):
        tensors, meta = storage.load(f)
        if meta.get("n_examples"):  # a ranking only from attribution pairs
            scores[t["task"], t["subset"]] = tensors
    records = [files.read_json(f) for f in snakemake.input.minimal]
    table, curves, reps = specificity.run(model, g, eval_set, records, scores, st,
                                          progress=log.info)
    prov = files.provenance(p.config["circuits"], model=record["name"],
                            revision=record["revision"])
    files.write_parquet(table, out.table, prov)
    files.write_parquet(curves, out.curves, prov)
    stats.save_replicates(out.replicates, reps, specificity.REPLICATES)
