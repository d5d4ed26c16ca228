"""Location: attribution and circuits scored against a localized injection's known
components (recall of the injected nodes, attribution mass on them, memorized against
control pairs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import polars as pl
import torch

from vermem.attribution.settings import AttributionSettings
from vermem.circuits.settings import LocationSettings
from vermem.core.stats import Bootstrap

# -- 5. scoring a circuit against the known location ----------------------------------------

RECALL_SCHEMA = {"size": pl.String, "k": pl.Int64, "touched": pl.Int64, "recall": pl.Float64,
                 "recall_lo": pl.Float64, "recall_hi": pl.Float64, "n_docs": pl.Int64,
                 "random_recall": pl.Float64, "random_lo": pl.Float64, "random_hi": pl.Float64,
                 "random_at_least": pl.Float64}


@dataclass(frozen=True)
class DocumentScores:
    """Edge scores of one ranking's attribution pairs, summed per document."""
    sums: torch.Tensor    # [G, S, D] float64: the summed scores of each document's pairs
    counts: torch.Tensor  # [G] float64: its pairs

    def mean(self, weights: torch.Tensor | None = None) -> torch.Tensor:
        """[S, D] mean score over pairs, documents weighted by `weights` [G] (a resample's
        draw counts; None: each once, the attribution file's own mean)."""
        w = torch.ones_like(self.counts) if weights is None else weights.double()
        n = float(w @ self.counts)
        return torch.einsum("g,gsd->sd", w, self.sums) / (n if n else 1.0)


def document_scores(model, graph, pairs: pl.DataFrame, settings: AttributionSettings
                    ) -> dict[str, DocumentScores]:
    """Per direction of `settings`, the edge scores of `pairs` (clean, corrupt, answer,
    wrong, doc_id) summed per document, in sorted doc_id order: `attribution.run` on each
    document's pairs (`settings`: its method, steps, metric, batch_size, backend and
    directions; no position split)."""
    from vermem.attribution.scoring import DIRECTIONS
    from vermem.attribution.scoring import run as attribute

    settings = replace(settings, positions=False)
    directions = DIRECTIONS if settings.directions is None else settings.directions

    docs = sorted(set(pairs["doc_id"].to_list()))
    sums: dict[str, list[torch.Tensor]] = {d: [] for d in directions}
    counts = []
    for doc in docs:
        q = pairs.filter(pl.col("doc_id") == doc)
        out, n = attribute(model, graph, q["clean"].to_list(), q["corrupt"].to_list(),
                           q["answer"].to_list(), q["wrong"].to_list(), settings)
        for d in directions:
            sums[d].append(out["scores" if d == "noising" else f"scores_{d}"].double() * n)
        counts.append(float(n))
    shape = tuple(graph.mask.shape)
    return {d: DocumentScores(torch.stack(v) if v else torch.zeros((0, *shape),
                                                                   dtype=torch.float64),
                              torch.tensor(counts, dtype=torch.float64))
            for d, v in sums.items()}


def touched_nodes(graph, edges: torch.Tensor) -> set[str]:
    """Nodes an edge set ([S, D] bool mask) touches: every edge's source node and the
    component its destination belongs to (a head's q input: that head; a key/value input:
    every head of its group; an MLP; not the logits)."""
    out: set[str] = set()
    src, dst = edges.nonzero(as_tuple=True)
    for i in sorted(set(src.tolist())):
        out.add(graph.sources[i])
    for j in sorted(set(dst.tolist())):
        out.update(_destination_nodes(graph, graph.destinations[j]))
    out.discard("input")
    return out


def _destination_nodes(graph, name: str) -> list[str]:
    """The components a destination input belongs to: an MLP; a head's query input, that
    head; a key or value input, every query head of its group; the logits, none."""
    if name == "logits":
        return []
    if "<" not in name:
        return [name]
    s = graph.shape
    group = s.n_heads // s.n_kv_heads
    node, part = name[:-3], name[-2]
    layer, head = node[1:].split(".h")
    heads = [int(head)] if part == "q" else range(int(head) * group, (int(head) + 1) * group)
    return [f"a{layer}.h{h}" for h in heads]


def location_recall(graph, scores: torch.Tensor, injected: Sequence[str],
                    minimal_k: int | None, seeds: int = 100, level: float = 0.95,
                    documents: DocumentScores | None = None,
                    boot: Bootstrap | None = None) -> pl.DataFrame:
    """Recall of the injected components (node names, `Component.node`) among the nodes
    touched by the top-k edges by |score| (`circuits.ranking`), at the minimal size
    `minimal_k` (row size 'minimal'; none when None) and at each MIB fraction p of the
    edges (k = int(p E), at least 1), against `seeds` random circuits of the same k: their
    mean recall, its central `level` interval, and the share of them that reach the
    circuit's recall (a permutation p-value). With `documents` (the per-document sums
    behind `scores`) and `boot`, the circuit's recall also gets the percentile interval of
    `boot`'s resamples of those documents, each ranking its resample's mean scores
    (recall_lo, recall_hi; n_docs the documents; NaN and 0 without)."""
    from vermem.circuits.evaluation import circuit, random_ranking, ranking
    from vermem.circuits.mib import FRACTIONS

    wanted = set(injected)
    if not wanted:
        raise ValueError("no injected components to score against")
    unknown = wanted - set(graph.sources)
    if unknown:
        raise ValueError(f"not nodes of the graph: {sorted(unknown)}")
    n_edges = int(graph.mask.sum())
    sizes = [] if minimal_k is None else [("minimal", int(minimal_k))]
    sizes += [(f"{p:g}", max(1, int(p * n_edges))) for p in FRACTIONS]
    order = ranking(graph, scores)
    randoms = [random_ranking(graph, seed) for seed in range(seeds)]
    n_docs = 0 if documents is None else int(documents.counts.numel())
    resampled = []  # the rankings of the attribution documents' resamples
    if documents is not None and boot is not None and n_docs:
        w = boot.indices(n_docs)
        resampled = [ranking(graph, documents.mean(w[b])) for b in range(w.shape[0])]
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)

    def recall(edges: torch.Tensor) -> tuple[float, int]:
        nodes = touched_nodes(graph, edges)
        return len(nodes & wanted) / len(wanted), len(nodes)

    rows = []
    for label, k in sizes:
        r, n = recall(circuit(graph, order, k))
        rand = torch.tensor([recall(circuit(graph, o, k))[0] for o in randoms],
                            dtype=torch.float64)
        lo, hi = torch.quantile(rand, q).tolist()
        r_lo = r_hi = float("nan")
        if resampled:
            reps = torch.tensor([recall(circuit(graph, o, k))[0] for o in resampled],
                                dtype=torch.float64)
            r_lo, r_hi = (float(x) for x in boot.interval(reps))
        rows.append({"size": label, "k": k, "touched": n, "recall": r,
                     "recall_lo": r_lo, "recall_hi": r_hi, "n_docs": n_docs,
                     "random_recall": float(rand.mean()), "random_lo": lo, "random_hi": hi,
                     "random_at_least": float((rand >= r - 1e-12).double().mean())})
    return pl.DataFrame(rows, schema=RECALL_SCHEMA)


LOCATION_SEEDS = 200  # random circuits per size: no forward pass, so many are cheap


def circuit_location(graph, by_direction: Mapping[str, torch.Tensor],
                     minimal_k: Mapping[str, int | None], injected: Sequence[str],
                     seeds: int = LOCATION_SEEDS, level: float = 0.95,
                     documents: Mapping[str, DocumentScores] | None = None,
                     boot: Bootstrap | None = None) -> pl.DataFrame:
    """`location_recall` of each direction's ranking (`by_direction`: direction -> edge
    scores) at its minimal size (`minimal_k`: None where no circuit was found) and MIB's
    sizes, with the bootstrap over `documents[direction]` where given; a row per direction
    and size, with the injected components named."""
    names = ",".join(sorted(injected))
    docs = documents or {}
    return pl.concat([
        location_recall(graph, scores, injected, minimal_k.get(d), seeds, level,
                        documents=docs.get(d), boot=boot)
        .with_columns(pl.lit(d).alias("direction"), pl.lit(names).alias("injected"))
        .select("direction", *RECALL_SCHEMA, "injected")
        for d, scores in sorted(by_direction.items())])


MASS_SCHEMA = {"direction": pl.String, "mass": pl.Float64, "mass_lo": pl.Float64,
               "mass_hi": pl.Float64, "edge_share": pl.Float64, "n_docs": pl.Int64,
               "n_pairs": pl.Int64, "replicates": pl.List(pl.Float64), "injected": pl.String}


def touching(graph, injected: Sequence[str]) -> torch.Tensor:
    """[S, D] bool: the graph's edges that touch an injected component (as `touched_nodes`
    counts it: the source is one, or the destination belongs to one)."""
    wanted = set(injected)
    src = torch.tensor([n in wanted for n in graph.sources])
    dst = torch.tensor([bool(wanted & set(_destination_nodes(graph, name)))
                        for name in graph.destinations])
    return (src[:, None] | dst[None, :]) & graph.mask


def location_mass(graph, documents: Mapping[str, DocumentScores], injected: Sequence[str],
                  boot: Bootstrap) -> pl.DataFrame:
    """Share of the ranking's attribution mass (sum of |edge score| over the graph's edges)
    on the edges that touch the injected components, per direction, with the percentile
    interval of `boot`'s resamples of the attribution documents (`replicates` kept, so two
    rankings on disjoint documents can be compared), next to those edges' share of all
    edges (the mass of scores spread evenly). A score that does not depend on a circuit
    size: where the top-k recall saturates (a small graph), this still separates
    rankings (MASS_SCHEMA; NaN mass without documents)."""
    touch = touching(graph, injected).double()
    share = float(touch.sum() / graph.mask.sum())
    names = ",".join(sorted(injected))
    nan = float("nan")

    def mass(scores: torch.Tensor) -> float:
        a = scores.abs() * graph.mask
        total = float(a.sum())
        return float((a * touch).sum()) / total if total else nan

    rows = []
    for d, docs in sorted(documents.items()):
        g = int(docs.counts.numel())
        if not g or float(docs.counts.sum()) == 0:
            rows.append({"direction": d, "mass": nan, "mass_lo": nan, "mass_hi": nan,
                         "edge_share": share, "n_docs": g, "n_pairs": 0, "replicates": [],
                         "injected": names})
            continue
        w = boot.indices(g)
        reps = torch.tensor([mass(docs.mean(w[b])) for b in range(w.shape[0])],
                            dtype=torch.float64)
        lo, hi = boot.interval(reps)
        rows.append({"direction": d, "mass": mass(docs.mean()), "mass_lo": float(lo),
                     "mass_hi": float(hi), "edge_share": share, "n_docs": g,
                     "n_pairs": int(docs.counts.sum()), "replicates": reps.tolist(),
                     "injected": names})
    return pl.DataFrame(rows, schema=MASS_SCHEMA)


def locate(model, graph, pairs: pl.DataFrame, tensors: Mapping[str, torch.Tensor],
           minimal: Mapping[str, Any], injected: Sequence[str], settings: LocationSettings
           ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(`circuit_location` table, `location_mass` table) of one task's and subset's ranking
    (`tensors`, the ranking file's) and minimal circuits (`minimal`, the circuit rule's
    record; main mode) against the `injected` components, with the bootstrap over the
    attribution documents of `pairs` (each document attributed again, `document_scores`).
    Attribution pairs 0: the ranking is no ranking (the circuit rule found no curve)."""
    import logging

    from vermem.attribution import storage
    from vermem.circuits.checkpoints import main_circuit

    log = logging.getLogger(__name__)
    directions = settings.attribution.directions
    by_dir, ks = {}, {}
    for d in directions:
        by_dir[d] = storage.direction_scores(tensors, d)
        c = main_circuit(minimal, d, settings.main)
        ks[d] = None if c is None or c.get("k") is None else int(c["k"])
    # each attribution document's summed scores: a resample of documents ranks their mean
    docs = document_scores(model, graph, pairs, settings.attribution)
    for d, s in docs.items():
        if s.counts.numel():
            gap = float((s.mean().float() - by_dir[d]).abs().max())
            log.info("%s: %d documents, %d pairs; largest difference from the attribution "
                     "file's scores %.2g", d, s.counts.numel(), int(s.counts.sum()), gap)
    boot = settings.boot
    table = circuit_location(graph, by_dir, ks, injected, level=boot.level, documents=docs,
                             boot=boot).with_columns(
        pl.lit(int(minimal.get("attribution_pairs", 0))).alias("attribution_pairs"))
    log.info("injected %s; minimal sizes %s", injected, ks)
    return table, location_mass(graph, docs, injected, boot)
