"""Rule figure_attribution_layers: layer x node-type heatmap of one attribution file."""

from _rule import rule

from vermem.attribution import storage
from vermem.report.figures import common, study_a

with rule(snakemake):
    tensors, meta = storage.load(snakemake.input.scores)
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
    common.save(fig, snakemake.output.figure)
