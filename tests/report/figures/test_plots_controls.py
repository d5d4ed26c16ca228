"""The controls' figures draw real tables and say what is missing instead of failing."""

import polars as pl

from vermem.circuits import specificity
from vermem.circuits.transfer import MATCHED_SCHEMA
from vermem.report.figures import common, controls


def test_specificity_and_matched_figures_draw_and_survive_empty_tables(tmp_path):
    curve = [{"task": "branch_comparison", "subset": "W", "direction": "noising",
              "semantics": "prevention", "pairs": p, "circuit": c, "seed": s, "k": k,
              "n_pairs": 30, "faithfulness": f, "faithfulness_lo": f - 0.1,
              "faithfulness_hi": f + 0.1}
             for p in ("memorized", "control") for c, s in (("attribution", None), ("random", 0))
             for k, f in ((1, 0.2), (10, 0.8), (100, 1.0))]
    row = {k: None for k in specificity.SCHEMA}
    row.update({"task": "branch_comparison", "subset": "W", "semantics": "prevention", "k": 10,
                "specificity": 0.01, "specificity_lo": -0.1, "specificity_hi": 0.1})
    fig = controls.specificity_curves(
        pl.DataFrame(curve, schema=specificity.CURVE_SCHEMA),
        pl.DataFrame([row], schema=specificity.SCHEMA), "W", "m", 0.85)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("F(mem) - F(ctl) = 0.01 [-0.10, 0.10]" in t for t in texts)
    assert any("no circuit in the band" in t for t in texts)   # the other three panels
    common.save(fig, tmp_path / "s.png")
    empty = controls.specificity_curves(pl.DataFrame(schema=specificity.CURVE_SCHEMA),
                                              pl.DataFrame(schema=specificity.SCHEMA), "W", "m",
                                              0.85)
    assert any("no memorization circuit" in t.get_text() for ax in empty.axes for t in ax.texts)
    common.save(empty, tmp_path / "e.png")
    m = controls.matched_transfer(pl.DataFrame(schema=MATCHED_SCHEMA), "m", 0.05)
    assert any("no pair of rankings" in t.get_text() for ax in m.axes for t in ax.texts)
    common.save(m, tmp_path / "m.png")
    assert (tmp_path / "s.png").stat().st_size > 10_000
