"""The computation graph of docs/study-a.md §7, as dense tensors with names (EAP-IG's layout).

Sources (what writes to the residual stream): the input embeddings, every attention head,
every MLP. Destinations (what reads it): every head's query, key and value input, every
MLP, the logits. `Graph.mask[s, d]` is True where source s is upstream of destination d:
an edge. Edge scores are a float tensor of the same [n_sources, n_destinations] shape.

Orders: sources = [input, a0.h0 .. a0.h{H-1}, m0, a1.h0, ...];
destinations per layer = [a{l}.h{h}<q> for h < H] + [<k> for kv heads] + [<v> for kv heads]
+ [m{l}], then logits. With grouped-query attention a key/value head shared by several
query heads is one destination (named by its kv-head index). In a parallel-residual layer
(GPT-NeoX/Pythia) the MLP does not read that layer's heads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from vermem.models.architecture import Shape  # the graph's layout comes from the model's shape


@dataclass
class Graph:
    shape: Shape
    sources: list[str] = field(init=False)
    destinations: list[str] = field(init=False)
    mask: torch.Tensor = field(init=False)  # [n_sources, n_destinations] bool

    def __post_init__(self) -> None:
        s = self.shape
        H, K, L = s.n_heads, s.n_kv_heads, s.n_layers
        self.sources = ["input"]
        self.destinations = []
        for layer in range(L):
            self.sources += [f"a{layer}.h{h}" for h in range(H)] + [f"m{layer}"]
            self.destinations += ([f"a{layer}.h{h}<q>" for h in range(H)]
                                  + [f"a{layer}.h{h}<k>" for h in range(K)]
                                  + [f"a{layer}.h{h}<v>" for h in range(K)] + [f"m{layer}"])
        self.destinations.append("logits")
        mask = torch.zeros(len(self.sources), len(self.destinations), dtype=torch.bool)
        for layer in range(L):
            before = self.source_end(layer)  # input and every node of earlier layers
            a0, a1 = self.attn_dest_range(layer)
            mask[:before, a0:a1] = True
            m = self.mlp_dest(layer)
            mask[: before if s.parallel else before + H, m] = True
        mask[:, -1] = True
        self.mask = mask

    # index helpers ------------------------------------------------------------------------
    @classmethod
    def of_model(cls, model: Any) -> Graph:
        """The graph of a loaded Hugging Face model (`Shape.from_config` of its config)."""
        return cls(Shape.from_config(model.config))

    def source_end(self, layer: int) -> int:
        """Number of sources upstream of layer `layer`'s attention (input + earlier layers)."""
        return 1 + layer * (self.shape.n_heads + 1)

    def head_sources(self, layer: int) -> tuple[int, int]:
        start = self.source_end(layer)
        return start, start + self.shape.n_heads

    def mlp_source(self, layer: int) -> int:
        return self.source_end(layer) + self.shape.n_heads

    def dests_per_layer(self) -> int:
        return self.shape.n_heads + 2 * self.shape.n_kv_heads + 1

    def attn_dest_range(self, layer: int) -> tuple[int, int]:
        start = layer * self.dests_per_layer()
        return start, start + self.shape.n_heads + 2 * self.shape.n_kv_heads

    def mlp_dest(self, layer: int) -> int:
        return (layer + 1) * self.dests_per_layer() - 1

    @property
    def n_edges(self) -> int:
        return int(self.mask.sum())

    def edge_names(self, index: torch.Tensor) -> list[str]:
        """Names 'source->destination' of flat indices into the [S, D] score tensor."""
        n_d = len(self.destinations)
        return [f"{self.sources[i // n_d]}->{self.destinations[i % n_d]}" for i in index.tolist()]


def expected_edges(shape: Shape) -> int:
    """The edge count the architecture implies, by counting (independent of `Graph`)."""
    H, K, L = shape.n_heads, shape.n_kv_heads, shape.n_layers
    total = 0
    for layer in range(L):
        upstream = 1 + layer * (H + 1)
        total += (H + 2 * K) * upstream
        total += upstream + (0 if shape.parallel else H)
    return total + 1 + L * (H + 1)
