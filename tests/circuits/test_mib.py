"""MIB's CPR and CMD (vermem.circuits.mib): the trapezoid areas, agreement with the curve's own F at
MIB's sizes, intervals, and n = 0."""

import math

import numpy as np
import polars as pl
import pytest
import torch

from vermem.attribution.graph import Graph, Shape
from vermem.circuits import evaluation, mib, search
from vermem.circuits.settings import MibSettings, SearchSettings
from vermem.core import stats as S

from ..attribution.test_attribution import neox

X = np.array(mib.FRACTIONS)


def test_sizes_are_mib_s_int_of_fraction_times_edges():
    # 32,491 edges (GPT-Neo-125M): 0.1% is 32 edges, 0.2% 64, 0.5% 162, 100% all
    assert mib.sizes(32491)[:3] == [32, 64, 162] and mib.sizes(32491)[-1] == 32491
    assert mib.sizes(463) == [0, 0, 2, 4, 9, 23, 46, 92, 231, 463]


@pytest.mark.parametrize("f, cpr, cmd", [
    (np.ones_like(X), 0.999, 0.0),                      # faithful everywhere
    (np.zeros_like(X), 0.0, 0.999),                     # nothing recovered
    (X, (1 - 0.001**2) / 2, 0.999 - (1 - 0.001**2) / 2),  # F = p: trapezoids are exact
    (2 * np.ones_like(X), 1.998, 0.999),                # overshoot counts in CMD
])
def test_areas_are_trapezoids_on_a_linear_fraction_axis(f, cpr, cmd):
    got = mib.areas(torch.tensor(f))
    assert float(got[0]) == pytest.approx(cpr, abs=1e-12)
    assert float(got[1]) == pytest.approx(cmd, abs=1e-12)


def test_areas_of_replicates_are_per_column():
    f = torch.tensor(np.stack([X, np.ones_like(X)], 1))  # [K, 2]
    cpr, cmd = mib.areas(f)
    assert cpr.tolist() == pytest.approx([(1 - 1e-6) / 2, 0.999])
    assert cmd.tolist() == pytest.approx([0.999 - (1 - 1e-6) / 2, 0.0])


def random_pairs(docs, seed: int, length: int = 6) -> pl.DataFrame:
    """A pairs table of random prompts (the last two tokens corrupted), one pair per entry of
    `docs` (its document), answers 1.. and wrong tokens 11.. (shared with test_methods)."""
    gen = torch.Generator().manual_seed(seed)
    n = len(docs)
    clean = torch.randint(1, 100, (n, length), generator=gen).tolist()
    corrupt = [c[:-2] + torch.randint(1, 100, (2,), generator=gen).tolist() for c in clean]
    return pl.DataFrame({"doc_id": list(docs), "clean": clean, "corrupt": corrupt,
                         "answer": list(range(1, n + 1)), "wrong": list(range(11, n + 11))})


@pytest.fixture(scope="module")
def setup():
    model = neox()
    g = Graph(Shape.from_config(model.config))
    pairs = random_pairs(["a", "a", "b", "b", "c", "c", "d", "d"], 3)
    ev = evaluation.EvalSet.of_pairs(model, pairs, 4)
    scores = torch.randn(g.mask.shape, generator=torch.Generator().manual_seed(1)) * g.mask
    return model, g, ev, scores


def test_cpr_and_cmd_equal_the_areas_under_the_sweep_s_curve_at_mib_sizes(setup):
    model, g, ev, scores = setup
    modes = [
        evaluation.Mode("noising", "outside", "resample"),
        evaluation.Mode("denoising", "inside", "resample"),
    ]
    boot = S.Bootstrap(200)
    got = mib.score(model, g, ev, {"noising": scores, "denoising": -scores}, modes,
                    MibSettings(boot=boot, seeds=[0, 1]), method="EAP-IG")
    assert got.height == 4 and set(got["circuit"]) == {"attribution", "random"}
    assert (got["n_pairs"] == 8).all() and (got["n_docs"] == 4).all()
    for m in modes:
        # the curve of the same ranking, computed by the sweep, integrated here by numpy
        curve, _ = search.sweep(model, g, ev, ev, {"noising": scores, "denoising": -scores}, [m],
                                SearchSettings(target=0.85, sizes=mib.sizes(g.n_edges), boot=boot))
        f = dict(curve.filter(pl.col("split") == "evaluation").select("k", "faithfulness")
                 .iter_rows())
        fs = np.array([f[k] for k in mib.sizes(g.n_edges)])
        r = got.filter((pl.col("direction") == m.direction) & (pl.col("circuit") ==
                                                                 "attribution")).row(0, named=True)
        assert r["faithfulness"] == pytest.approx(fs.tolist(), abs=1e-9)
        assert r["cpr"] == pytest.approx(np.trapezoid(fs, X), abs=1e-9)
        assert r["cmd"] == pytest.approx(np.trapezoid(np.abs(1 - fs), X), abs=1e-9)
        assert r["cpr_lo"] <= r["cpr"] <= r["cpr_hi"] and r["cmd_lo"] <= r["cmd"] <= r["cmd_hi"]
        assert r["cpr_hi"] - r["cpr_lo"] > 0  # four documents: a real spread
    # the random row is the mean over seeds of each seed's own area
    def rand(seeds):
        t = mib.score(model, g, ev, {"noising": scores}, modes[:1],
                      MibSettings(boot=boot, seeds=seeds))
        return t.filter(pl.col("circuit") == "random").row(0, named=True)

    one, two, both = rand([0]), rand([1]), rand([0, 1])
    assert one["cpr"] != pytest.approx(two["cpr"], abs=1e-6)
    for key in ("cpr", "cmd"):
        assert both[key] == pytest.approx((one[key] + two[key]) / 2, abs=1e-12)


def test_no_pairs_gives_rows_with_n_0_and_no_scores(setup):
    model, g, _, scores = setup
    empty = evaluation.EvalSet.make(model, [], [], [], [], batch_size=4, groups=[])
    got = mib.score(model, g, empty, {"noising": scores},
                    [evaluation.Mode("noising", "outside", "resample")], MibSettings(seeds=[0]))
    assert got.height == 2 and (got["n_pairs"] == 0).all()
    assert got["cpr"].is_null().all() and got["cmd_hi"].is_null().all()


@pytest.mark.parametrize("n_edges", [463, 32491])
def test_log_area_of_a_random_ranking_is_one_over_ln_e(n_edges):
    """A random ranking's expected curve F(k) = k / E: its area over x = log10(k / E) from
    -log10(E) to 0, divided by log10(E), is (1 - 1/E) / ln E (the integral of 10^x). On
    every size the trapezoids match it closely; on the few sizes a run evaluates
    (`mib.log_sizes`) within the trapezoids' error of a convex curve."""
    expected = (1 - 1 / n_edges) / math.log(n_edges)
    dense = list(range(1, n_edges + 1))
    f = torch.tensor([k / n_edges for k in dense], dtype=torch.float64)
    assert float(mib.log_area(dense, f, n_edges)) == pytest.approx(expected, rel=1e-3)
    ks = mib.log_sizes(n_edges)
    assert ks[0] == 1 and ks[-1] == n_edges
    f = torch.tensor([k / n_edges for k in ks], dtype=torch.float64)
    got = float(mib.log_area(ks, f, n_edges))
    assert expected <= got <= 1.25 * expected   # trapezoids over a convex curve: above


def test_log_area_is_one_for_a_faithful_ranking_and_weighs_every_decade_alike():
    ks = [1, 10, 100, 1000]
    one = torch.ones(4, dtype=torch.float64)
    assert float(mib.log_area(ks, one, 1000)) == pytest.approx(1.0)
    # F = 1 from 10 edges on, 0 at one edge: one decade of three half lost
    step = torch.tensor([0.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    assert float(mib.log_area(ks, step, 1000)) == pytest.approx(1 - 0.5 / 3)
    # columns are replicates
    both = torch.stack([one, step], 1)
    assert mib.log_area(ks, both, 1000).tolist() == pytest.approx([1.0, 1 - 0.5 / 3])
