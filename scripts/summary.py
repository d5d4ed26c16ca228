"""Rule summary: results/summary.md, what the run concludes, from its tables
(vermem.report.summary)."""

from _rule import rule

from vermem.core import files
from vermem.report import summary

with rule(snakemake):
    p = snakemake.params
    models, dynamics, found = summary.read_inputs(dict(snakemake.input.items()), p.models)
    text = summary.render(models, dynamics, p.main, found)
    with files.atomic_path(snakemake.output.summary) as tmp:
        tmp.write_text(text)
    with files.atomic_path(snakemake.output.html) as tmp:
        tmp.write_text(summary.to_html(text))
