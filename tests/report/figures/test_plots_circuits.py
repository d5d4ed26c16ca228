"""The circuit drawing, transfer heatmap and memorization-score figures from synthetic
records: the properties that make them readable (legend, layout, threshold marker)."""

import matplotlib.colors as mcolors
import numpy as np
import polars as pl
import pytest
from matplotlib.patches import FancyArrowPatch

from vermem.report.figures import circuit_drawing, study_a, study_b

MAIN = {"placement": "outside", "ablation": "resample"}


def _minimal(edges, scores, n_layers=4, n_heads=4):
    c = {"direction": "noising", "placement": "outside", "ablation": "resample", "k": len(edges),
         "edges": edges, "scores": scores, "faithfulness": 0.9, "faithfulness_lo": 0.8,
         "faithfulness_hi": 1.0}
    return {"n_layers": n_layers, "n_heads": n_heads, "circuits": [c]}


def _offsets(ax):
    return {c.get_gid(): tuple(c.get_offsets()[0]) for c in ax.collections if c.get_gid()}


def test_circuit_drawing_has_a_key_for_colour_width_style_and_node_types():
    fig = circuit_drawing.circuit_drawing(
        _minimal(["input->m0", "m0->logits"], [1.0, -0.5]), MAIN, "t"
    )
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
    fig = circuit_drawing.circuit_drawing(_minimal(["input->m0"], [1.0], L, H), MAIN, "t")
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
    fig = circuit_drawing.circuit_drawing(_minimal(edges, [1.0, 0.5, 0.3, 0.2, 0.1]), MAIN, "t")
    ax = fig.axes[0]
    drawn = {p.get_gid(): p for p in ax.patches if isinstance(p, FancyArrowPatch)}
    assert set(drawn) == set(edges)

    def bend(p):
        return p.get_connectionstyle().rad

    assert bend(drawn["m0->m2"]) != 0 and bend(drawn["a0.h1->m0"]) == 0
    assert len({bend(drawn[f"input->a1.h0<{k}>"]) for k in "qkv"}) == 3
    assert [drawn[f"input->a1.h0<{k}>"].get_linestyle() for k in "qkv"] == ["-", "--", ":"]


def test_a_large_circuit_draws_only_its_strongest_edges_and_says_so(monkeypatch):
    """SmolLM2's minimal circuits have thousands of edges: all of them drawn are a solid
    tangle, so the drawing keeps the MAX_DRAWN of largest |score| and its title says so
    (here a cap of 20 on a 48-edge circuit, which draws as fast)."""
    import random
    rng = random.Random(0)
    monkeypatch.setattr(circuit_drawing, "MAX_DRAWN", 20)
    edges = [f"input->a{layer}.h{h}<{x}>" for layer in range(4) for h in range(4)
             for x in "qkv"]
    scores = [rng.uniform(-1, 1) for _ in edges]
    fig = circuit_drawing.circuit_drawing(_minimal(edges, scores), MAIN, "t")
    ax = fig.axes[0]
    drawn = {p.get_gid() for p in ax.patches if isinstance(p, FancyArrowPatch)}
    assert len(drawn) == circuit_drawing.MAX_DRAWN < len(edges)
    cut = sorted((abs(s) for s in scores), reverse=True)[circuit_drawing.MAX_DRAWN - 1]
    assert drawn == {e for e, s in zip(edges, scores, strict=True) if abs(s) >= cut}
    assert f"the {circuit_drawing.MAX_DRAWN} of largest |score| drawn" in ax.get_title()
    assert f"{len(edges)} edges" in ax.get_title()
    small = circuit_drawing.circuit_drawing(_minimal(edges[:5], scores[:5]), MAIN, "t")
    assert "drawn" not in small.axes[0].get_title()


def _transfer(values):
    tasks = [("branch_comparison", "A"), ("memorization_decision", "A")]
    rows = []
    it = iter(values)
    for st, ss in tasks:
        for tt, ts in tasks:
            f = next(it)
            rows.append({"placement": "outside", "semantics": "prevention", "source_task": st,
                         "source_subset": ss, "target_task": tt, "target_subset": ts,
                         "faithfulness": f, "faithfulness_lo": f - 0.1,
                         "faithfulness_hi": f + 0.1})
    return pl.DataFrame(rows)


@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_transfer_heatmap_marks_cells_below_the_threshold_and_marks_it_on_the_bar(threshold):
    values = [1.0, 0.4, 0.6, 0.95]
    fig = study_a.transfer_heatmaps(_transfer(values), "m", threshold)
    ax = fig.axes[0]
    hatched = [p for p in ax.patches if p.get_gid() == "below-threshold"]
    assert len(hatched) == sum(v < threshold for v in values)
    # each hatched cell is one whose value is below the threshold (row i, column j)
    mesh = ax.collections[0]
    grid = np.asarray(mesh.get_array()).reshape(2, 2)
    for p in hatched:  # a corner mark at the cell's top-left corner (column j, row i)
        j, i = p.get_xy()[0]
        assert grid[int(i), int(j)] < threshold
    bar = mesh.colorbar
    lines = [ln for ln in bar.ax.get_lines() if ln.get_gid() == "threshold"]
    assert len(lines) == 1 and list(lines[0].get_ydata()) == [threshold, threshold]
    assert f"threshold {threshold:g}" in bar.ax.get_ylabel()
    # annotated with value and interval
    texts = [t.get_text() for t in ax.texts]
    assert "0.40\n[0.30, 0.50]" in texts


def test_transfer_colours_tell_0_4_from_1_0_and_1_0_from_overshoot():
    fig = study_a.transfer_heatmaps(_transfer([1.0, 0.4, 0.6, 1.3]), "m", 0.5)
    mesh = fig.axes[0].collections[0]
    rgb = {v: np.array(mesh.cmap(mesh.norm(v))[:3]) for v in (0.4, 0.8, 1.0, 1.3)}
    assert mesh.norm.vmin <= 0 and mesh.norm.vmax >= 1.3
    # distinct steps over [0, 1] (the old diverging scale around 0 put 0.4 and 1.0 close)
    assert np.linalg.norm(rgb[0.4] - rgb[1.0]) > 0.6
    assert np.linalg.norm(rgb[0.8] - rgb[1.0]) > 0.15
    assert np.linalg.norm(rgb[1.0] - rgb[1.3]) > 0.3


def test_score_histograms_are_unstacked_with_shares_and_titles_apart():
    rng = np.random.default_rng(0)
    rows = []
    for s in ("Python Reference", "StdLib Code", "StdLib Docstrings"):
        rows += [{"subset": s, "match_fraction": 0.0, "label": "non-memorized"}] * 47
        rows += [{"subset": s, "match_fraction": float(v), "label": "ambiguous"}
                 for v in rng.uniform(0.01, 0.7, 43)]
        rows += [{"subset": s, "match_fraction": 1.0, "label": "memorized"}] * 10
    labels = pl.DataFrame(rows)
    fig = study_a.score_histograms(labels, "match_fraction", "m")
    ax = fig.axes[0]
    steps = {p.get_gid(): p for p in ax.patches if p.get_gid()}
    bins = np.linspace(0, 1, 21)
    for label in ("non-memorized", "ambiguous", "memorized"):
        x = labels.filter((pl.col("subset") == "Python Reference")
                          & (pl.col("label") == label))["match_fraction"].to_numpy()
        # each label's own counts, not stacked on the others'
        assert list(steps[label].get_data().values) == list(np.histogram(x, bins)[0])
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "non-memorized: 47 (47.0%)" in texts and "memorized: 10 (10.0%)" in texts
    fig.canvas.draw()
    boxes = [a.title.get_window_extent() for a in fig.axes]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def _tick_boxes(fig, ax):
    fig.canvas.draw()
    return [t.get_window_extent() for t in ax.get_xticklabels()
            if t.get_visible() and t.get_text()]


def test_q2_tick_labels_do_not_overprint():
    rows = [{"model": "m", "init": init, "epoch": e, "condition": c, "k_fraction": 2.0 ** -i,
             "accuracy": 0.5} for init in ("pretrained", "random") for e in (20, 50)
            for c in ("kept", "local") for i in range(1, 8)]
    fig = study_b.q2_context(pl.DataFrame(rows), "m")
    labelled = [b for b in (_tick_boxes(fig, ax) for ax in fig.axes) if b]
    assert len(labelled) == 2  # the bottom row (shared x)
    for boxes in labelled:
        assert len(boxes) >= 3
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    # no minor labels either (the old log axis printed 2x10^-2, 3x10^-2, ... over each other)
    assert not any(t.get_text() for ax in fig.axes for t in ax.get_xticklabels(minor=True))
    # only the values drawn are ticked, as fractions
    labels = [t.get_text() for t in fig.axes[-1].get_xticklabels()]
    assert "1/2" in labels and not any("10^" in t or "times" in t for t in labels)


def test_a_circuit_of_ones_own_is_drawn_with_the_same_key():
    import torch

    from vermem.attribution import graph

    g = graph.Graph(graph.Shape(n_layers=2, n_heads=2, n_kv_heads=2, d_model=8, parallel=False))
    scores = torch.zeros(g.mask.shape)
    edges = torch.zeros(g.mask.shape, dtype=torch.bool)
    valid = g.mask.flatten().nonzero().flatten()[:3]
    edges.view(-1)[valid] = True
    scores.view(-1)[valid] = torch.tensor([1.0, -0.5, 0.2])
    fig = circuit_drawing.circuit(g, edges, scores, "mine")
    drawn = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]
    assert len(drawn) == 3 and len(fig.legends) == 1


def test_attribution_layers_share_one_log_colour_scale_whatever_the_magnitude():
    """Issue 31: each figure had its own linear range, dominated by layer 0. The cells are
    shares of the direction's total on one fixed log scale, so two runs whose scores differ
    by 1000x draw the same colours for the same shares."""
    import torch
    from matplotlib.colors import LogNorm

    base = torch.tensor([[60.0, 1, 1, 1, 1, 1], [10, 5, 5, 5, 5, 5.0]])
    meshes = []
    for scale in (1.0, 1000.0):
        fig = study_a.layer_heatmap({"noising": base * scale, "denoising": base.flip(0) * scale},
                                    ["q", "k", "v", "mlp", "heads", "mlp out"], "t")
        panels = [ax for ax in fig.axes if ax.get_title().startswith(("noising", "denoising"))]
        assert len(panels) == 2
        meshes.append([ax.collections[0] for ax in panels])
    for a, b in zip(*meshes, strict=True):
        assert isinstance(a.norm, LogNorm) and (a.norm.vmin, a.norm.vmax) == \
            study_a.LAYER_SHARE_RANGE == (b.norm.vmin, b.norm.vmax)
        assert np.allclose(np.asarray(a.get_array()), np.asarray(b.get_array()))
        assert np.asarray(a.get_array()).sum() == pytest.approx(1.0)


def test_duplicates_points_sit_at_planted_counts_with_wilson_bars():
    """No line through copy counts that hold no document; each point has its Wilson bar."""
    from vermem.core.stats import wilson

    rows = [{"subset": "A", "dup_count": c, "doc_id": f"{c}:{i // 3}", "extractable": e}
            for c, k, n in ((0, 0, 30), (1, 3, 60), (16, 9, 12))
            for i, e in enumerate([True] * k + [False] * (n - k))]
    ax = study_a.rate_by_duplicates(pl.DataFrame(rows), "m").axes[0]
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["never", "1×", "16×"]
    data = [ln for ln in ax.get_lines() if ln.get_marker() in ("o", "D")]
    assert all(ln.get_linestyle() == "None" for ln in data)  # points, no interpolation
    subset_a = data[0]
    assert list(subset_a.get_ydata()) == pytest.approx([0.0, 3 / 60, 9 / 12])
    bars = ax.collections[0]
    top = [p.vertices[:, 1].max() for p in bars.get_paths()]
    assert top == pytest.approx([wilson(0, 30)[1], wilson(3, 60)[1], wilson(9, 12)[1]])
