"""Rule figure_attribution_layers: the layer x node-type heatmap of each attribution file of
a model (memorization tasks x subsets x metrics)."""

from _rule import rule

from vermem.attribution import storage
from vermem.report.figures import common, study_a

with rule(snakemake):
    for scores, figure in zip(snakemake.input.scores, snakemake.output.figures, strict=True):
        tensors, meta = storage.load(scores)
        title = (f"{meta['model']}: {meta['task'].replace('_', ' ')}, {meta['subset']}, "
                 f"{meta['metric']} (n = {meta['n_examples']})")
        if meta.get("empty") or not meta["n_examples"]:
            fig = common.empty_figure(title, "no attribution pairs (n = 0):\nno edge scores, "
                                      "nothing to draw")
        else:
            per_layer = {"noising": tensors["per_layer"]}
            if "per_layer_denoising" in tensors:
                per_layer["denoising"] = tensors["per_layer_denoising"]
            fig = study_a.layer_heatmap(per_layer, meta["per_layer_columns"], title)
        common.save(fig, figure)
