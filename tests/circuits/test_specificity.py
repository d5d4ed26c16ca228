"""Specificity of a memorization circuit against its control pairs (vermem.circuits.specificity)."""

import pytest
import torch

from vermem.attribution.graph import Graph, Shape
from vermem.circuits import evaluation
from vermem.circuits import specificity as SP
from vermem.circuits.settings import SpecificitySettings
from vermem.core import stats as S

from ..attribution.test_attribution import neox

V = 100


def evalset(model, seed, n=6, docs=None):
    gen = torch.Generator().manual_seed(seed)
    clean = torch.randint(1, V, (n, 7), generator=gen).tolist()
    corrupt = [c[:-2] + torch.randint(1, V, (2,), generator=gen).tolist() for c in clean]
    answer = torch.randint(1, V, (n,), generator=gen).tolist()
    wrong = torch.randint(1, V, (n,), generator=gen).tolist()
    docs = docs or [f"s{seed}-{i // 2}" for i in range(n)]
    return evaluation.EvalSet.make(model, clean, corrupt, answer, wrong, 4, docs)


def test_specificity_is_the_joint_difference_and_zero_on_the_same_pairs():
    model = neox()
    g = Graph(Shape.from_config(model.config))
    mem, ctl = evalset(model, 0), evalset(model, 1)
    own, control = evaluation.random_ranking(g, 3), evaluation.random_ranking(g, 4)
    mode = evaluation.Mode("noising", "outside", "resample")
    boot = S.Bootstrap(200)
    shared = S.Resampler(boot, {"x": list(set(mem.docs) | set(ctl.docs))})
    k = g.n_edges // 5
    settings = SpecificitySettings(metric="logit_diff", boot=boot, per_forward=8,
                                   seeds=[0, 1], resampler=shared, sizes=[2, k, 40])
    row, curve, reps = SP.evaluate(model, g, (mem, ctl), (own, control), mode, k, settings,
                                   whole_curve=True)

    def f(ev, ranking):
        e = evaluation.evaluate(model, g, ev, torch.zeros_like(g.mask), mode).metric
        full = evaluation.evaluate(model, g, ev, g.mask, mode).metric
        return evaluation.faithfulness(
            evaluation.evaluate(model, g, ev, evaluation.circuit(g, ranking, k), mode).metric,
            e,
            full,
        ), full - e

    (fm, gm), (fc, gc) = f(mem, own), f(ctl, own)
    assert row["f_memorized"] == pytest.approx(fm, abs=1e-6)
    assert row["f_control"] == pytest.approx(fc, abs=1e-6)
    assert row["specificity"] == pytest.approx(fm - fc, abs=1e-6)
    assert row["f_control_circuit_memorized"] == pytest.approx(f(mem, control)[0], abs=1e-6)
    assert row["gap_memorized"] == pytest.approx(gm, abs=1e-6)
    assert row["gap_control"] == pytest.approx(gc, abs=1e-6)
    i = SP.REPLICATES.index("specificity")
    assert torch.allclose(reps[i], reps[SP.REPLICATES.index("f_memorized")]
                          - reps[SP.REPLICATES.index("f_control")], equal_nan=True)
    assert row["specificity_lo"] <= row["specificity"] <= row["specificity_hi"]
    assert {(c["pairs"], c["circuit"]) for c in curve} == {
        ("memorized", "attribution"), ("control", "attribution"), ("memorized", "random"),
        ("control", "random")}
    # the same pairs as control: no specificity, in every resample
    settings = SpecificitySettings(metric="logit_diff", boot=boot, per_forward=8, seeds=[],
                                   resampler=shared, sizes=[k])
    row, _, reps = SP.evaluate(model, g, (mem, mem), (own, None), mode, k, settings)
    assert row["specificity"] == 0.0 and float(reps[i].nan_to_num().abs().max()) == 0.0
    assert row["f_control_circuit_memorized"] is None
