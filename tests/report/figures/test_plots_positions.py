"""The position-resolved attribution figure from attribution files written by
vermem.attribution.storage.save: shares per bucket, and 'no pairs' for an empty control file."""

import polars as pl
import pytest
import torch

from vermem.attribution import positions as attribution_positions
from vermem.attribution import storage
from vermem.attribution.graph import Graph, Shape
from vermem.report.figures import position_profiles


def _file(tmp_path, name, g, n, positions=None):
    path = tmp_path / f"{name}.safetensors"
    scores = positions.sum(0) if positions is not None else torch.zeros(g.mask.shape)
    buckets = attribution_positions.position_buckets(8) if positions is not None else []
    storage.save(path, g, scores, {"task": name, "n_examples": n, "empty": n == 0}, scores,
           positions, positions, buckets)
    return storage.load(path)


def test_position_mass_shares_and_an_empty_control(tmp_path):
    g = Graph(Shape(2, 2, 2, 8, True))
    pos = torch.zeros(4, *g.mask.shape)
    pos[0] = 3.0 * g.mask
    pos[2] = -1.0 * g.mask       # |score| counts: a quarter of the mass at distance 2-3
    tensors, meta = _file(tmp_path, "branch_comparison", g, 5, pos)
    rows = attribution_positions.position_mass(tensors, meta)
    assert {r["direction"] for r in rows} == {"noising", "denoising"}
    share = {r["distance"]: r["share"] for r in rows if r["direction"] == "noising"}
    assert share == pytest.approx({"0": 0.75, "1": 0.0, "2-3": 0.25, "4-7": 0.0})
    empty_t, empty_m = _file(tmp_path, "branch_comparison_control", g, 0)
    assert attribution_positions.position_mass(empty_t, empty_m) == []
    mass = pl.DataFrame([{"task": "branch_comparison", "pairs": "memorized", **r} for r in rows])
    files = pl.DataFrame({"task": ["branch_comparison"] * 2, "pairs": ["memorized", "control"],
                          "n_examples": [5, 0]})
    fig = position_profiles.position_mass(mass, files, "m: positions")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "control: no pairs (n = 0)" in legend
    assert "memorized, noising (n = 5)" in legend
    line = next(ln for ln in fig.axes[0].lines if ln.get_label() == "memorized, noising (n = 5)")
    assert list(line.get_ydata()) == pytest.approx([0.75, 0.0, 0.25, 0.0])
    fig = position_profiles.position_mass(
        pl.DataFrame(), files.filter(pl.col("pairs") == "control"), "m: nothing"
    )
    assert "control: no pairs (n = 0)" in " ".join(t.get_text() for t in fig.axes[0].texts)
