import pytest
import torch

from vermem.attribution.graph import Graph, Shape, expected_edges

GPT2_SMALL = Shape(n_layers=12, n_heads=12, n_kv_heads=12, d_model=768, parallel=False)


def test_gpt2_small_shaped_graph_has_32491_edges():
    g = Graph(GPT2_SMALL)
    assert g.n_edges == 32_491  # the published count for GPT-2 small / GPT-Neo-125M
    assert len(g.sources) == 1 + 12 * 13 and len(g.destinations) == 12 * 37 + 1


def test_gpt2_and_gpt_neo_configs_give_the_gpt2_small_shape():
    from transformers import GPT2Config, GPTNeoConfig

    assert Shape.from_config(GPT2Config()) == GPT2_SMALL  # n_layer, n_head, n_embd aliases
    neo = GPTNeoConfig(hidden_size=768, num_layers=12, num_heads=12,
                       attention_types=[[["global", "local"], 6]])
    assert Shape.from_config(neo) == GPT2_SMALL
    assert Graph(Shape.from_config(GPT2Config())).n_edges == 32_491


@pytest.mark.parametrize("name, layers, heads, width, edges", [
    ("pythia-70m", 6, 8, 512, 3_580),
    ("pythia-160m", 12, 12, 768, 32_491 - 12 * 12),  # no MLP <- same-layer head edges
    ("pythia-410m", 24, 16, 1024, 231_493),
    ("pythia-1b", 16, 8, 2048, 27_545),
])
def test_pythia_shapes_give_their_parallel_residual_counts(name, layers, heads, width, edges):
    shape = Shape(layers, heads, heads, width, parallel=True)
    assert Graph(shape).n_edges == expected_edges(shape) == edges


def test_parallel_residual_mlp_does_not_read_its_own_layers_heads():
    par, seq = Graph(Shape(3, 4, 4, 16, True)), Graph(Shape(3, 4, 4, 16, False))
    for layer in range(3):
        h0, h1 = par.head_sources(layer)
        m = par.mlp_dest(layer)
        assert not par.mask[h0:h1, m].any() and seq.mask[h0:h1, m].all()
        assert par.mask[: par.source_end(layer), m].all()
    assert seq.n_edges - par.n_edges == 3 * 4


def test_grouped_query_attention_has_one_destination_per_kv_head():
    g = Graph(Shape(2, 8, 2, 64, parallel=False))
    names = [d for d in g.destinations if d.startswith("a1.")]
    assert sum(n.endswith("<q>") for n in names) == 8
    assert [n for n in names if n.endswith("<k>")] == ["a1.h0<k>", "a1.h1<k>"]
    # layer 0: 12 attention inputs x 1 source, MLP reads input + 8 heads; layer 1: 12 x 10,
    # MLP 10 + 8; logits read all 19 sources
    assert g.n_edges == expected_edges(g.shape) == 12 * 1 + 9 + 12 * 10 + 18 + 19


def test_edges_only_point_downstream_and_names_index_the_dense_tensor():
    g = Graph(Shape(2, 2, 2, 8, True))
    assert g.mask[:, g.destinations.index("logits")].all()
    assert not g.mask[g.sources.index("a1.h0"), : g.attn_dest_range(1)[1]].any()
    flat = torch.tensor([g.sources.index("m0") * len(g.destinations)
                         + g.destinations.index("a1.h1<v>")])
    assert g.edge_names(flat) == ["m0->a1.h1<v>"]
