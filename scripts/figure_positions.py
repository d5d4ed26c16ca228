"""Rule figure_positions: share of the attribution mass by source position's distance to
the predicted position, memorized and control pairs, both tasks, one model and subset."""

import polars as pl
from _rule import rule

from vermem.attribution import positions, storage
from vermem.data import contrastive
from vermem.report.figures import common, position_profiles

with rule(snakemake):
    rows, files = [], []
    for kind, paths in (("memorized", snakemake.input.memorized),
                        ("control", snakemake.input.control)):
        for path in paths:
            tensors, meta = storage.load(path)
            task = contrastive.base_task(meta["task"])
            files.append({"task": task, "pairs": kind, "n_examples": int(meta["n_examples"])})
            rows += [{"task": task, "pairs": kind, **r}
                     for r in positions.position_mass(tensors, meta)]
    p = snakemake.params
    fig = position_profiles.position_mass(
        pl.DataFrame(rows), pl.DataFrame(files, schema={"task": pl.String, "pairs": pl.String,
                                                        "n_examples": pl.Int64}),
        f"{snakemake.wildcards.model}: attribution by source position, {p.subset} "
        f"({p.metric})\nmemorized pairs: threshold label; control pairs: non-memorized text")
    common.save(fig, snakemake.output.figure)
