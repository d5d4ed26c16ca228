"""Circuit evaluation by exact edge patching, faithfulness, minimal circuits, transfer."""


import math

import polars as pl
import pytest
import torch

from vermem.attribution import pair_batch, patching
from vermem.attribution.graph import Graph, Shape
from vermem.circuits import evaluation, transfer
from vermem.circuits import search as circuits_search
from vermem.circuits.settings import SearchSettings, TransferSettings
from vermem.core import stats as S
from vermem.report import claims as CL
from vermem.report.settings import ClaimSettings

from ..attribution.test_attribution import gpt_neo, llama, neox

V = 100
ALL_MODES = evaluation.modes(evaluation.DIRECTIONS, evaluation.PLACEMENTS, evaluation.ABLATIONS)


@pytest.fixture(scope="module", params=["gpt_neox", "llama_gqa", "gpt_neo"])
def setup(request):
    model = {"gpt_neox": neox, "llama_gqa": llama, "gpt_neo": gpt_neo}[request.param]()
    g = Graph(Shape.from_config(model.config))
    gen = torch.Generator().manual_seed(2)
    clean = torch.randint(1, V, (5, 7), generator=gen).tolist()
    corrupt = [c[:-3] + torch.randint(1, V, (3,), generator=gen).tolist() for c in clean]
    clean[4], corrupt[4] = clean[4][:5], corrupt[4][:5]          # padding in the batch
    answer, wrong = [1, 2, 3, 4, 5], [6, 7, 8, 9, 10]
    ev = evaluation.EvalSet.make(model, clean, corrupt, answer, wrong, batch_size=3)  # two batches
    return model, g, ev, (clean, corrupt, answer, wrong)


@torch.no_grad()
def plain_metric(model, ids, answer, wrong):
    """Mean logit difference of unpatched runs, one prompt at a time."""
    out = []
    for x, a, w in zip(ids, answer, wrong, strict=True):
        lg = model(input_ids=torch.tensor([x])).logits[0, -1]
        out.append(float(lg[a] - lg[w]))
    return sum(out) / len(out)


def test_empty_and_full_circuits_are_the_clean_and_corrupt_runs(setup):
    model, g, ev, (clean, corrupt, answer, wrong) = setup
    m_clean = plain_metric(model, clean, answer, wrong)
    m_corrupt = plain_metric(model, corrupt, answer, wrong)
    nothing, everything = torch.zeros_like(g.mask), g.mask.clone()
    for mode, edges, want in [
        (evaluation.Mode("noising", "inside", "resample"), nothing, m_clean),
        (evaluation.Mode("noising", "inside", "resample"), everything, m_corrupt),
        (evaluation.Mode("noising", "outside", "resample"), everything, m_clean),
        (evaluation.Mode("noising", "outside", "resample"), nothing, m_corrupt),
        (evaluation.Mode("denoising", "inside", "resample"), nothing, m_corrupt),
        (evaluation.Mode("denoising", "inside", "resample"), everything, m_clean),
        (evaluation.Mode("denoising", "outside", "resample"), nothing, m_clean),
    ]:
        got = evaluation.evaluate(model, g, ev, edges, mode).metric
        assert got == pytest.approx(want, abs=1e-4), mode
    assert m_clean != pytest.approx(m_corrupt, abs=1e-2)


def test_faithfulness_is_zero_for_no_circuit_and_one_for_all_in_every_mode(setup):
    model, g, ev, (clean, corrupt, answer, wrong) = setup
    # every mode on one architecture, the resample modes on the others (test time)
    modes = ALL_MODES if model.config.model_type == "gpt_neox" else evaluation.modes(
        evaluation.DIRECTIONS, evaluation.PLACEMENTS, ["resample"])
    sel = evaluation.EvalSet.make(model, clean[:3], corrupt[:3], answer[:3], wrong[:3], 3)
    scores = torch.randn(g.mask.shape, generator=torch.Generator().manual_seed(0)) * g.mask
    curve, minimal = circuits_search.sweep(model, g, sel, ev, scores, modes, SearchSettings(
        sizes=[5, 20], seeds=[0, 1], random_modes=modes, target=0.85, boot=S.Bootstrap(100)))
    ends = curve.filter(pl.col("k").is_in([0, g.n_edges]) & (pl.col("split") == "evaluation"))
    assert ends.height == len(modes) * 2 * 3  # attribution + 2 random seeds
    for r in ends.iter_rows(named=True):
        assert r["faithfulness"] == pytest.approx(0.0 if r["k"] == 0 else 1.0, abs=1e-6)
    assert set(minimal) == set(modes)  # F(full) = 1 is in the band: always found
    few, _ = circuits_search.sweep(model, g, sel, ev, scores, modes[:1], SearchSettings(
        target=0.85, curve_points=9, seeds=[0], random_modes=modes[:1], boot=S.Bootstrap(50),
        random_points=3))
    rk = set(few.filter(pl.col("circuit") == "random")["k"])
    assert rk <= set(few["k"]) and 3 <= len(rk - {0, g.n_edges}) <= 4
    order = evaluation.ranking(g, scores)
    for mode, v in minimal.items():
        assert 0.85 <= v["selection_faithfulness"] <= 1.15 and 0 < v["k"] <= g.n_edges
        assert len(v["edges"]) == v["k"] and v["n_selection"] == 3 and v["n_pairs"] == 5
        # chosen on the selection pairs: one edge fewer is out of the band there
        fewer = evaluation.evaluate(model, g, sel, evaluation.circuit(g, order, v["k"] - 1), mode)
        e = evaluation.evaluate(model, g, sel, evaluation.circuit(g, order, 0), mode).metric
        f = evaluation.evaluate(model, g, sel, evaluation.circuit(g, order, g.n_edges), mode).metric
        assert not evaluation.in_band(evaluation.faithfulness(fewer.metric, e, f), 0.85)
        # reported on the evaluation pairs
        at_k = evaluation.evaluate(model, g, ev, evaluation.circuit(g, order, v["k"]), mode).metric
        assert v["faithfulness"] == pytest.approx(
            evaluation.faithfulness(at_k, v["empty"], v["full"]), abs=1e-6)
        assert v["faithfulness_lo"] <= v["faithfulness"] <= v["faithfulness_hi"]


def test_batched_evaluation_equals_one_at_a_time(setup):
    model, g, ev, _ = setup
    jobs = [(m, evaluation.circuit(g, evaluation.random_ranking(g, s), k)) for m in ALL_MODES
            for s, k in ((0, 3), (1, g.n_edges // 2), (2, g.n_edges - 4))]
    one = evaluation.evaluate_many(model, g, ev, jobs, per_forward=1)
    many = evaluation.evaluate_many(model, g, ev, jobs, per_forward=5)  # uneven chunks
    for a, b in zip(one, many, strict=True):
        for x, y in ((a.metric, b.metric), (a.logit_diff, b.logit_diff),
                     (a.correct, b.correct)):
            assert torch.allclose(x, y, atol=1e-5, rtol=1e-5)
    values = torch.stack([r.metric for r in one])
    assert values.std(0).min() > 1e-3  # the circuits really differ
    # a per-row mask equals the shared [S, D] mask of patched_logits
    b = ev.batches[0]
    edges = evaluation.circuit(g, evaluation.random_ranking(g, 5), 17)
    shared = patching.patched_logits(model, g, b, edges, ev.corrupt[0])
    rows = patching.patched_logits(model, g, b, torch.stack([torch.zeros_like(edges), edges])
                            .repeat_interleave(len(b.last), 0), ev.corrupt[0],
                            b.clean.repeat(2, 1))
    n = len(b.last)
    assert torch.allclose(rows[n:], shared, atol=1e-5)
    plain = model(input_ids=b.clean, attention_mask=b.mask).logits
    assert torch.allclose(rows[:n], plain, atol=1e-5)
    assert not torch.allclose(shared, plain, atol=1e-3)


@torch.no_grad()
def ablated_metric(model, g, ev, ablated, ablation):
    """Mean logit difference of the clean prompts with the `ablated` edges set to zero or to
    their mean, computed by the plain reference patching engine (no mode plan)."""
    from ..patching_reference import reference_patched_logits

    vals = []
    for b, clean in zip(ev.batches, ev.clean, strict=True):
        repl = (torch.zeros_like(clean) if ablation == "zero"
                else ev.mean[:, None, None, :].expand_as(clean))
        vals.append(pair_batch.metric(reference_patched_logits(model, g, b, ablated, repl), b,
                             "logit_diff").double())
    return float(torch.cat(vals).mean())


def test_zero_and_mean_modes_ablate_the_right_edges(setup):
    """De-noising from the ablated model restores the circuit: inside, the circuit's edges
    are clean and every other edge ablated; outside, the circuit's edges are ablated. Each
    mode against the ablated forward built directly from its edge set."""
    model, g, ev, _ = setup
    edges = evaluation.circuit(g, evaluation.random_ranking(g, 3), g.n_edges // 3)
    for ablation in ("zero", "mean"):
        keep_circuit = ablated_metric(model, g, ev, g.mask & ~edges, ablation)
        drop_circuit = ablated_metric(model, g, ev, edges & g.mask, ablation)
        assert keep_circuit != pytest.approx(drop_circuit, abs=1e-3)
        for mode, want in ((evaluation.Mode("denoising", "inside", ablation), keep_circuit),
                           (evaluation.Mode("noising", "outside", ablation), keep_circuit),
                           (evaluation.Mode("denoising", "outside", ablation), drop_circuit),
                           (evaluation.Mode("noising", "inside", ablation), drop_circuit)):
            got = evaluation.evaluate(model, g, ev, edges, mode).metric
            assert got == pytest.approx(want, abs=1e-4), mode
    z = evaluation.evaluate(model, g, ev, edges, evaluation.Mode("noising", "inside", "zero"))
    m = evaluation.evaluate(model, g, ev, edges, evaluation.Mode("noising", "inside", "mean"))
    r = evaluation.evaluate(model, g, ev, edges, evaluation.Mode("noising", "inside", "resample"))
    assert len({z.metric, m.metric, r.metric}) == 3  # the three ablations differ


def test_patching_a_source_s_edges_equals_patching_the_node(setup):
    """A circuit holding every edge out of one head, noised, is node patching of the head."""
    model, g, ev, (clean, corrupt, answer, wrong) = setup
    s = g.head_sources(1)[0]
    edges = torch.zeros_like(g.mask)
    edges[s] = g.mask[s]
    batch = pair_batch.Batch.make(clean, corrupt, answer, wrong, "cpu")
    node = patching.exact_node_effects(model, g, batch)[s] / len(clean)
    base = plain_metric(model, clean, answer, wrong)
    got = evaluation.evaluate(
        model, g, ev, edges, evaluation.Mode("noising", "inside", "resample")
    ).metric
    assert got - base == pytest.approx(float(node), abs=1e-4)


def test_ranking_and_random_circuits():
    g = Graph(Shape(2, 2, 2, 8, True))
    scores = torch.zeros(g.mask.shape)
    flat = g.mask.flatten().nonzero().flatten()
    scores.view(-1)[flat[:3]] = torch.tensor([0.5, -2.0, 1.0])
    order = evaluation.ranking(g, scores)
    assert order[:3].tolist() == [flat[1], flat[2], flat[0]]       # by |score|
    assert order[3:].tolist() == flat[3:].tolist()                  # ties keep graph order
    assert sorted(order.tolist()) == flat.tolist()
    r0, r1 = evaluation.random_ranking(g, 0), evaluation.random_ranking(g, 0)
    assert torch.equal(r0, r1) and not torch.equal(r0, evaluation.random_ranking(g, 1))
    assert sorted(r0.tolist()) == flat.tolist()
    c = evaluation.circuit(g, order, 5)
    assert int(c.sum()) == 5 and not (c & ~g.mask).any()
    assert evaluation.circuit(g, order, 4).logical_and(~c).sum() == 0       # nested
    sizes = evaluation.log_sizes(g.n_edges, 6)
    assert sizes[0] == 0 and sizes[-1] == g.n_edges and sizes == sorted(set(sizes))
    assert 1 in sizes and len(sizes) >= 6


def test_search_finds_the_band_crossing_to_one_edge():
    target, calls = 0.85, []

    def f(k):  # rises through the target between 137 and 138, with a dip at 20
        calls.append(k)
        return 0.3 if k == 20 else min(1.0, k / 161.5)

    grid = {k: f(k) for k in (0, 1, 10, 20, 100, 300, 1000)}
    for width in (1, 8):
        calls.clear()
        k, searched = circuits_search.minimal_size(
            lambda ks: [f(x) for x in ks], grid, target, width
        )
        assert k == 138 and f(138) >= target > f(137)
        assert len(calls) <= (10 if width == 1 else 24)
        assert set(searched) <= set(range(101, 300))
    assert circuits_search.minimal_size(
        lambda ks: [f(x) for x in ks], {0: 0.0, 5: 0.1}, target
    ) == (None, {})
    assert (
        circuits_search.minimal_size(lambda ks: [f(x) for x in ks], {0: 0.0, 1: 0.9}, target)[0]
        == 1
    )


def test_band_selection_never_picks_an_overshoot():
    target = 0.85

    def f(k):  # overshoots (F = 1.6) at 5..40, in the band only from 250 on
        return 1.6 if 5 <= k <= 40 else (0.5 if k < 250 else 1.0)

    grid = {k: f(k) for k in (0, 1, 3, 10, 30, 100, 1000, 2000)}
    k, searched = circuits_search.minimal_size(lambda ks: [f(x) for x in ks], grid, target, 4)
    assert k == 250 and evaluation.band(f(k), target) == "in"
    assert all(evaluation.band(v, target) != "in" for x, v in {**grid, **searched}.items() if x < k)
    assert evaluation.band(1.16, target) == "above" and evaluation.band(1.15, target) == "in"
    assert (
        evaluation.band(0.849, target) == "below" and evaluation.band(float("nan"), target) is None
    )
    only_over = {0: 0.0, 10: 1.5, 100: 2.0}
    assert circuits_search.minimal_size(lambda ks: [1.5] * len(ks), only_over, target)[0] is None


def test_bootstrap_interval_covers_the_estimate_and_shrinks_with_n():
    boot = S.Bootstrap(samples=400, seed=0, level=0.95)
    gen = torch.Generator().manual_seed(0)

    def data(n, f_true=0.7):
        me = torch.randn(n, generator=gen, dtype=torch.float64)
        mf = me + 2.0 + torch.randn(n, generator=gen, dtype=torch.float64)
        mc = me + f_true * (mf - me) + 0.5 * torch.randn(n, generator=gen, dtype=torch.float64)
        return mc, me, mf

    widths, covered = {}, 0
    for n in (20, 500):
        mc, me, mf = data(n)
        p, r = S.f_replicates(mc[None], me, mf, boot.indices(n))
        lo, hi = boot.interval(r)
        assert lo[0] <= p[0] <= hi[0]
        # the point estimate is the ratio of means
        assert float(p[0]) == pytest.approx(float((mc.mean() - me.mean())
                                                  / (mf.mean() - me.mean())), abs=1e-12)
        widths[n] = float(hi[0] - lo[0])
    assert widths[500] < 0.5 * widths[20]
    for _ in range(100):  # coverage of the true F = 0.7 at n = 30
        mc, me, mf = data(30)
        lo, hi = boot.interval(S.f_replicates(mc[None], me, mf, boot.indices(30))[1])
        covered += int(lo[0] <= 0.7 <= hi[0])
    assert 85 <= covered <= 100
    assert torch.equal(boot.indices(30), S.Bootstrap(400, 0).indices(30))  # seeded
    assert not torch.equal(boot.indices(30), S.Bootstrap(400, 1).indices(30))


def test_selection_and_evaluation_pairs_are_disjoint_documents():
    def table(rows):
        return pl.DataFrame(rows, schema={"task": pl.String, "subset": pl.String,
                                          "doc_id": pl.String, "corrupt_doc_id": pl.String,
                                          "split": pl.String}, orient="row")

    BC, MD = transfer.BRANCH, transfer.DECISION
    ok = table([(BC, "s", "a", "a", "attribution"), (BC, "s", "b", "b", "selection"),
                (BC, "s", "c", "c", "evaluation"), (MD, "s", "c", "x", "evaluation"),
                (MD, "s", "b", "y", "selection")])
    sel, ev = evaluation.split_sets(ok, BC, "s")
    assert sel["doc_id"].to_list() == ["b"] and ev["doc_id"].to_list() == ["c"]
    assert not set(sel["doc_id"]) & set(ev["doc_id"])
    # a document evaluated for one task but used for selection in another: refused
    leak = ok.vstack(table([(MD, "s", "c", "z", "selection")]))
    with pytest.raises(ValueError, match="evaluated and also used"):
        evaluation.split_sets(leak, BC, "s", "pairs.parquet")
    with pytest.raises(ValueError, match="not in"):
        evaluation.split_sets(ok.with_columns(pl.lit("held_out").alias("split")), BC, "s")


def test_no_pairs_flow_through_to_insufficient_evidence(setup):
    model, g, ev, _ = setup
    empty = evaluation.EvalSet.make(model, [], [], [], [], 4)
    scores = torch.randn(g.mask.shape, generator=torch.Generator().manual_seed(0)) * g.mask
    modes = [evaluation.Mode("noising", "outside", "resample")]
    for sel, evs in ((empty, ev), (ev, empty)):
        curve, minimal = circuits_search.sweep(model, g, sel, evs, scores, modes, SearchSettings(
            target=0.85, sizes=[5], seeds=[0], random_modes=modes))
        assert curve.height == 0 and minimal == {}
    t = transfer.transfer(model, g, {(transfer.BRANCH, "s"): empty}, {},
                          TransferSettings(seeds=[0]))
    assert t.height == 0 and set(t.columns) == set(transfer.TRANSFER_SCHEMA)
    out = CL.claims(t, {}, ClaimSettings("s", threshold=0.5, margin=0.05, min_pairs=20))
    assert out.height == 6 and set(out["verdict"]) == {"insufficient evidence"}
    assert (out["n_pairs"] == 0).all()


def test_transfer_relations_overlap_and_claims():
    assert transfer.relation(("a", "x"), ("a", "x")) == "in-domain"
    assert transfer.relation(("a", "x"), ("b", "x")) == "cross-task"
    assert transfer.relation(("a", "x"), ("a", "y")) == "cross-domain"
    g = Graph(Shape(1, 2, 2, 8, True))
    a = evaluation.circuit(g, evaluation.random_ranking(g, 0), 6)
    b = evaluation.circuit(g, evaluation.random_ranking(g, 0), 3)          # a subset of a
    ov = transfer.overlap({("t", "s", "noising"): a, ("u", "s", "noising"): b})
    row = ov.filter((pl.col("a_task") == "t") & (pl.col("b_task") == "u")).row(0, named=True)
    assert (row["shared"], row["jaccard"]) == (3, 0.5)

    # overlap pairs circuits of the same meaning: MD noising is induction like BC de-noising
    ov = transfer.overlap(
        {
            (transfer.DECISION, "s", "noising"): a,
            (transfer.BRANCH, "s", "denoising"): b,
            (transfer.BRANCH, "s", "noising"): a,
        }
    )
    assert set(ov["semantics"]) == {"induction", "prevention", transfer.ACROSS}
    same = ov.filter(pl.col("semantics") != transfer.ACROSS)
    cross = same.filter(pl.col("a_task") != pl.col("b_task"))
    assert set(zip(cross["a_direction"], cross["b_direction"], strict=True)) == {
        ("noising", "denoising"), ("denoising", "noising")}
    # across meanings: a prevention (BC noising), b induction; on one task and subset that
    # is its noising vs de-noising overlap
    across = ov.filter(pl.col("semantics") == transfer.ACROSS)
    assert set(zip(across["a_task"], across["a_direction"], across["b_task"],
                   across["b_direction"], strict=True)) == {
        (transfer.BRANCH, "noising", transfer.BRANCH, "denoising"),
        (transfer.BRANCH, "noising", transfer.DECISION, "noising")}
    row = across.filter(pl.col("b_task") == transfer.BRANCH).row(0, named=True)
    assert (row["shared"], row["jaccard"]) == (3, 0.5)
    assert set(
        transfer.overlap(
            {(transfer.BRANCH, "s", "noising"): a, (transfer.BRANCH, "s", "denoising"): b},
            across=False,
        )["semantics"]
    ) == {"induction", "prevention"}


def test_direction_semantics_pair_like_with_like():
    BC, MD = transfer.BRANCH, transfer.DECISION
    assert transfer.semantics(BC, "noising") == "prevention" == transfer.semantics(MD, "denoising")
    assert transfer.semantics(BC, "denoising") == "induction" == transfer.semantics(MD, "noising")
    assert transfer.direction_for(BC, transfer.semantics(MD, "noising")) == "denoising"
    assert transfer.direction_for(MD, transfer.semantics(BC, "noising")) == "denoising"


BC_, MD_ = transfer.BRANCH, transfer.DECISION


def cell(meaning, st, ss, tt, ts, f, lo, hi, n=30, rnd=0.1, placement="outside"):
    row = {k: None for k in transfer.TRANSFER_SCHEMA}
    row.update({"semantics": meaning, "source_task": st, "source_subset": ss,
                "source_direction": transfer.direction_for(st, meaning), "target_task": tt,
                "target_subset": ts, "target_direction": transfer.direction_for(tt, meaning),
                "placement": placement, "ablation": "resample",
                "relation": transfer.relation((st, ss), (tt, ts)), "k": 10, "n_pairs": n,
                "faithfulness": f, "faithfulness_lo": lo, "faithfulness_hi": hi,
                "random_faithfulness": rnd})
    return row


def transfer_table(cross_task=((0.8, 0.7, 0.9), (0.1, 0.0, 0.2)),
                   prevention_other=(0.9, 0.8, 1.0), n=30, rnd=0.1):
    rows = []
    for meaning in ("prevention", "induction"):
        for s in ("main", "other"):
            rows.append(cell(meaning, MD_, s, BC_, s, *cross_task[0], n, rnd))
            rows.append(cell(meaning, BC_, s, MD_, s, *cross_task[1], n, rnd))
        rows.append(cell(meaning, BC_, "main", BC_, "main", 0.95, 0.9, 1.0, n, rnd))
        other = prevention_other if meaning == "prevention" else (0.2, 0.1, 0.3)
        rows.append(cell(meaning, BC_, "main", BC_, "other", *other, n, rnd))
    # an inside-placement cell that must not be read by claims on the outside placement
    rows.append(cell("prevention", BC_, "main", BC_, "other", -5.0, -6.0, -4.0, n, rnd,
                     "inside"))
    return pl.DataFrame(rows, schema=transfer.TRANSFER_SCHEMA)


def sizes_for(bc=(14, 10, 20), md=(141, 100, 200), n=25, f_lo=0.8, rnd=0.1):
    out = {}
    for meaning in ("prevention", "induction"):
        for task, (k, lo, hi) in ((BC_, bc), (MD_, md)):
            out[task, "main", transfer.direction_for(task, meaning)] = {
                "k": k, "k_lo": lo, "k_hi": hi, "n_selection": n, "n_edges": 32491,
                "faithfulness": 0.9, "faithfulness_lo": f_lo, "random_faithfulness": rnd}
    return out


def replicates_of(t, R=400):
    """Replicates for each cell whose 2.5% and 97.5% quantiles are the cell's interval
    (normal shape, the same standard normal draws for every cell: perfectly correlated)."""
    z = torch.distributions.Normal(0.0, 1.0).icdf(
        (torch.arange(R, dtype=torch.float64) + 0.5) / R)
    z = z / float(torch.quantile(z, 0.975))
    mid = (t["faithfulness_lo"].fill_null(0) + t["faithfulness_hi"].fill_null(0)) / 2
    half = (t["faithfulness_hi"].fill_null(0) - t["faithfulness_lo"].fill_null(0)) / 2
    return (torch.tensor(mid.to_list(), dtype=torch.float64)[:, None]
            + torch.tensor(half.to_list(), dtype=torch.float64)[:, None] * z[None])


def verdicts(t, sizes, **kw):
    settings = ClaimSettings("main", threshold=0.5, margin=kw.pop("margin", 0.05), min_pairs=20)
    out = CL.claims(t, sizes, settings, transfer_reps=replicates_of(t), **kw)
    assert set(out["verdict"]) <= set(CL.VERDICTS)
    assert out["reason"].is_not_null().all()
    return {(" ".join(r["claim"].split()[:2]), r["semantics"]): (r["verdict"], r["reason"])
            for r in out.iter_rows(named=True)}, out


def test_claims_supported_on_clear_synthetic_evidence():
    got, out = verdicts(transfer_table(), sizes_for())
    assert {v for v, _ in got.values()} == {"supported"}, got
    row = out.filter(pl.col("claim").str.starts_with("Memorization prevention")).row(
        0, named=True)
    assert (row["estimate"], row["estimate_lo"], row["estimate_hi"]) == (0.9, 0.8, 1.0)
    assert row["n_pairs"] == 30 and row["random_faithfulness"] == pytest.approx(0.1)
    assert row["placement"] == "outside"


def test_claims_refuted_when_the_interval_lies_on_the_other_side():
    t = transfer_table(cross_task=((0.1, 0.0, 0.2), (0.1, 0.0, 0.2)),
                       prevention_other=(0.2, 0.1, 0.3))
    got, _ = verdicts(t, sizes_for(bc=(300, 250, 400)))
    assert got["Memorization Decision", "prevention"][0] == "refuted"
    assert got["Memorization prevention", "prevention"][0] == "refuted"
    assert got["Branch Comparison", "prevention"][0] == "refuted"     # BC >= MD
    # the reverse transfers too: refuted although MD -> BC transfers
    both = transfer_table(cross_task=((0.8, 0.7, 0.9), (0.8, 0.7, 0.9)))
    got, _ = verdicts(both, sizes_for())
    assert got["Memorization Decision", "induction"][0] == "refuted"
    # prevention drops more than induction: induction is not the more context-dependent
    flat = transfer_table(prevention_other=(0.0, -0.1, 0.1))
    assert verdicts(flat, sizes_for())[0]["Induction (de-noising", "both"][0] == "refuted"


@pytest.mark.parametrize("change, reason", [
    ({"n": 10}, "too few pairs"),
    ({"prevention_other": (0.6, 0.4, 0.8)}, "crosses the threshold"),
    ({"rnd": 0.85}, "not better than random"),
])
def test_claims_insufficient_evidence_with_the_reason(change, reason):
    got, _ = verdicts(transfer_table(**change), sizes_for())
    v, why = got["Memorization prevention", "prevention"]
    assert v == "insufficient evidence" and reason in why, why


def test_size_claims_need_pairs_separated_intervals_and_better_than_random():
    t = transfer_table()
    for sizes, reason in ((sizes_for(n=5), "too few"),
                          (sizes_for(bc=(14, 10, 150)), "overlap"),
                          (sizes_for(f_lo=0.1, rnd=0.2), "not better than random"),
                          ({}, "no circuit")):
        v, why = verdicts(t, sizes)[0]["Branch Comparison", "prevention"]
        assert v == "insufficient evidence" and reason in why, (why, reason)
    # a difference below the margin supports no comparative claim
    got, _ = verdicts(t, sizes_for(), margin=0.8)
    assert got["Induction (de-noising", "both"][0] != "supported"


def test_transfer_evaluates_a_circuit_in_the_direction_of_the_same_meaning(setup):
    model, g, ev, _ = setup
    if model.config.model_type != "gpt_neox":
        pytest.skip("one architecture is enough for the bookkeeping")
    a = evaluation.circuit(g, evaluation.random_ranking(g, 7), g.n_edges // 4)
    found = {(transfer.DECISION, "s", "noising", "outside"): a,
             (transfer.BRANCH, "s", "noising", "inside"): a}
    t = transfer.transfer(model, g, {(transfer.BRANCH, "s"): ev}, found, TransferSettings(
        seeds=[0, 1], boot=S.Bootstrap(100), random_placements=["outside"]))
    md = t.filter(pl.col("source_task") == transfer.DECISION).row(0, named=True)
    assert (md["semantics"], md["target_direction"]) == ("induction", "denoising")
    mode = evaluation.Mode("denoising", "outside", "resample")
    e, f, r = (evaluation.evaluate(model, g, ev, x, mode).metric
               for x in (torch.zeros_like(g.mask), g.mask, a))
    assert md["faithfulness"] == pytest.approx(evaluation.faithfulness(r, e, f), abs=1e-6)
    assert md["random_faithfulness"] is not None and md["n_pairs"] == ev.n
    bc = t.filter(pl.col("source_task") == transfer.BRANCH).row(0, named=True)
    assert (bc["semantics"], bc["target_direction"]) == ("prevention", "noising")
    assert bc["random_faithfulness"] is None  # random circuits for the main placement only


def test_bootstrap_resamples_documents_not_windows():
    # 4 documents of 10 identical windows each: 4 independent values, not 40
    x = torch.tensor([0.0] * 10 + [1.0] * 10 + [0.0] * 10 + [1.0] * 10, dtype=torch.float64)
    groups = torch.arange(4).repeat_interleave(10)
    boot = S.Bootstrap(2000, 0)
    lo_p, hi_p = boot.interval(S.wmean(x, boot.indices(40))[None])
    lo_d, hi_d = boot.interval(S.wmean(x, boot.indices(40, groups))[None])
    assert float(hi_p - lo_p) < 0.35          # pairs as if independent: too narrow
    assert float(hi_d - lo_d) > 0.7           # documents: as wide as 4 coin flips allow
    w = boot.indices(40, groups)
    assert torch.all(w.view(2000, 4, 10) == w.view(2000, 4, 10)[:, :, :1])  # whole documents
    assert torch.allclose(w.sum(1), torch.full((2000,), 40.0, dtype=torch.float64))


def test_spread_takes_one_pair_per_document_first():
    pairs = pl.DataFrame({"doc_id": [f"d{i // 5}" for i in range(15)],
                          "offset": [8 * (i % 5) for i in range(15)], "answer": [1] * 15})
    got = evaluation.spread(pairs, 4, seed=0)
    assert got.height == 4 and got["doc_id"].n_unique() == 3
    assert set(evaluation.spread(pairs, 4, 0)["doc_id"]) == set(
        evaluation.spread(pairs.reverse(), 4, 0)["doc_id"]
    )
    assert evaluation.spread(pairs.reverse(), 4, 0).sort("doc_id", "offset").equals(
        got.sort("doc_id", "offset"))  # independent of row order
    assert evaluation.spread(pairs, None).height == 15 and evaluation.spread(pairs, 99).height == 15


def test_size_matched_transfer_compares_rankings_at_the_same_k(setup):
    model, g, ev, _ = setup
    if model.config.model_type != "gpt_neox":
        pytest.skip("one architecture is enough for the bookkeeping")
    own, other = evaluation.random_ranking(g, 1), evaluation.random_ranking(g, 2)
    evsets = {(transfer.BRANCH, "s"): ev}
    orders = {(transfer.BRANCH, "s", "noising"): own, (transfer.DECISION, "s", "denoising"): other,
              (transfer.BRANCH, "s", "denoising"): own, (transfer.DECISION, "s", "noising"): own}
    reps: list = []
    t = transfer.matched_transfer(model, g, evsets, orders, {("s", "prevention"): [3, 9],
                                                             ("s", "induction"): [5]},
                                  TransferSettings(boot=S.Bootstrap(100)), replicates=reps)
    assert t.height == 3 and len(reps) == 3
    prev = t.filter(pl.col("semantics") == "prevention").sort("k")
    assert prev["source_task"].to_list() == [transfer.DECISION] * 2
    assert prev["source_direction"].to_list() == ["denoising"] * 2   # MD prevention
    mode = evaluation.Mode("noising", "outside", "resample")
    e = evaluation.evaluate(model, g, ev, torch.zeros_like(g.mask), mode).metric
    f = evaluation.evaluate(model, g, ev, g.mask, mode).metric
    for r in prev.iter_rows(named=True):
        k = r["k"]
        want_own = evaluation.faithfulness(
            evaluation.evaluate(model, g, ev, evaluation.circuit(g, own, k), mode).metric, e, f
        )
        want_src = evaluation.faithfulness(
            evaluation.evaluate(model, g, ev, evaluation.circuit(g, other, k), mode).metric, e, f
        )
        assert r["own"] == pytest.approx(want_own, abs=1e-6)
        assert r["transferred"] == pytest.approx(want_src, abs=1e-6)
        assert r["gap"] == pytest.approx(want_src - want_own, abs=1e-6)
    # the same ranking on both sides: the gap is 0 in every resample
    ind = t.filter(pl.col("semantics") == "induction").row(0, named=True)
    assert (ind["gap"], ind["gap_lo"], ind["gap_hi"]) == (0.0, 0.0, 0.0)
    assert float(reps[-1].abs().max()) == 0.0


def test_sweep_ranks_each_direction_by_its_own_scores(setup):
    """Noising and de-noising scores that rank the edges in opposite orders: every curve
    point and the minimal circuit of a de-noising mode are the top edges of the de-noising
    ranking, those of a noising mode the top of the noising ranking; a file without
    de-noising scores ranks both by the noising ones."""
    model, g, ev, (clean, corrupt, answer, wrong) = setup
    if model.config.model_type != "gpt_neox":
        pytest.skip("one architecture suffices: the ranking does not depend on it")
    sel = evaluation.EvalSet.make(model, clean[:3], corrupt[:3], answer[:3], wrong[:3], 3)
    noising = torch.rand(g.mask.shape, generator=torch.Generator().manual_seed(0)) * g.mask
    order = evaluation.ranking(g, noising)
    denoising = torch.zeros(g.mask.numel())
    denoising[order] = torch.arange(1, g.n_edges + 1, dtype=torch.float32)  # reversed
    denoising = denoising.view(g.mask.shape)
    reverse = evaluation.ranking(g, denoising)
    assert torch.equal(reverse, order.flip(0))
    modes = evaluation.modes(evaluation.DIRECTIONS, ["inside", "outside"], ["resample"])
    ks = [g.n_edges // 4, g.n_edges // 2]
    curve, minimal = circuits_search.sweep(
        model, g, sel, ev, {"noising": noising, "denoising": denoising}, modes,
        SearchSettings(target=0.85, sizes=ks, boot=S.Bootstrap(20)))
    for m in modes:
        mine, other = (order, reverse) if m.direction == "noising" else (reverse, order)
        rows = curve.filter((pl.col("split") == "evaluation") & (pl.col("circuit") ==
                            "attribution") & (pl.col("direction") == m.direction)
                            & (pl.col("placement") == m.placement))
        for k in ks:
            # float32 rounding: batched (many circuits) against one at a time
            got = rows.filter(pl.col("k") == k)["metric"][0]
            want = evaluation.evaluate(model, g, ev, evaluation.circuit(g, mine, k), m).metric
            wrong_ = evaluation.evaluate(model, g, ev, evaluation.circuit(g, other, k), m).metric
            assert got == pytest.approx(want, abs=1e-6) and abs(want - wrong_) > 1e-4
        k = minimal[m]["k"]
        assert minimal[m]["edges"] == mine[:k].tolist()
        if k < g.n_edges:
            assert set(minimal[m]["edges"]) != set(other[:k].tolist())
    den = evaluation.Mode("denoising", "inside", "resample")
    _, one = circuits_search.sweep(model, g, sel, ev, {"noising": noising}, [den],
                                   SearchSettings(target=0.85, sizes=ks, boot=S.Bootstrap(20)))
    assert one[den]["edges"] == order[:one[den]["k"]].tolist()


def test_edge_overlap_of_two_directions():
    assert evaluation.edge_overlap([1, 2, 3], [3, 4], ("noising", "denoising")) == {
        "noising_edges": 3, "denoising_edges": 2, "shared": 1, "jaccard": 0.25}
    assert evaluation.edge_overlap([1], None)["jaccard"] is None


def test_length_batches_keep_padding_under_the_limit():
    lengths = sorted([2, 2, 2, 3, 3, 4, 5, 5, 6, 6, 7, 7, 7, 7, 7, 8, 8, 8, 9, 10, 10, 10, 11,
                      11, 14, 14, 14, 15, 17, 32])  # a default evaluation set's
    for size in (1, 4, 32):
        batches = evaluation.length_batches(lengths, size, 0.2)
        assert [i for b in batches for i in b] == list(range(len(lengths)))  # in order
        for b in batches:
            ls = [lengths[i] for i in b]
            assert len(b) <= size and 1 - sum(ls) / (len(ls) * max(ls)) <= 0.2
    assert len(evaluation.length_batches(lengths, 32, 1.0)) == 1
    assert evaluation.length_batches([], 8) == []


def test_length_buckets_change_no_result_and_keep_groups_aligned(setup):
    """One batch per pair length against one padded batch: the same per-pair metrics (in the
    same, length-sorted, order) and the same documents per pair."""
    model, g, _, (clean, corrupt, answer, wrong) = setup
    clean = [c[: 3 + i] for i, c in enumerate(clean)]  # lengths 3, 4, 5, 6, 5
    corrupt = [c[: 3 + i] for i, c in enumerate(corrupt)]
    docs = ["d1", "d0", "d1", "d2", "d0"]
    one = evaluation.EvalSet.make(model, clean, corrupt, answer, wrong, 8, docs, max_padding=1.0)
    cut = evaluation.EvalSet.make(model, clean, corrupt, answer, wrong, 8, docs, max_padding=0.0)
    assert len(one.batches) == 1 and len(cut.batches) == 4
    assert one.padding == pytest.approx(1 - 23 / 30) and cut.padding == 0.0
    assert torch.equal(one.groups, cut.groups)
    jobs = [
        (
            evaluation.Mode("noising", p, "resample"),
            evaluation.circuit(g, evaluation.random_ranking(g, 0), k),
        )
        for p in evaluation.PLACEMENTS
        for k in (0, 9, g.n_edges)
    ]
    for a, b in zip(
        evaluation.evaluate_many(model, g, one, jobs),
        evaluation.evaluate_many(model, g, cut, jobs),
        strict=True,
    ):
        assert torch.allclose(a.metric, b.metric, atol=1e-5)
    assert torch.allclose(one.mean, cut.mean, atol=1e-6)


def test_coarse_search_is_the_authors_step_10_bisection_and_can_overshoot_the_smallest():
    # accepted from 37 edges on: E = 100 evaluates 50 (yes: hi = 40), 20 (no: lo = 30),
    # 35 (no: lo = 45 > hi) and stops at 50, although 37 would do
    calls = []

    def f(ks):
        calls.extend(ks)
        return [1.0 if k >= 37 else 0.0 for k in ks]
    best, seen = circuits_search.coarse_search(f, 100, lambda v: v >= 0.8)
    assert best == 50 and calls == [50, 20, 35] and list(seen) == calls
    # nothing accepted: it keeps the whole graph, as their code
    assert (
        circuits_search.coarse_search(lambda ks: [0.0] * len(ks), 100, lambda v: v >= 0.8)[0] == 100
    )


def test_ratio_of_full_criterion_ignores_the_empty_circuit_and_has_no_upper_limit():
    band, ratio = (
        circuits_search.Criterion("band", 0.8),
        circuits_search.Criterion("ratio_of_full", 0.8),
    )
    # M(empty) = 2, M(full) = 10: M(C) = 8.5 is F = 0.8125 (in the band) and 0.85 of full
    assert band.value(8.5, 2.0, 10.0) == pytest.approx(0.8125)
    assert ratio.value(8.5, 2.0, 10.0) == pytest.approx(0.85)
    # M(C) = 8.2: 0.82 of full, but F = 0.775 only once M(empty) is subtracted
    assert ratio.accepts(ratio.value(8.2, 2.0, 10.0))
    assert not band.accepts(band.value(8.2, 2.0, 10.0))
    # an overshoot: the band refuses it, the ratio does not
    assert ratio.accepts(1.5) and not band.accepts(1.5)
    assert not ratio.accepts(float("nan")) and not band.accepts(None)
    v = torch.tensor([0.79, 0.8, 1.19, 1.21, math.nan])
    assert band.accepts_all(v).tolist() == [False, True, True, False, False]
    assert ratio.accepts_all(v).tolist() == [False, True, True, True, False]
    with pytest.raises(ValueError, match="ratio"):
        circuits_search.Criterion("ratio", 0.8)


@pytest.mark.parametrize("criterion, search", [("ratio_of_full", "band"),
                                               ("ratio_of_full", "coarse"),
                                               ("band", "coarse")])
def test_sweep_chooses_by_the_configured_criterion_and_search(setup, criterion, search):
    model, g, ev, (clean, corrupt, answer, wrong) = setup
    if model.config.model_type != "gpt_neox":
        pytest.skip("one architecture is enough here")
    mode = evaluation.Mode("noising", "outside", "resample")
    scores = torch.randn(g.mask.shape, generator=torch.Generator().manual_seed(4)) * g.mask
    target = 0.8
    _, minimal = circuits_search.sweep(
        model,
        g,
        ev,
        ev,
        scores,
        [mode],
        SearchSettings(target=target, curve_points=8, boot=S.Bootstrap(50),
                       criterion=criterion, search=search),
    )
    rec = minimal[mode]
    assert (rec["criterion"], rec["search"]) == (criterion, search)
    order = evaluation.ranking(g, scores)
    full = evaluation.evaluate(model, g, ev, g.mask, mode).metric
    empty = evaluation.evaluate(model, g, ev, torch.zeros_like(g.mask), mode).metric

    def value(k):
        m = evaluation.evaluate(model, g, ev, evaluation.circuit(g, order, k), mode).metric
        return m / full if criterion == "ratio_of_full" else evaluation.faithfulness(m, empty, full)
    crit = circuits_search.Criterion(criterion, target)
    assert rec["selection_value"] == pytest.approx(value(rec["k"]), abs=1e-9)
    assert crit.accepts(value(rec["k"]))
    if search == "band":  # refined to one edge: one fewer is not accepted
        assert not crit.accepts(value(rec["k"] - 1))
    else:  # the coarse search's own answer, replayed by hand
        want, _ = circuits_search.coarse_search(
            lambda ks: [value(k) for k in ks], g.n_edges, crit.accepts
        )
        assert rec["k"] == want


def test_kl_is_zero_for_the_full_circuit_and_the_clean_to_corrupt_kl_for_none(setup):
    model, g, ev, (clean, corrupt, answer, wrong) = setup
    mode = evaluation.Mode("noising", "outside", "resample")
    full = evaluation.evaluate_many(model, g, ev, [(mode, g.mask)])[0]
    none = evaluation.evaluate_many(model, g, ev, [(mode, torch.zeros_like(g.mask))])[0]
    assert full.kl.abs().max() < 1e-5
    want = []
    with torch.no_grad():
        for a, b in zip(clean, corrupt, strict=True):
            p = model(input_ids=torch.tensor([a])).logits[0, -1].log_softmax(-1)
            q = model(input_ids=torch.tensor([b])).logits[0, -1].log_softmax(-1)
            want.append(float((p.exp() * (p - q)).sum()))
    # EvalSet order is length-sorted: compare as sorted multisets
    assert sorted(none.kl.tolist()) == pytest.approx(sorted(want), abs=1e-4)
    assert min(want) > 1e-3
