"""Rule circuit_location: a localized injection's circuits scored against the components
that learned the planted documents (vermem.models.injection, step 5): recall of them among the
nodes the top edges touch, at the minimal size and MIB's sizes, against random circuits,
with a bootstrap interval over the attribution documents (vermem.circuits.location)."""

from dataclasses import replace

from _rule import model_graph_pairs, rule

from vermem.attribution import storage
from vermem.circuits import location
from vermem.circuits.settings import LocationSettings
from vermem.core import files
from vermem.models import injection
from vermem.workflow import resources

with rule(snakemake) as log:
    st = LocationSettings.from_config(snakemake.params.config)
    batch = resources.attribution_batch(files.read_json(snakemake.input.model), snakemake.config)
    st = replace(st, attribution=replace(st.attribution, batch_size=batch))
    record, model, g, pairs = model_graph_pairs(snakemake, "attribution")
    tensors, _ = storage.load(snakemake.input.scores)
    minimal = files.read_json(snakemake.input.minimal)
    nodes = [c.node for c in injection.components(record["trainable"])]
    table, mass = location.locate(model, g, pairs, tensors, minimal, nodes, st)
    prov = files.provenance(st.section, model=record["name"], revision=record["revision"])
    files.write_parquet(table, snakemake.output.table, prov)
    files.write_parquet(mass, snakemake.output.mass, prov)
    log.info("%s\n%s", table, mass.drop("replicates"))
