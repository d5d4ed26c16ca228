"""Attribution tensors on disk: per-layer sums and the full [S, D] scores in safetensors
with a JSON header (`save`, `load`), and the scores of one direction.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import torch

from vermem.attribution.graph import Graph
from vermem.core.files import atomic_path
from vermem.core.vocabulary import DIRECTIONS

# -- over a pair set, and on disk -----------------------------------------------------------

HEADER_KEY = "vermem"
LAYER_COLUMNS = ("into q", "into k", "into v", "into mlp", "from heads", "from mlp")


def per_layer(graph: Graph, scores: torch.Tensor) -> torch.Tensor:
    """Summed |score| per layer and node type, [L, len(LAYER_COLUMNS)]."""
    s = graph.shape
    a = scores.abs() * graph.mask
    out = torch.zeros(s.n_layers, len(LAYER_COLUMNS))
    H, K = s.n_heads, s.n_kv_heads
    for layer in range(s.n_layers):
        a0, _ = graph.attn_dest_range(layer)
        h0, h1 = graph.head_sources(layer)
        out[layer, 0] = a[:, a0: a0 + H].sum()
        out[layer, 1] = a[:, a0 + H: a0 + H + K].sum()
        out[layer, 2] = a[:, a0 + H + K: a0 + H + 2 * K].sum()
        out[layer, 3] = a[:, graph.mlp_dest(layer)].sum()
        out[layer, 4] = a[h0:h1].sum()
        out[layer, 5] = a[graph.mlp_source(layer)].sum()
    return out


def layer_tensors(graph: Graph, scores: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scores of the edges into each layer: 'layer{l}.attn' [upstream sources, H + 2K]
    and 'layer{l}.mlp' [upstream sources]; 'logits' [S]."""
    out = {}
    H = graph.shape.n_heads
    for layer in range(graph.shape.n_layers):
        up = graph.source_end(layer)
        a0, a1 = graph.attn_dest_range(layer)
        out[f"layer{layer}.attn"] = scores[:up, a0:a1].clone()
        m_up = up if graph.shape.parallel else up + H
        out[f"layer{layer}.mlp"] = scores[:m_up, graph.mlp_dest(layer)].clone()
    out["logits"] = scores[:, -1].clone()
    return out


def save(path: str | os.PathLike, graph: Graph, scores: torch.Tensor,
         meta: Mapping[str, object], scores_denoising: torch.Tensor | None = None,
         positions: torch.Tensor | None = None,
         positions_denoising: torch.Tensor | None = None,
         buckets: Sequence[Sequence[int]] | None = None) -> None:
    """Edge scores, edge mask, per-layer tensors and the layer x node-type summary, with
    node names and `meta` in the safetensors header; the de-noising direction's scores
    (`scores_denoising`, `per_layer_denoising`, `denoising.layer{l}.attn`, ...) and the
    position-resolved scores (`positions`, `positions_denoising` [K, S, D], their bucket
    edges `buckets` in the header as `position_buckets`) where given."""
    from safetensors.torch import save_file

    tensors = {"scores": scores.float().contiguous(), "mask": graph.mask.to(torch.uint8),
               "per_layer": per_layer(graph, scores), **layer_tensors(graph, scores.float())}
    if scores_denoising is not None:
        # own copies: safetensors refuses tensors that share memory with another
        tensors["scores_denoising"] = scores_denoising.float().contiguous().clone()
        tensors["per_layer_denoising"] = per_layer(graph, scores_denoising)
        tensors.update({f"denoising.{k}": v for k, v in
                        layer_tensors(graph, scores_denoising.float()).items()})
    for key, t in (("positions", positions), ("positions_denoising", positions_denoising)):
        if t is not None:
            tensors[key] = t.float().contiguous().clone()
    header = {"sources": graph.sources, "destinations": graph.destinations,
              "per_layer_columns": LAYER_COLUMNS, **meta}
    if buckets is not None:
        header["position_buckets"] = [list(map(int, b)) for b in buckets]
    # one metadata key holding sorted JSON: safetensors writes several keys in a
    # per-process order, and the file's bytes must not depend on the process
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={HEADER_KEY: json.dumps(header, sort_keys=True)})


def load(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = json.loads((f.metadata() or {}).get(HEADER_KEY, "{}"))
        return {k: f.get_tensor(k) for k in f.keys()}, meta


def direction_scores(tensors: Mapping[str, torch.Tensor], direction: str) -> torch.Tensor:
    """The [S, D] scores that rank `direction`'s circuits: `scores` for noising,
    `scores_denoising` for de-noising; a file without them (written before they existed,
    or empty) falls back to `scores`."""
    if direction == "denoising" and "scores_denoising" in tensors:
        return tensors["scores_denoising"]
    if direction not in DIRECTIONS:
        raise ValueError(f"{direction!r} is not one of {DIRECTIONS}")
    return tensors["scores"]
