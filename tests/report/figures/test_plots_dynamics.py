"""Study B's curve figure from synthetic tables: the seeds' range and the references."""

import polars as pl
import pytest
from matplotlib.collections import PolyCollection

from vermem.report.figures import study_b


def test_curves_show_the_seed_range_and_the_strings_own_references():
    rows, ph = [], []
    for seed, shift in ((0, 0.0), (1, 0.5)):
        for e in range(10):
            rows.append({"model": "m", "init": "random", "string_id": "l4-h1-n8", "seed": seed,
                         "epoch": e, "accuracy": min(1.0, 0.1 * e + shift / 5),
                         "loss": 5.0 - 0.4 * e + shift, "p_true": 0.5, "entropy": 1.0})
        ph.append({"model": "m", "init": "random", "string_id": "l4-h1-n8", "seed": seed,
                   "alphabet_size": 4, "length": 8, "entropy": 1.386, "max_p": 0.25,
                   "empirical_entropy": 1.2 + 0.05 * seed, "guess_accuracy": 0.375 + 0.125 * seed})
    fig = study_b.dynamics_curves(pl.DataFrame(rows), pl.DataFrame(ph), "m")
    loss_ax, acc_ax = fig.axes[0], fig.axes[1]
    # one band per line: the two seeds' range, from the lower to the upper curve
    band = [c for c in loss_ax.collections if isinstance(c, PolyCollection)
            and len(c.get_paths()[0].vertices) > 4]
    assert band
    ys = band[0].get_paths()[0].vertices[:, 1]
    assert min(ys) <= 5.0 - 0.4 * 9 + 1e-9 and max(ys) >= 5.5 - 1e-9
    # grey bands at the strings' H(q) (1.20 to 1.25) and best guesses (0.375 to 0.5)
    def spans(ax):
        return [pytest.approx((p.get_y(), p.get_y() + p.get_height())) for p in ax.patches]
    assert (1.2, 1.25) in spans(loss_ax) and (0.375, 0.5) in spans(acc_ax)
    assert "their range" in fig._suptitle.get_text()


def test_one_seed_draws_its_own_references_as_lines():
    rows = [{"model": "m", "init": "pretrained", "string_id": "l2-h1-n8", "seed": 0, "epoch": e,
             "accuracy": 0.5 + 0.05 * e, "loss": 1.0 - 0.05 * e, "p_true": 0.5, "entropy": 1.0}
            for e in range(10)]
    ph = [{"model": "m", "init": "pretrained", "string_id": "l2-h1-n8", "seed": 0,
           "alphabet_size": 2, "length": 8, "entropy": 0.693, "max_p": 0.5,
           "empirical_entropy": 0.662, "guess_accuracy": 0.625}]
    fig = study_b.dynamics_curves(pl.DataFrame(rows), pl.DataFrame(ph), "m")
    for ax, v in ((fig.axes[0], 0.662), (fig.axes[1], 0.625)):
        assert any(list(ln.get_ydata()) == [v, v] and ln.get_linewidth() == 3
                   for ln in ax.get_lines())
    assert "one seed per line" in fig._suptitle.get_text()


def test_one_line_style_means_one_thing_and_the_legend_says_which():
    rows, ph = [], []
    for length, sid in ((8, "a"), (16, "b"), (32, "c")):
        for seed in (0, 1):
            rows += [{"model": "m", "init": init, "string_id": sid, "seed": seed, "epoch": e,
                      "accuracy": 0.1 * e, "loss": 3.0 - 0.2 * e + seed, "p_true": 0.5,
                      "entropy": 1.0} for init in ("pretrained", "random") for e in range(10)]
            ph += [{"model": "m", "init": init, "string_id": sid, "seed": seed,
                    "alphabet_size": 4, "length": length, "entropy": 1.386, "max_p": 0.25,
                    "empirical_entropy": 1.2, "guess_accuracy": 0.4}
                   for init in ("pretrained", "random")]
    fig = study_b.dynamics_curves(pl.DataFrame(rows), pl.DataFrame(ph), "m")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    for want in ("init: pretrained", "init: random", "length 8", "length 16", "length 32"):
        assert want in labels
    assert any("dotted: H(p)" in t for t in labels) and any("seeds" in t for t in labels)
    for ax in fig.axes:
        refs = [ln for ln in ax.get_lines() if ln.get_gid() == "reference"]
        data = [ln for ln in ax.get_lines() if ln.get_gid() != "reference"
                and len(ln.get_xdata()) > 2]
        assert refs and all(ln.get_linestyle() == ":" for ln in refs)
        # no data line shares the references' dotted style (dashed once meant both length
        # 64 and H(p))
        assert len(data) == 6 and all(ln.get_linestyle() != ":" for ln in data)
    ref_handle = next(h for h, t in zip(fig.legends[0].legend_handles, labels, strict=True)
                      if t.startswith("dotted"))
    assert ref_handle.get_linestyle() == ":"
