"""Attributions and circuits in the EAP-IG library's graph JSON, so that EAP-IG
(hannamw/EAP-IG, `eap/graph.py`: `Graph.from_json`) and MIB's circuit track
(`load_graph_from_json`) load them.

The layout, as the library's `Graph.to_json` writes it:

    {"cfg": {"n_layers", "n_heads", "parallel_attn_mlp", "d_model"},
     "nodes": {name: {"in_graph": bool}},               # input, a{l}.h{h}, m{l}, logits
     "edges": {name: {"score": float, "in_graph": bool}}}

nodes in the library's order (input; per layer its heads, then its MLP; logits last),
edges in the order its `Graph.from_model` adds them (per layer, every upstream node into
every head's q, k, v, head by head, and into the MLP; then every node into the logits).
Edge names are `parent->child`, with `<q>`, `<k>` or `<v>` after a head child:
`a0.h1->a2.h3<q>`, `input->m0`, `m1->logits`.

The mapping from vermem's graph (vermem/attribution/graph.py), which uses the same node names:

- sources, the MLP and logits destinations, and (without grouped-query attention) the
  q/k/v destinations are the library's one to one, score for score;
- grouped-query attention (K < H key/value heads) has no counterpart: the library's graph
  is always ungrouped (it requires `ungroup_grouped_query_attention`), one k and one v
  input per query head. vermem's key/value destination of kv head j (query heads
  j H/K .. (j + 1) H/K - 1 read it) becomes those H/K copies, each with an equal share of
  its score (the shares sum to it; the library would give each copy its own gradient)
  and its membership; `cfg` then also holds `n_key_value_heads` (not a key of the
  library's: it ignores it), and reading sums the shares back;
- node `in_graph` follows the library's rule (`apply_topn`): a node is in the graph when
  an edge out of it and, but for the input, an edge into it are; the logits always.
  The library's `evaluate_graph` prunes a graph to that rule before evaluating it, so a
  vermem circuit edge out of a node with no edge in is dropped there;
- scores are vermem's: mean over pairs of (a_s(corrupt) - a_s(clean)) . dM/dx_d summed
  over positions and d_model (the library's default `aggregation='sum'`), for vermem's
  metric M, in the direction the file names;
- what vermem knows beyond that (model, task, direction, faithfulness) goes under a
  top-level "vermem" key, which the library's readers ignore.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from vermem.attribution.graph import Graph, Shape
from vermem.core.errors import VermemError
from vermem.core.files import atomic_path

META_KEY = "vermem"


class InterchangeError(VermemError, ValueError):
    """A graph JSON that does not match the shape its cfg names; one line."""


def eap_cfg(shape: Shape) -> dict[str, Any]:
    """The library's graph cfg (what `Graph.from_model` reads), plus `n_key_value_heads`
    where grouped-query attention needs it."""
    cfg = {"n_layers": shape.n_layers, "n_heads": shape.n_heads,
           "parallel_attn_mlp": shape.parallel, "d_model": shape.d_model}
    if shape.n_kv_heads != shape.n_heads:
        cfg["n_key_value_heads"] = shape.n_kv_heads
    return cfg


def shape_of(cfg: Mapping[str, Any]) -> Shape:
    heads = int(cfg["n_heads"])
    return Shape(int(cfg["n_layers"]), heads, int(cfg.get("n_key_value_heads") or heads),
                 int(cfg["d_model"]), bool(cfg["parallel_attn_mlp"]))


def node_names(graph: Graph) -> list[str]:
    """The library's nodes in its order: vermem's sources, then the logits."""
    return [*graph.sources, "logits"]


def library_edges(graph: Graph) -> list[tuple[str, int, int, int]]:
    """(name, vermem source index, vermem destination index, copies) of every edge of the
    library's graph, in the library's order; `copies` is how many of the library's edges
    share that vermem edge (H/K for a key or value input with grouped-query attention,
    else 1)."""
    s = graph.shape
    H, K = s.n_heads, s.n_kv_heads
    rep = H // K
    src = {n: i for i, n in enumerate(graph.sources)}
    dst = {n: i for i, n in enumerate(graph.destinations)}
    out: list[tuple[str, int, int, int]] = []

    def into_heads(parent: str, layer: int) -> None:
        for h in range(H):
            for w in "qkv":
                own = h if w == "q" else h // rep  # the key/value head query head h reads
                out.append((f"{parent}->a{layer}.h{h}<{w}>", src[parent],
                            dst[f"a{layer}.h{own}<{w}>"], 1 if w == "q" else rep))

    def into(parent: str, child: str) -> None:
        out.append((f"{parent}->{child}", src[parent], dst[child], 1))

    residual = ["input"]
    for layer in range(s.n_layers):
        heads = [f"a{layer}.h{h}" for h in range(H)]
        if s.parallel:  # the MLP reads what the heads read
            for parent in residual:
                into_heads(parent, layer)
                into(parent, f"m{layer}")
            residual += [*heads, f"m{layer}"]
        else:
            for parent in residual:
                into_heads(parent, layer)
            residual += heads
            for parent in residual:
                into(parent, f"m{layer}")
            residual.append(f"m{layer}")
    for parent in residual:
        into(parent, "logits")
    return out


def node_membership(graph: Graph, in_graph: torch.Tensor) -> list[bool]:
    """Per source, the library's node rule: an edge out and (but for the input) an edge
    into one of its destinations (a head's q, k or v input, an MLP's input)."""
    s = graph.shape
    outgoing = in_graph.any(1)
    into = in_graph.any(0)  # per vermem destination
    ingoing = torch.zeros(len(graph.sources), dtype=torch.bool)
    ingoing[0] = True
    rep = s.n_heads // s.n_kv_heads
    for layer in range(s.n_layers):
        a0, _ = graph.attn_dest_range(layer)
        h0, _ = graph.head_sources(layer)
        H, K = s.n_heads, s.n_kv_heads
        for h in range(H):
            reads = [a0 + h, a0 + H + h // rep, a0 + H + K + h // rep]
            ingoing[h0 + h] = bool(into[reads].any())
        ingoing[graph.mlp_source(layer)] = bool(into[graph.mlp_dest(layer)])
    return (outgoing & ingoing).tolist()


def to_eap_json(graph: Graph, scores: torch.Tensor, in_graph: torch.Tensor | None = None,
                meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """vermem's [S, D] `scores` and edge membership `in_graph` (boolean [S, D]; None: no
    edge in the graph, as the library writes a graph it has only attributed) as the
    library's graph JSON (a dict for `json.dump`), with `meta` under "vermem"."""
    if scores.shape != graph.mask.shape:
        raise InterchangeError(f"scores of shape {tuple(scores.shape)} for a graph of "
                               f"{tuple(graph.mask.shape)}")
    member = (torch.zeros_like(graph.mask) if in_graph is None
              else in_graph.to(torch.bool) & graph.mask)
    sc = scores.detach().to(torch.float32).cpu().tolist()
    mem = member.tolist()
    nodes = {n: {"in_graph": bool(b)} for n, b in
             zip(graph.sources, node_membership(graph, member), strict=True)}
    nodes["logits"] = {"in_graph": True}
    edges = {name: {"score": sc[s][d] / copies if copies > 1 else sc[s][d],
                    "in_graph": mem[s][d]}
             for name, s, d, copies in library_edges(graph)}
    out: dict[str, Any] = {"cfg": eap_cfg(graph.shape), "nodes": nodes, "edges": edges}
    if meta is not None:
        out[META_KEY] = dict(meta)
    return out


def from_eap_json(d: Mapping[str, Any]) -> tuple[Graph, torch.Tensor, torch.Tensor]:
    """(vermem graph, [S, D] float32 scores, [S, D] boolean membership) of a graph JSON in
    the library's layout (from `to_eap_json` or the library's `Graph.to_json`). A key/value
    edge's copies (grouped-query attention) are summed back, in the graph if any is."""
    missing = [k for k in ("cfg", "nodes", "edges") if k not in d]
    if missing:
        raise InterchangeError(f"not an EAP-IG graph JSON: no {', '.join(missing)}")
    graph = Graph(shape_of(d["cfg"]))
    scores = torch.zeros(graph.mask.shape, dtype=torch.float64)
    member = torch.zeros(graph.mask.shape, dtype=torch.bool)
    edges = d["edges"]
    wanted = library_edges(graph)
    names = {name for name, *_ in wanted}
    extra = [n for n in edges if n not in names]
    absent = [n for n, *_ in wanted if n not in edges]
    if extra or absent:
        what = (f"edge {extra[0]!r} is not in" if extra else f"edge {absent[0]!r} is missing "
                f"from")
        raise InterchangeError(f"{what} the graph of cfg {dict(d['cfg'])} "
                               f"({len(extra)} unknown, {len(absent)} missing)")
    for name, s, t, _ in wanted:
        e = edges[name]
        scores[s, t] += float(e["score"])
        member[s, t] |= bool(e["in_graph"])
    return graph, scores.to(torch.float32), member


def edge_mask(graph: Graph, flat: Sequence[int]) -> torch.Tensor:
    """Boolean [S, D] of flat indices into the [S, D] scores (a circuit's `edges`)."""
    m = torch.zeros(graph.mask.numel(), dtype=torch.bool)
    m[torch.tensor(list(flat), dtype=torch.long)] = True
    return m.view(graph.mask.shape)


ATTRIBUTION_META = ("model", "revision", "task", "subset", "metric", "method", "ig_steps",
                    "n_examples", "empty")


def write_attribution(path: str | os.PathLike, graph: Graph, scores: torch.Tensor,
                      meta: Mapping[str, Any]) -> None:
    """The attribution rule's noising scores (what the library's `attribute` computes for
    the pairs as given) with no edge in the graph, as the library writes a graph it has
    only attributed; `meta`'s ATTRIBUTION_META keys under "vermem"."""
    keep = {k: meta[k] for k in ATTRIBUTION_META if k in meta}
    write_eap_json(path, to_eap_json(graph, scores, None, {**keep, "direction": "noising"}))


def write_circuit(path: str | os.PathLike, graph: Graph, scores: torch.Tensor,
                  circuit: Mapping[str, Any] | None, meta: Mapping[str, Any]) -> None:
    """One minimal circuit: every edge's ranking `scores`, in the graph its `edges` (flat
    indices, the circuit rule's record); None (not found, or no pairs): no edge in the
    graph, "found": false. The circuit's numbers (size, faithfulness, ...) go under
    "vermem"."""
    member = None if circuit is None else edge_mask(graph, circuit["edges"])
    details = None if circuit is None else {k: v for k, v in circuit.items() if k != "edges"}
    write_eap_json(path, to_eap_json(graph, scores, member,
                                     {**meta, "found": circuit is not None,
                                      "circuit": details}))


def write_eap_json(path: str | os.PathLike, obj: Mapping[str, Any]) -> None:
    """One line of JSON, keys in the library's order (as its `json.dump` writes them)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj) + "\n")


def read_eap_json(path: str | os.PathLike) -> tuple[Graph, torch.Tensor, torch.Tensor]:
    with open(path) as f:
        return from_eap_json(json.load(f))
