"""Rule summary: results/summary.md, what the run concludes, from its tables
(vermem.report.summary)."""

import polars as pl
from _rule import rule

from vermem.core import files
from vermem.report import summary

with rule(snakemake):
    p, inp = snakemake.params, snakemake.input
    models = {}
    for m in p.models:
        models[m] = {
            "labels": files.read_json(inp[f"labels.{m}"]),
            "pairs": files.read_json(inp[f"pairs.{m}"]),
            "minimal": [files.read_json(f) for f in inp[f"minimal.{m}"]],
            "claims": pl.read_parquet(inp[f"claims.{m}"]),
            "mib": (
                pl.concat([pl.read_parquet(f) for f in inp[f"mib.{m}"]])
                if f"mib.{m}" in inp.keys()
                else None
            ),
            "methods": (
                (
                    pl.read_parquet(inp[f"methods.{m}"]),
                    pl.read_parquet(inp[f"methods_agreement.{m}"]),
                )
                if f"methods.{m}" in inp.keys()
                else None
            ),
            "specificity": (
                pl.read_parquet(inp[f"specificity.{m}"])
                if f"specificity.{m}" in inp.keys()
                else None
            ),
            "checkpoints": (
                files.read_json(inp[f"checkpoints.{m}"])
                if f"checkpoints.{m}" in inp.keys()
                else None
            ),
            "location": (
                summary.stack_location(inp[f"location.{m}"])
                if f"location.{m}" in inp.keys()
                else None
            ),
            "location_mass": (
                summary.stack_location(inp[f"location_mass.{m}"])
                if f"location_mass.{m}" in inp.keys()
                else None
            ),
        }
    dynamics = files.read_json(inp["dynamics"]) if "dynamics" in inp.keys() else None
    found = (pl.read_parquet(inp["dynamics_findings"]) if "dynamics_findings" in inp.keys()
             else None)
    text = summary.render(models, dynamics, p.main, found)
    with files.atomic_path(snakemake.output.summary) as tmp:
        tmp.write_text(text)
    with files.atomic_path(snakemake.output.html) as tmp:
        tmp.write_text(summary.to_html(text))
