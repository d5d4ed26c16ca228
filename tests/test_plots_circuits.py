"""The circuit drawing, transfer heatmap and memorization-score figures from synthetic
records: the properties that make them readable (legend, layout, threshold marker)."""

import matplotlib.colors as mcolors
import numpy as np
import polars as pl
import pytest
from matplotlib.patches import FancyArrowPatch

from vermem import plots

MAIN = {"placement": "outside", "ablation": "resample"}


def _minimal(edges, scores, n_layers=4, n_heads=4):
    c = {"direction": "noising", "placement": "outside", "ablation": "resample", "k": len(edges),
         "edges": edges, "scores": scores, "faithfulness": 0.9, "faithfulness_lo": 0.8,
         "faithfulness_hi": 1.0}
    return {"n_layers": n_layers, "n_heads": n_heads, "circuits": [c]}


def _offsets(ax):
    return {c.get_gid(): tuple(c.get_offsets()[0]) for c in ax.collections if c.get_gid()}


def test_circuit_drawing_has_a_key_for_colour_width_style_and_node_types():
    fig = plots.circuit_drawing(_minimal(["input->m0", "m0->logits"], [1.0, -0.5]), MAIN, "t")
    assert len(fig.legends) == 1
    labels = {t.get_text() for t in fig.legends[0].get_texts()}
    for want in ("positive score", "negative score", "attention head", "MLP",
                 "input / logits", "into a key", "into a value"):
        assert want in labels
    assert any("width" in label for label in labels)
    edges = {p.get_gid(): p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)}
    assert mcolors.to_hex(edges["input->m0"].get_edgecolor()) == mcolors.to_hex("C3")
    assert mcolors.to_hex(edges["m0->logits"].get_edgecolor()) == mcolors.to_hex("C0")
    assert edges["input->m0"].get_linewidth() > edges["m0->logits"].get_linewidth()


def test_mlp_nodes_stand_apart_from_their_heads_and_from_the_next_mlp():
    L, H = 4, 4
    fig = plots.circuit_drawing(_minimal(["input->m0"], [1.0], L, H), MAIN, "t")
    xy = _offsets(fig.axes[0])
    for layer in range(L):
        heads = {xy[f"a{layer}.h{h}"][0] for h in range(H)}
        assert xy[f"m{layer}"][0] not in heads
        assert xy[f"m{layer}"][0] > max(heads)   # right of the heads, not among them
        if layer:
            assert xy[f"m{layer}"][0] != xy[f"m{layer - 1}"][0]
    # nothing lies on the straight line from m0 to m2 (m1 is off it)
    assert xy["m0"][0] == xy["m2"][0] and xy["m1"][0] != xy["m0"][0]


def test_edges_that_skip_rows_bend_and_qkv_inputs_of_one_head_do_not_coincide():
    edges = ["m0->m2", "a0.h1->m0", "input->a1.h0<q>", "input->a1.h0<k>", "input->a1.h0<v>"]
    fig = plots.circuit_drawing(_minimal(edges, [1.0, 0.5, 0.3, 0.2, 0.1]), MAIN, "t")
    ax = fig.axes[0]
    drawn = {p.get_gid(): p for p in ax.patches if isinstance(p, FancyArrowPatch)}
    assert set(drawn) == set(edges)

    def bend(p):
        return p.get_connectionstyle().rad

    assert bend(drawn["m0->m2"]) != 0 and bend(drawn["a0.h1->m0"]) == 0
    assert len({bend(drawn[f"input->a1.h0<{k}>"]) for k in "qkv"}) == 3
    assert [drawn[f"input->a1.h0<{k}>"].get_linestyle() for k in "qkv"] == ["-", "--", ":"]
