"""vermem graphs in the EAP-IG library's graph JSON (vermem.attribution.eap_json): names and order
as
the library's `Graph.from_model` / `to_json` make them (written out here by hand from its
code), scores and membership surviving a round trip through JSON text."""

import json

import pytest
import torch

from vermem.attribution import eap_json as X
from vermem.attribution.graph import Graph, Shape, expected_edges


def synthetic(shape: Shape, seed: int = 0):
    g = Graph(shape)
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(g.mask.shape, generator=gen) * g.mask
    member = (torch.rand(g.mask.shape, generator=gen) < 0.3) & g.mask
    return g, scores, member


def through_text(d):
    return json.loads(json.dumps(d))


@pytest.mark.parametrize("parallel", [False, True])
def test_names_order_and_cfg_follow_the_library(parallel):
    g, scores, member = synthetic(Shape(3, 4, 4, 8, parallel))
    d = through_text(X.to_eap_json(g, scores, member))
    assert list(d) == ["cfg", "nodes", "edges"]
    assert d["cfg"] == {"n_layers": 3, "n_heads": 4, "parallel_attn_mlp": parallel,
                        "d_model": 8}
    assert list(d["nodes"]) == ["input", "a0.h0", "a0.h1", "a0.h2", "a0.h3", "m0",
                                "a1.h0", "a1.h1", "a1.h2", "a1.h3", "m1",
                                "a2.h0", "a2.h1", "a2.h2", "a2.h3", "m2", "logits"]
    names = list(d["edges"])
    # the library: 3H q/k/v inputs per layer for each upstream node, its MLP, the logits
    assert len(names) == expected_edges(g.shape) == g.n_edges
    assert names[:4] == ["input->a0.h0<q>", "input->a0.h0<k>", "input->a0.h0<v>",
                         "input->a0.h1<q>"]
    # from_model: parallel, each upstream node into the heads then the MLP; sequential,
    # every upstream node into the heads, then every node (the layer's heads too) into the MLP
    assert names[12] == "input->m0"
    assert names[13] == ("input->a1.h0<q>" if parallel else "a0.h0->m0")
    assert ("a2.h0->m2" in d["edges"]) is not parallel
    assert names[-1] == "m2->logits" and names[-16] == "input->logits"

    def score(src, dst):
        return float(scores[g.sources.index(src), g.destinations.index(dst)])

    # the edge from head 1 of layer 0 into head 3 of layer 2's query input
    assert d["edges"]["a0.h1->a2.h3<q>"]["score"] == score("a0.h1", "a2.h3<q>")
    assert d["edges"]["m1->logits"]["score"] == score("m1", "logits")
    assert d["edges"]["input->m0"]["in_graph"] == bool(member[0, g.mlp_dest(0)])
    assert d["nodes"]["logits"] == {"in_graph": True}


@pytest.mark.parametrize("parallel", [False, True])
def test_scores_and_membership_survive_a_round_trip(parallel, tmp_path):
    g, scores, member = synthetic(Shape(3, 4, 4, 8, parallel), seed=1)
    meta = {"task": "branch_comparison", "direction": "noising"}
    X.write_eap_json(tmp_path / "g.eap.json", X.to_eap_json(g, scores, member, meta))
    raw = json.loads((tmp_path / "g.eap.json").read_text())
    assert raw[X.META_KEY] == meta
    back, s2, m2 = X.read_eap_json(tmp_path / "g.eap.json")
    assert back.shape == g.shape
    assert torch.equal(s2, scores.float()) and torch.equal(m2, member)
    # nothing in the graph: what the library writes for a graph it has only attributed
    empty = through_text(X.to_eap_json(g, scores))
    assert not any(e["in_graph"] for e in empty["edges"].values())
    assert [n for n, v in empty["nodes"].items() if v["in_graph"]] == ["logits"]


def test_grouped_query_attention_splits_a_shared_key_value_input_in_equal_shares():
    """4 query heads, 2 key/value heads: the library's ungrouped graph has a k and a v input
    per query head; query heads 2 and 3 read kv head 1."""
    g, scores, member = synthetic(Shape(2, 4, 2, 8, False), seed=2)
    d = through_text(X.to_eap_json(g, scores, member))
    assert d["cfg"]["n_key_value_heads"] == 2
    # per layer l with u = 1 + 5 l upstream nodes: 3 H u q/k/v edges and u + H into the MLP
    assert len(d["edges"]) == sum(3 * 4 * (1 + 5 * lay) + (1 + 5 * lay) + 4
                                  for lay in range(2)) + 11
    kv = float(scores[g.sources.index("m0"), g.destinations.index("a1.h1<k>")])
    for h in (2, 3):
        assert d["edges"][f"m0->a1.h{h}<k>"]["score"] == pytest.approx(kv / 2, rel=1e-12)
    assert d["edges"]["m0->a1.h3<q>"]["score"] == float(
        scores[g.sources.index("m0"), g.destinations.index("a1.h3<q>")])
    _, s2, m2 = X.from_eap_json(d)
    assert torch.allclose(s2, scores, rtol=1e-6, atol=0) and torch.equal(m2, member)


def test_node_membership_is_the_library_s_rule():
    """In the graph: an edge out and, but for the input, an edge in; logits always."""
    g = Graph(Shape(2, 2, 2, 4, True))
    member = torch.zeros(g.mask.shape, dtype=torch.bool)
    member[g.sources.index("a0.h1"), -1] = True  # a0.h1 -> logits, nothing into a0.h1
    nodes = X.to_eap_json(g, torch.zeros(g.mask.shape), member)["nodes"]
    assert [n for n, v in nodes.items() if v["in_graph"]] == ["logits"]
    member[0, g.destinations.index("a0.h1<v>")] = True  # input -> a0.h1<v>
    nodes = X.to_eap_json(g, torch.zeros(g.mask.shape), member)["nodes"]
    assert [n for n, v in nodes.items() if v["in_graph"]] == ["input", "a0.h1", "logits"]


def test_a_file_of_another_shape_is_refused_in_one_line():
    g, scores, member = synthetic(Shape(2, 2, 2, 4, True))
    d = X.to_eap_json(g, scores, member)
    d["cfg"]["parallel_attn_mlp"] = False  # now the MLPs would read their layer's heads
    with pytest.raises(X.InterchangeError, match=r"edge 'a0.h0->m0' is missing") as e:
        X.from_eap_json(d)
    assert "\n" not in str(e.value)
    with pytest.raises(X.InterchangeError, match="no edges"):
        X.from_eap_json({"cfg": d["cfg"], "nodes": {}})
    with pytest.raises(X.InterchangeError, match="scores of shape"):
        X.to_eap_json(g, scores[:, :-1])


def test_the_rules_files_attribution_and_circuit(tmp_path):
    """What scripts/attribution.py and scripts/circuit.py write: the noising scores with no
    edge in the graph; a minimal circuit's edges (flat indices, its record) in the graph
    with the direction's scores, and a circuit not found as an empty graph that says so."""
    g, scores, _ = synthetic(Shape(2, 2, 2, 4, True), seed=3)
    meta = {"model": "organism", "task": "branch_comparison", "subset": "s", "metric":
            "logit_diff", "method": "EAP-IG", "ig_steps": 5, "n_examples": 3, "empty": False,
            "provenance": {"config_hash": "x"}}
    X.write_attribution(tmp_path / "a.eap.json", g, scores, meta)
    raw = json.loads((tmp_path / "a.eap.json").read_text())
    assert raw[X.META_KEY] == {**{k: v for k, v in meta.items() if k != "provenance"},
                               "direction": "noising"}
    _, s2, m2 = X.read_eap_json(tmp_path / "a.eap.json")
    assert torch.equal(s2, scores) and not m2.any()
    flat = g.mask.flatten().nonzero()[:, 0][[0, 5, 9]].tolist()
    circuit = {"k": 3, "faithfulness": 0.9, "edges": flat}
    X.write_circuit(tmp_path / "c.eap.json", g, scores, circuit, {"direction": "denoising"})
    raw = json.loads((tmp_path / "c.eap.json").read_text())
    assert raw[X.META_KEY] == {"direction": "denoising", "found": True,
                               "circuit": {"k": 3, "faithfulness": 0.9}}
    assert sorted(n for n, e in raw["edges"].items() if e["in_graph"]) == sorted(
        g.edge_names(torch.tensor(flat)))
    _, s3, m3 = X.read_eap_json(tmp_path / "c.eap.json")
    assert torch.equal(s3, scores) and m3.flatten().nonzero()[:, 0].tolist() == flat
    X.write_circuit(tmp_path / "none.eap.json", g, scores, None, {"direction": "noising"})
    raw = json.loads((tmp_path / "none.eap.json").read_text())
    assert raw[X.META_KEY]["found"] is False and raw[X.META_KEY]["circuit"] is None
    assert not any(e["in_graph"] for e in raw["edges"].values())
