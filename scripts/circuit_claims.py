"""Rule circuit_claims: the paper's claims (docs/study-a.md §11) against this run's own numbers,
each with n, intervals (combined cells: from the joint bootstrap's replicates), random
circuits of the same size and a three-way verdict; and, with the controls, whether each
memorization circuit is specific to memorization (vermem.report.claims)."""

from _rule import rule

from vermem.core import files
from vermem.report import claims
from vermem.report.settings import ClaimSettings

with rule(snakemake) as log:
    p, out, model = snakemake.params, snakemake.output, snakemake.wildcards.model
    inputs = dict(snakemake.input.items())
    table = claims.of_files(inputs, ClaimSettings.from_config(p.config))
    files.write_parquet(table, out.table, files.provenance(p.config["circuits"], model=model))
    with files.atomic_path(out.csv) as tmp:
        table.write_csv(tmp)
    with files.atomic_path(out.html) as tmp:
        tmp.write_text(claims.to_html(table, f"{model}: the paper's claims"))
    for row in table.iter_rows(named=True):
        log.info("%s [%s]: %s -> %s (%s)", row["claim"], row["semantics"], row["evidence"],
                 row["verdict"], row["reason"])
