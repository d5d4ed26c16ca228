"""Rule figure_attribution_layers: layer x node-type heatmap of one attribution file."""

from _rule import rule

from vermem import attribution, plots

with rule(snakemake):
    tensors, meta = attribution.load(snakemake.input.scores)
    title = (f"{meta['model']}: {meta['task'].replace('_', ' ')}, {meta['subset']}, "
             f"{meta['metric']} (n = {meta['n_examples']})")
    plots.save(plots.layer_heatmap(tensors["per_layer"], meta["per_layer_columns"], title),
               snakemake.output.figure)
