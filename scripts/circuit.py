"""Rule circuit: faithfulness curves and minimal circuits of one task and subset, on its
held-out evaluation pairs, from the edges ranked by attribution."""

import torch
from _rule import model_graph_pairs, rule

from vermem import attribution, circuits, io

with rule(snakemake) as log:
    p, wc = snakemake.params, snakemake.wildcards
    cfg = p.config
    record, model, g, pairs = model_graph_pairs(snakemake, "evaluation")
    tensors, meta = attribution.load(snakemake.input.scores)
    ev = circuits.EvalSet.make(model, pairs["clean"].to_list(), pairs["corrupt"].to_list(),
                               pairs["answer"].to_list(), pairs["wrong"].to_list(),
                               cfg["batch_size"])
    if ev.n == 0:
        log.warning("no evaluation pairs for %s / %s: no curve, no circuit", wc.task, p.subset)
    modes = circuits.modes(cfg["directions"], cfg["placements"], cfg["ablations"])
    curve, minimal = circuits.sweep(
        model, g, ev, tensors["scores"], modes if ev.n else [],
        circuits.log_sizes(g.n_edges, cfg["curve_points"]), range(cfg["random_seeds"]),
        cfg["target"], cfg["metric"])
    scores = tensors["scores"].flatten()
    record_out = {
        "model": record["name"], "revision": record["revision"], "task": wc.task,
        "subset": p.subset, "n_edges": g.n_edges, "n_pairs": ev.n, "target": cfg["target"],
        "metric": cfg["metric"], "rank_by": cfg["rank_by"], "n_layers": g.shape.n_layers,
        "n_heads": g.shape.n_heads,
        "attribution_pairs": meta["n_examples"],
        "circuits": [{"direction": m.direction, "placement": m.placement,
                      "ablation": m.ablation, "k": v["k"], "share": v["k"] / g.n_edges,
                      "faithfulness": v["faithfulness"], "metric": v["metric"],
                      "accuracy": v["accuracy"], "empty": v["empty"], "full": v["full"],
                      "edge_index": v["edges"],
                      "edges": g.edge_names(torch.tensor(v["edges"], dtype=torch.long)),
                      "scores": [float(scores[i]) for i in v["edges"]]}
                     for m, v in minimal.items()],
        "provenance": io.provenance(cfg, model=record["name"]),
    }
    io.write_parquet(curve, snakemake.output.curve,
                     io.provenance(cfg, model=record["name"], revision=record["revision"]))
    io.write_json(record_out, snakemake.output.minimal)
    for c in record_out["circuits"]:
        log.info("%s/%s/%s: minimal circuit %d edges, F = %.3f", c["direction"],
                 c["placement"], c["ablation"], c["k"], c["faithfulness"])
