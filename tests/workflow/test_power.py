"""The power table (vermem.workflow.pair_forecast): predicted memorized samples, pairs and
documents per
model, task and subset from stated rates, and the cells flagged as insufficient evidence."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from vermem.core.errors import VermemError
from vermem.workflow import pair_forecast
from vermem.workflow.config import ConfigError, check, load_schema

REPO = Path(__file__).resolve().parents[2]
SCHEMA = load_schema(REPO / "config" / "schema.yaml")
F = pair_forecast.ForecastSettings
SPLIT = {"attribution": 0.5, "selection": 0.25, "evaluation": 0.25}


def test_prediction_of_a_hand_computed_cell():
    """10,000 samples x 2% = 200 memorized; x 0.5 pairs = 100; split 50/25/25; 8 windows per
    document: 0.125 documents per memorized sample = 25 documents, 6.25 in the evaluation
    part; the selection cap of 10 pairs binds, the evaluation's 30 does not."""
    c = pair_forecast.predict("m", "t", "s", 10_000, pair_forecast.Rates(0.02, 0.5, 0.125),
                              F(SPLIT, {"selection": 10, "evaluation": 30}, min_pairs=5))
    assert c.memorized == pytest.approx(200) and c.pairs == pytest.approx(100)
    assert c.parts == pytest.approx({"attribution": 50, "selection": 25, "evaluation": 25})
    assert c.documents == pytest.approx({"attribution": 12.5, "selection": 6.25,
                                         "evaluation": 6.25})
    assert c.circuit == pytest.approx({"selection": 10, "evaluation": 25})
    assert c.circuit_documents == pytest.approx({"selection": 6.25, "evaluation": 6.25})
    # enough pairs (>= 5), too few documents (6 < 10) in both bootstrapped parts
    assert c.flags == ("selection: 6 documents < 10 for the cluster bootstrap",
                       "evaluation: 6 documents < 10 for the cluster bootstrap")
    # one window per document: documents are the pairs' own count, never more
    one = pair_forecast.predict(
        "m", "t", "s", 10_000, pair_forecast.Rates(0.02, 0.5, 1.0), F(SPLIT, {}, 20)
    )
    assert one.documents == pytest.approx({"attribution": 50, "selection": 25,
                                           "evaluation": 25})
    assert one.flags == ()


def test_flags_a_too_small_cell_and_not_a_large_enough_one():
    r = pair_forecast.Rates(0.01, 0.3, 1.0)
    small = pair_forecast.predict(
        "m", "t", "s", 20_000, r, F(SPLIT, {}, min_pairs=20)
    )  # 15 pairs each
    assert small.flags == ("selection: 15 pairs (predicted) < min_pairs 20",
                           "evaluation: 15 pairs (predicted) < min_pairs 20")
    large = pair_forecast.predict("m", "t", "s", 30_000, r, F(SPLIT, {}, 20))  # 22.5 each
    assert large.flags == ()
    # the cap of the circuits stage can flag what the pairs alone would not
    capped = pair_forecast.predict("m", "t", "s", 30_000, r, F(SPLIT, {"selection": 16}, 20))
    assert capped.flags == ("selection: 16 pairs (max_pairs 16 of 22 predicted) < "
                            "min_pairs 20",)


def test_no_selection_part_checks_the_evaluation_pairs_the_sizes_are_chosen_on():
    """contrastive.split.selection = 0 (config/lasy2025.yaml, the authors' design): the
    circuits stage chooses sizes on the evaluation pairs, so the selection part's count is
    the evaluation part's, and a cell is flagged only when those are too few."""
    r = pair_forecast.Rates(0.01, 0.3, 1.0)
    split = {"attribution": 0.9, "selection": 0.0, "evaluation": 0.1}
    # 10**5 x 0.01 x 0.3 = 300 pairs, 30 evaluation pairs, capped at 25: enough (>= 20)
    big = pair_forecast.predict("m", "t", "s", 10**5, r, F(split, {"evaluation": 25}, 20))
    assert big.flags == ()
    assert big.circuit == pytest.approx({"selection": 25, "evaluation": 25})
    # 5,000 samples: 1.5 evaluation pairs; flagged on the evaluation part alone
    small = pair_forecast.predict("m", "t", "s", 5_000, r, F(split, {}, 20))
    assert small.flags and all(f.startswith("evaluation: ") for f in small.flags)
    # a selection part that exists but is empty by rounding is still checked as itself
    tiny = pair_forecast.predict("m", "t", "s", 10**5, r, F(
        {"attribution": 0.89, "selection": 0.01, "evaluation": 0.1}, {}, 20))
    assert any(f.startswith("selection: 3 pairs") for f in tiny.flags)


def test_lasy2025_plan_does_not_flag_its_selection_part():
    cfg = yaml.safe_load((REPO / "config" / "lasy2025.yaml").read_text())
    assert cfg["contrastive"]["split"]["selection"] == 0
    cells, _ = pair_forecast.cells(cfg)
    assert cells
    assert not any(f.startswith("selection: ") for c in cells for f in c.flags)
    text = pair_forecast.render(cfg, cells, [])
    assert "no selection part" in text


def _pythia() -> dict:
    return yaml.safe_load((REPO / "config" / "pythia.yaml").read_text())


def test_pythia_config_is_sized_so_that_no_cell_is_flagged():
    cfg = _pythia()
    cells, assumed = pair_forecast.cells(cfg)
    assert assumed == []        # every rate stated in the config
    models, tasks = set(cfg["models"]), pair_forecast.tasks(cfg)
    assert {(c.model, c.task, c.subset) for c in cells} == {
        (m, t, s) for m in models for t in tasks for s in cfg["corpus"]["subsets"]}
    assert "memorization_decision_control" in tasks
    assert [c for c in cells if c.flags] == []
    # the rarest cell: the smallest model's rarest task, computed by hand
    c = next(c for c in cells if c.model == "pythia-70m-deduped"
             and c.task == "memorization_decision_control")
    rate = cfg["plan"]["memorized"]["pythia-70m-deduped"]
    per = cfg["plan"]["pairs_per_memorized"]["memorization_decision_control"]
    n = cfg["corpus"]["samples_per_subset"]
    assert c.parts["evaluation"] == pytest.approx(
        n * rate * per * cfg["contrastive"]["split"]["evaluation"])
    # the paper's size and split would leave every cell insufficient
    cfg["corpus"]["samples_per_subset"] = 20_000
    cfg["contrastive"]["split"] = {"attribution": 0.8, "selection": 0.1, "evaluation": 0.1}
    assert all(c.flags for c in pair_forecast.cells(cfg)[0])


def test_default_config_is_sized_to_decide():
    """The default's selection part (0.4 of the documents, max_pairs.selection 24) decides
    every cell, at the measured sample counts, not the plan's 1,000-document guess."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cells, _ = pair_forecast.cells(cfg)
    assert cells and not any(c.flags for c in cells)
    assert {c.subset: c.samples for c in cells} == cfg["plan"]["samples"]


@pytest.mark.parametrize("cap, circuit, flag", [
    (19, 19, "selection: 19 pairs (max_pairs 19 of 22 predicted) < min_pairs 20"),
    (20, 20, None),     # exactly min_pairs: enough
    (21, 21, None),
    (23, 22.5, None),   # above the prediction: the cap does not bind
])
def test_a_selection_cap_next_to_min_pairs(cap, circuit, flag):
    """30,000 samples x 1% x 0.3 pairs = 90 pairs; a quarter, 22.5, in the selection part
    (22 shown): a cap just below min_pairs 20 flags it, one at or above does not."""
    r = pair_forecast.Rates(0.01, 0.3, 1.0)
    c = pair_forecast.predict("m", "t", "s", 30_000, r, F(SPLIT, {"selection": cap}, 20))
    assert c.parts["selection"] == pytest.approx(22.5)
    assert c.circuit["selection"] == pytest.approx(circuit)
    assert c.circuit["evaluation"] == pytest.approx(22.5)
    assert c.flags == ((flag,) if flag else ())


@pytest.mark.parametrize("cap, flagged", [(19, True), (20, False), (21, False)])
def test_sizes_chosen_on_the_evaluation_pairs_read_the_evaluation_cap(cap, flagged):
    """No selection part (split 0.75 / 0 / 0.25): 22.5 evaluation pairs; a selection cap
    far below min_pairs is moot, the evaluation cap decides, and the selection count is
    the evaluation's."""
    r = pair_forecast.Rates(0.01, 0.3, 1.0)
    split = {"attribution": 0.75, "selection": 0.0, "evaluation": 0.25}
    c = pair_forecast.predict("m", "t", "s", 30_000, r,
                              F(split, {"selection": 5, "evaluation": cap}, 20))
    assert c.parts["evaluation"] == pytest.approx(22.5) and c.parts["selection"] == 0
    assert c.circuit == pytest.approx({"selection": cap, "evaluation": cap})
    assert c.flags == ((f"evaluation: {cap} pairs (max_pairs {cap} of 22 predicted) < "
                        "min_pairs 20",) if flagged else ())


def test_unstated_rates_are_assumed_and_said():
    cfg = _pythia()
    del cfg["plan"]
    cells, assumed = pair_forecast.cells(cfg)
    assert any(a.startswith("memorized share of gpt-neo-125m: 0.05") for a in assumed)
    text = pair_forecast.render(cfg)
    assert "assumed: pairs per memorized sample of branch_comparison: 1" in text


def test_plan_section_names_are_checked():
    base = _pythia()
    for key, value, message in (
            ("memorized", {"pythia-7b": 0.1}, "plan.memorized.pythia-7b: not a model"),
            ("memorized", {"gpt-neo-125m": {"Nope": 0.1}}, "plan.memorized.gpt-neo-125m.Nope"),
            ("pairs_per_memorized", {"nope": 1.0}, "plan.pairs_per_memorized.nope"),
            ("samples", {"Nope": 5}, "plan.samples.Nope")):
        cfg = copy.deepcopy(base)
        cfg["plan"][key] = value
        with pytest.raises(VermemError, match=message.replace(".", r"\.")):
            check(cfg, SCHEMA, planning=True)
    cfg = _pythia()
    cfg["plan"]["memorized"]["gpt-neo-125m"] = 1.5
    with pytest.raises(ConfigError, match="plan.memorized.gpt-neo-125m"):
        check(cfg, SCHEMA, planning=True)
