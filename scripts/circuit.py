"""Rule circuit: faithfulness curves and minimal circuits of one task and subset: sizes
chosen on the selection pairs, faithfulness reported on the evaluation pairs, from the
edges ranked by attribution; the main mode's minimal circuits also in the EAP-IG library's
graph JSON, one file per direction."""

import polars as pl
import torch
from _rule import model_graph_pairs, rule

from vermem.attribution import eap_json, storage
from vermem.circuits import evaluation, mib, search, transfer
from vermem.core import files, progress, stats
from vermem.workflow import resources

with rule(snakemake) as log:
    p, wc = snakemake.params, snakemake.wildcards
    cfg = p.config
    # the batch that fits gpu_memory_gb, or a one-line error, before the model is loaded
    batch = resources.circuit_batch(files.read_json(snakemake.input.model), snakemake.config)
    record, model, g, _ = model_graph_pairs(snakemake, "evaluation")
    sel_pairs, ev_pairs = evaluation.split_sets(pl.read_parquet(snakemake.input.pairs), wc.task,
                                              p.subset, snakemake.input.pairs,
                                              cfg["max_pairs"], p.seed)
    tensors, meta = storage.load(snakemake.input.scores)

    if p.select_on_evaluation:  # contrastive.split.selection = 0: the authors' design
        log.warning("no selection part: sizes are chosen on the evaluation pairs, so their "
                    "F is not held out (flagged in the claims)")
        sel_pairs = ev_pairs
    sel, ev = (evaluation.EvalSet.of_pairs(model, q, batch) for q in (sel_pairs, ev_pairs))
    n_attr = int(meta.get("n_examples", 0))
    usable = n_attr > 0 and sel.n > 0 and ev.n > 0
    if not usable:
        log.warning("%s / %s: %d attribution, %d selection, %d evaluation pairs: no curve, "
                    "no circuit", wc.task, p.subset, n_attr, sel.n, ev.n)
    modes = evaluation.modes(cfg["directions"], cfg["placements"], cfg["ablations"])
    random_modes = [m for m in modes if {"placement": m.placement, "ablation": m.ablation}
                    in cfg["random_modes"]]
    # each mode ranked by its own direction's attribution (a file without de-noising
    # scores ranks both by the noising ones)
    by_dir = {d: storage.direction_scores(tensors, d) for d in evaluation.DIRECTIONS}
    with evaluation.small_gaps() as small:  # modes whose F is noise (|M(full) - M(empty)| tiny)
        curve, minimal = search.sweep(
            model, g, sel, ev, by_dir, modes if usable else [],
            evaluation.log_sizes(g.n_edges, cfg["curve_points"]), range(cfg["random_seeds"]),
            random_modes, cfg["target"], cfg["metric"], stats.Bootstrap(**cfg["bootstrap"]),
            cfg["circuits_per_forward"], cfg["search_width"], cfg["random_points"],
            cfg["criterion"], cfg["search"], progress=log.info)
    for message in small:
        log.warning("%s", message)
    mib_table = None
    if "mib" in snakemake.output.keys():  # the final model's circuits (not at checkpoints)
        mib_table = mib.score(model, g, ev, by_dir, modes if usable else [], cfg["metric"],
                              stats.Bootstrap(**cfg["bootstrap"]), cfg["circuits_per_forward"],
                              range(cfg["random_seeds"]), meta.get("method", ""), random_modes,
                              progress=log.info).select(pl.lit(wc.task).alias("task"),
                                       pl.lit(p.subset).alias("subset"), pl.all())
    flat = {d: t.flatten() for d, t in by_dir.items()}
    main = cfg["main"]
    pair = [minimal.get(evaluation.Mode(d, main["placement"], main["ablation"]))
            for d in evaluation.DIRECTIONS]
    record_out = {
        "model": record["name"], "revision": record["revision"], "task": wc.task,
        "subset": p.subset, "n_edges": g.n_edges, "n_pairs": ev.n, "n_selection": sel.n,
        "target": cfg["target"], "band": [cfg["target"], 2 - cfg["target"]],
        "criterion": cfg["criterion"], "search": cfg["search"],
        "selection_on_evaluation": bool(p.select_on_evaluation),
        "metric": cfg["metric"], "rank_by": cfg["rank_by"], "n_layers": g.shape.n_layers,
        "n_heads": g.shape.n_heads, "attribution_pairs": n_attr,
        "selection_docs": sorted(set(sel_pairs["doc_id"])),
        "evaluation_docs": sorted(set(ev_pairs["doc_id"])),
        "not_found": [{"direction": m.direction, "placement": m.placement,
                       "ablation": m.ablation} for m in (modes if usable else [])
                      if m not in minimal],
        "circuits": [{"direction": m.direction, "placement": m.placement,
                      "ablation": m.ablation, "semantics": transfer.semantics(wc.task,
                                                                              m.direction),
                      "share": v["k"] / g.n_edges, "n_edges": g.n_edges,
                      **{k: x for k, x in v.items() if k != "edges"},
                      "edge_index": v["edges"],
                      "edges": g.edge_names(torch.tensor(v["edges"], dtype=torch.long)),
                      "scores": [float(flat[m.direction][i]) for i in v["edges"]]}
                     for m, v in minimal.items()],
        "ranked_by": {d: "scores_denoising" if d == "denoising" and "scores_denoising"
                      in tensors else "scores" for d in evaluation.DIRECTIONS},
        # the main mode's noising and de-noising minimal circuits: how much the two
        # directions' rankings agree where it matters (None: a direction has no circuit)
        "direction_overlap": {
            "placement": main["placement"], "ablation": main["ablation"],
            **evaluation.edge_overlap(*(None if c is None else c["edges"] for c in pair),
                                    ("noising", "denoising"))},
        # mode and pair set where F is not meaningful (circuits.check_gap)
        "small_gap": {"threshold": evaluation.MIN_GAP, "count": len(small), "where": small},
        "provenance": files.provenance(cfg, model=record["name"]),
    }
    files.write_parquet(curve, snakemake.output.curve,
                     files.provenance(cfg, model=record["name"], revision=record["revision"]))
    if mib_table is not None:
        files.write_parquet(mib_table, snakemake.output.mib,
                         files.provenance(cfg, model=record["name"], revision=record["revision"]))
        for r in mib_table.filter(pl.col("circuit") == "attribution").iter_rows(named=True):
            log.info("MIB %s/%s/%s: CPR %s [%s, %s], CMD %s [%s, %s] (n = %d pairs)",
                     r["direction"], r["placement"], r["ablation"], *(
                         "-" if r[k] is None else f"{r[k]:.3f}" for k in
                         ("cpr", "cpr_lo", "cpr_hi", "cmd", "cmd_lo", "cmd_hi")), r["n_pairs"])
    files.write_json(record_out, snakemake.output.minimal)
    # the main mode's minimal circuit of each direction in the EAP-IG library's graph JSON
    for d, path in zip(cfg["directions"], snakemake.output.eap, strict=True):
        mode = evaluation.Mode(d, main["placement"], main["ablation"])
        eap_json.write_circuit(path, g, by_dir[d], minimal.get(mode), {
            **{k: record_out[k] for k in ("model", "revision", "task", "subset", "metric",
                                          "rank_by")},
            "direction": d, "semantics": transfer.semantics(wc.task, d),
            "placement": main["placement"], "ablation": main["ablation"],
            "ranked_by": record_out["ranked_by"][d]})
    ov = record_out["direction_overlap"]
    log.info("main mode: noising and de-noising minimal circuits share %s edges (Jaccard %s)",
             ov["shared"], "-" if ov["jaccard"] is None else f"{ov['jaccard']:.2f}")

    r3 = progress.number  # numbers as a person reads them
    for c in record_out["circuits"]:
        log.info("%s/%s/%s: minimal circuit %d edges [%s, %s] (selection, n = %d), "
                 "F = %s [%s, %s] on %d evaluation pairs", c["direction"], c["placement"],
                 c["ablation"], c["k"], r3(c["k_lo"]), r3(c["k_hi"]), sel.n,
                 r3(c["faithfulness"]), r3(c["faithfulness_lo"]), r3(c["faithfulness_hi"]),
                 ev.n)
