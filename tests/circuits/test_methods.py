"""Attribution methods side by side (vermem.circuits.method_comparison): exact scores equal
single-edge patching
done one edge at a time, document sums add up to the attribution mean, the agreement
statistics and their intervals, and the comparison table."""

import polars as pl
import pytest
import torch

from vermem.attribution import pair_batch, patching, scoring
from vermem.attribution.graph import Graph, Shape
from vermem.attribution.settings import AttributionSettings
from vermem.circuits import evaluation
from vermem.circuits import method_comparison as M
from vermem.circuits.settings import ComparisonSettings
from vermem.core import stats as S

from ..attribution.test_attribution import neox
from .test_mib import random_pairs


@pytest.fixture(scope="module")
def setup():
    model = neox()
    return model, Graph(Shape.from_config(model.config)), random_pairs(
        ["a", "a", "b", "c", "c", "c"], 5)


def test_exact_scores_are_single_edge_patching_summed_per_document(setup):
    model, g, pairs = setup
    sums, counts = M.doc_sums(model, g, pairs, "exact",
                              ComparisonSettings(steps=5, per_forward=8), 4,
                              directions=("noising",))["noising"]
    assert counts.tolist() == [2, 1, 3]
    # one document at a time, one edge at a time, by the plain patching function
    for i, doc in enumerate(["a", "b", "c"]):
        q = pairs.filter(pl.col("doc_id") == doc)
        b = pair_batch.Batch.make(
            q["clean"].to_list(),
            q["corrupt"].to_list(),
            q["answer"].to_list(),
            q["wrong"].to_list(),
            "cpu",
        )
        some = torch.zeros_like(g.mask)
        some.view(-1)[g.mask.flatten().nonzero()[::5, 0]] = True  # a spread of edges
        want = patching.exact_edge_effects(model, g, b, "logit_diff", some)
        got = sums[i].float() * some
        assert torch.allclose(got, want, atol=1e-6, rtol=1e-4), (doc, (got - want).abs().max())
        assert want.abs().max() > 1e-4  # effects well above the tolerance


def test_gradient_methods_document_sums_add_up_to_the_attribution_mean(setup):
    model, g, pairs = setup
    for method in ("EAP", "EAP-IG-activations"):
        both = M.doc_sums(model, g, pairs, method, ComparisonSettings(steps=3), 4)
        for d, key in (("noising", "scores"), ("denoising", "scores_denoising")):
            # one direction at a time, as the attribution rule scores it
            out, n = scoring.run(model, g, pairs["clean"].to_list(),
                                 pairs["corrupt"].to_list(), pairs["answer"].to_list(),
                                 pairs["wrong"].to_list(),
                                 AttributionSettings(method, 3, "logit_diff", 4, "hooks", (d,),
                                                     positions=False))
            sums, counts = both[d]
            assert n == int(counts.sum()) == 6
            assert torch.allclose((sums.sum(0) / n).float(), out[key], atol=1e-5, rtol=1e-4)
        assert not torch.allclose(both["noising"][0], both["denoising"][0])


def test_spearman_and_top_jaccard_on_known_rankings():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert float(S.rank_correlation(a, a)) == pytest.approx(1.0)
    assert float(S.rank_correlation(a, -a)) == pytest.approx(-1.0)
    # one swap of neighbours: 1 - 6 * 2 / (5 * 24) = 0.9
    swap = torch.tensor([2.0, 1.0, 3.0, 4.0, 5.0])
    assert float(S.rank_correlation(a, swap)) == pytest.approx(0.9)
    b = torch.tensor([5.0, -4.0, 0.1, 0.2, 0.3])  # top 2 by |value|: {0, 1}; a's: {3, 4}
    assert float(M.top_jaccard(a, b, 2)) == 0.0
    assert float(M.top_jaccard(a, torch.tensor([0.0, 0.0, 1.0, 9.0, -8.0]), 3)) == 1.0
    assert float(M.top_jaccard(a, torch.tensor([0.0, 0.0, 9.0, 1.0, -8.0]), 2)) == \
        pytest.approx(1 / 3)


def test_agreement_of_a_method_with_itself_is_one_and_with_another_has_an_interval(setup):
    model, g, pairs = setup
    boot = S.Bootstrap(200)
    eap = M.doc_sums(model, g, pairs, "EAP", ComparisonSettings(steps=3), 4)["noising"]
    ig = M.doc_sums(model, g, pairs, "EAP-IG", ComparisonSettings(steps=3), 4)["noising"]
    same = M.agreement(g, {"EAP": eap, "again": eap}, boot)
    assert (same["value"] - 1).abs().max() < 1e-9 and (same["value_lo"] - 1).abs().max() < 1e-9
    two = M.agreement(g, {"EAP": eap, "EAP-IG": ig}, boot)
    assert set(two["statistic"]) == {"spearman |score|", "top 1% Jaccard", "top 5% Jaccard"}
    assert (two["n_docs"] == 3).all() and (two["n_pairs"] == 6).all()
    sp = two.filter(pl.col("statistic") == "spearman |score|").row(0, named=True)
    assert 0.3 < sp["value"] < 1.0 and sp["value_lo"] <= sp["value"] <= sp["value_hi"]
    assert sp["value_hi"] - sp["value_lo"] > 0


def test_compare_scores_every_method_in_both_directions_with_n(setup):
    model, g, pairs = setup
    ev = evaluation.EvalSet.of_pairs(model, pairs, 4)
    settings = ComparisonSettings(["EAP", "exact"], 3, "logit_diff",
                                  {"placement": "outside", "ablation": "resample"}, 0.85, 6,
                                  S.Bootstrap(50), per_forward=8)
    q, a, secs = M.compare(model, g, pairs, ev, ev, settings, 4)
    assert q.height == 4 and set(q["method"]) == {"EAP", "exact"}
    assert (q["n_attribution"] == 6).all() and (q["n_pairs"] == 6).all()
    assert q["cpr"].is_not_null().all() and set(secs) == {"EAP", "exact"}
    assert min(secs.values()) > 0
    assert (q["cpr_lo"] <= q["cpr"]).all() and (q["cpr"] <= q["cpr_hi"]).all()
    assert a.filter(pl.col("statistic") != M.CPR_DIFFERENCE).height == 3
    # the paired CPR difference of the two methods, per direction, with its interval
    diff = a.filter(pl.col("statistic") == M.CPR_DIFFERENCE)
    assert sorted(diff["direction"]) == ["denoising", "noising"]
    for r in diff.iter_rows(named=True):
        cpr = {x["method"]: x["cpr"] for x in q.filter(
            pl.col("direction") == r["direction"]).iter_rows(named=True)}
        assert r["value"] == pytest.approx(cpr[r["method_a"]] - cpr[r["method_b"]])
        assert r["value_lo"] <= r["value"] <= r["value_hi"]


def test_each_direction_is_ranked_by_its_own_scores(setup, monkeypatch):
    """The de-noising rows of the comparison rank the edges by the de-noising scores (as
    every other table does), the noising rows by the noising ones."""
    model, g, pairs = setup
    ev = evaluation.EvalSet.of_pairs(model, pairs, 4)
    seen = {}

    def fake_sums(model, graph, attr, method, settings, batch, *, progress=None,
                  directions=("noising", "denoising")):
        docs = attr["doc_id"].n_unique()
        return {d: (torch.full((docs, *graph.mask.shape), 1.0 if d == "noising" else -2.0,
                               dtype=torch.float64), torch.ones(docs, dtype=torch.float64))
                for d in directions}

    real_sweep = M.search.sweep

    def spy_sweep(model, graph, sel, ev, scores, modes, st, *, progress=None):
        seen.update({d: float(s.flatten()[0]) for d, s in scores.items()})
        return real_sweep(model, graph, sel, ev, scores, modes, st, progress=progress)
    monkeypatch.setattr(M, "doc_sums", fake_sums)
    monkeypatch.setattr(M.search, "sweep", spy_sweep)
    settings = ComparisonSettings(["EAP"], 3, "logit_diff",
                                  {"placement": "outside", "ablation": "resample"}, 0.85, 4,
                                  S.Bootstrap(20), per_forward=8)
    M.compare(model, g, pairs, ev, ev, settings, 4)
    assert seen == {"noising": pytest.approx(1.0), "denoising": pytest.approx(-2.0)}


def test_cpr_differences_are_paired_on_the_same_draws():
    """Two methods whose CPR replicates move together differ by a constant: the paired
    interval is that constant, however wide each method's own interval is."""
    r = torch.linspace(0.2, 0.8, 101, dtype=torch.float64)
    rows = M.cpr_differences({("A", "noising"): (0.6, r + 0.1), ("B", "noising"): (0.5, r)},
                             30, 10, S.Bootstrap(101))
    (row,) = rows
    assert row["value"] == pytest.approx(0.1)
    assert row["value_lo"] == pytest.approx(0.1) and row["value_hi"] == pytest.approx(0.1)
    assert (row["method_a"], row["method_b"], row["direction"]) == ("A", "B", "noising")


def test_no_attribution_pairs_flows_to_rows_with_n_0(setup):
    model, g, pairs = setup
    none = pairs.head(0)
    ev = evaluation.EvalSet.of_pairs(model, pairs, 4)
    settings = ComparisonSettings(["EAP-IG", "exact"], 3, "logit_diff",
                                  {"placement": "outside", "ablation": "resample"}, 0.85, 6,
                                  S.Bootstrap(50), per_forward=8)
    q, a, _ = M.compare(model, g, none, ev, ev, settings, 4)
    assert q.height == 4 and (q["n_attribution"] == 0).all() and q["cpr"].is_null().all()
    assert (a["n_pairs"] == 0).all() and a["value"].is_null().all()
