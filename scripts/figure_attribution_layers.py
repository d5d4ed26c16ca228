"""Rule figure_attribution_layers: layer x node-type heatmap of one attribution file."""

from _rule import rule

from vermem import attribution, plots

with rule(snakemake):
    tensors, meta = attribution.load(snakemake.input.scores)
    title = (f"{meta['model']}: {meta['task'].replace('_', ' ')}, {meta['subset']}, "
             f"{meta['metric']} (n = {meta['n_examples']})")
    if meta.get("empty") or not meta["n_examples"]:
        fig = plots.empty_figure(title, "no attribution pairs (n = 0):\nno edge scores, "
                                 "nothing to draw")
    else:
        fig = plots.layer_heatmap(tensors["per_layer"], meta["per_layer_columns"], title)
    plots.save(fig, snakemake.output.figure)
