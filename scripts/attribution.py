"""Rule attribution: edge scores of one task, subset and metric over its attribution pairs,
in both directions (noising; de-noising, clean and corrupt swapped), each also split by the
source position's distance to the predicted position; the noising scores also in the
EAP-IG library's graph JSON."""

from dataclasses import replace

from _rule import model_graph_pairs, rule

from vermem.attribution import eap_json, positions, scoring, storage
from vermem.attribution.settings import AttributionSettings
from vermem.core import files
from vermem.workflow import resources

with rule(snakemake) as log:
    p, wc = snakemake.params, snakemake.wildcards
    cfg = p.config["attribution"]
    # the batch that fits gpu_memory_gb, or a one-line error, before the model is loaded
    batch = resources.attribution_batch(files.read_json(snakemake.input.model), snakemake.config)
    settings = replace(AttributionSettings.from_config(p.config), metric=wc.metric,
                       batch_size=batch)
    record, model, g, pairs = model_graph_pairs(snakemake, "attribution")
    if pairs.height == 0:
        log.warning("no attribution pairs for %s / %s: marked empty (scores are not results)",
                    wc.task, p.subset)
    clean = pairs["clean"].to_list()
    out, n = scoring.run(model, g, clean, pairs["corrupt"].to_list(), pairs["answer"].to_list(),
                         pairs["wrong"].to_list(), settings, progress=log.info)
    buckets = positions.position_buckets(max(map(len, clean), default=0))
    meta = {"model": record["name"], "revision": record["revision"], "task": wc.task,
            "subset": p.subset, "metric": wc.metric, "method": cfg["method"],
            "ig_steps": cfg["ig_steps"], "n_examples": n, "empty": n == 0, "n_edges": g.n_edges,
            "provenance": files.provenance(cfg, model=record["name"])}
    storage.save(snakemake.output.scores, g, out["scores"], meta,
                     out["scores_denoising"], out["positions"], out["positions_denoising"],
                     buckets)
    eap_json.write_attribution(snakemake.output.eap, g, out["scores"], meta)
    log.info("%d pairs, %d edges, top |score| %.4g noising, %.4g de-noising; %d position "
             "buckets", n, g.n_edges, float(out["scores"].abs().max()),
             float(out["scores_denoising"].abs().max()), len(buckets))
