"""Rule context_dependence: memorized recall and its controls with all but the last r
prefix tokens replaced or cut off (vermem.data.context), curves with cluster-bootstrap
intervals and the r the Distant Context task's rule suggests (figure:
figure_context_dependence)."""

import polars as pl
from _rule import rule

from vermem.core import files, stats
from vermem.data import context, contrastive
from vermem.data.settings import ContextSettings
from vermem.models import loading

with rule(snakemake) as log:
    p, out = snakemake.params, snakemake.output
    st = ContextSettings.from_config(p.config)
    record = files.read_json(snakemake.input.model)
    model, _ = loading.load(record, p.device)
    labels = pl.read_parquet(snakemake.input.labels)
    strata = None  # as rule pairs: the same parts, hence the same source windows
    if "duplicates" in snakemake.input.keys():
        dup = pl.read_parquet(snakemake.input.duplicates, columns=["doc_id", "dup_count"])
        strata = dict(zip(dup["doc_id"], dup["dup_count"], strict=True))
    docs = pl.read_parquet(snakemake.input.candidates, columns=["doc_id", "subset"])
    parts = contrastive.document_parts(docs, st.pairs.seed, st.pairs.fractions, strata)
    rows = context.samples(pl.read_parquet(snakemake.input.pairs), labels)
    tokens, _, missing = contrastive.source_windows(rows, labels, parts, st.pairs.seed)
    table = context.measure(model, rows, tokens, st.radii, st.continuation_tokens,
                            st.pairs.batch_size)
    strata_docs = {s: g["doc_id"].to_list() for (s,), g in table.group_by("subset")}
    curves = context.curves(table, stats.Resampler(stats.Bootstrap(**st.bootstrap), strata_docs))
    prov = files.provenance(p.config, model=record["name"], revision=record["revision"])
    files.write_parquet(table, out.table, prov)
    files.write_parquet(curves, out.curves, prov)
    files.write_json(context.summary(curves, st.pairs.distant_r, dict(missing)), out.summary)
    log.info("%d samples, %d rows", rows.height, table.height)
