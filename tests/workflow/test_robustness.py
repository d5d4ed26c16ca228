"""The robustness run (vermem.workflow.robustness): configs per seed, resuming, agreement of
verdicts."""

import copy

import polars as pl
import pytest
import yaml

from vermem.core.errors import VermemError
from vermem.report.figures.robustness import VERDICT_COLOURS, claims_grid
from vermem.workflow import robustness as R
from vermem.workflow.config import check, load_schema

from ..conftest import REPO

CONFIG = yaml.safe_load((REPO / "config" / "robustness.yaml").read_text())


def test_every_run_is_the_default_study_a_with_its_two_seeds_and_passes_the_schema():
    study = R.study_config(CONFIG)
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    runs = R.runs(CONFIG)
    assert len(runs) == len(set(runs)) == 9
    assert [r.training_seed for r in runs[:3]] == [runs[0].training_seed] * 3  # one training
    for run in runs:
        cfg = R.derived_config(study, run)
        assert cfg["organism"]["training"]["seed"] == run.training_seed
        assert cfg["contrastive"]["split_seed"] == run.split_seed
        check(copy.deepcopy(cfg), load_schema(REPO / "config" / "schema.yaml"))
        # the overrides switch off what no claim reads; the rest is the default's
        assert cfg["studies"] == ["A"] and cfg["dynamics"] is None
        assert cfg["circuits"]["placements"] == ["outside"]
        assert cfg["circuits"]["main"] == base["circuits"]["main"]
        assert cfg["organism"]["duplicates"] == base["organism"]["duplicates"]
        assert cfg["contrastive"]["split"] == base["contrastive"]["split"]
        assert cfg["organism"]["training"]["epochs"] == base["organism"]["training"]["epochs"]


def leaves(d, path=()):
    """{path: value} of every non-mapping value of a nested mapping."""
    out = {}
    for k, v in d.items():
        out.update(leaves(v, (*path, k)) if isinstance(v, dict) else {(*path, k): v})
    return out


def test_each_run_s_config_is_its_own_copy_differing_from_the_study_only_in_its_seeds():
    """The runs' configs are derived from one study config: each must differ from it in
    exactly its two seeds, and share no nested dict or list with it or with another run
    (editing one run's circuits or split must leave the study and every other run as they
    were)."""
    study = R.study_config(CONFIG)
    frozen = copy.deepcopy(study)
    runs = R.runs(CONFIG)
    cfgs = [R.derived_config(study, r) for r in runs]
    seeds = {("organism", "training", "seed"), ("contrastive", "split_seed")}
    for run, cfg in zip(runs, cfgs, strict=True):
        got, base = leaves(cfg), leaves(study)
        assert got.keys() == base.keys() | seeds
        assert {k for k in got if k not in base or got[k] != base[k]} <= seeds
        assert got[("organism", "training", "seed")] == run.training_seed
        assert got[("contrastive", "split_seed")] == run.split_seed
    # edit the first run's nested values in place
    first = cfgs[0]
    first["circuits"]["target"] = -1.0
    first["organism"]["training"]["epochs"] = -1
    first["contrastive"]["split"]["evaluation"] = -1.0
    first["circuits"]["placements"].append("nowhere")
    first["models"][R.organism(first)]["source"] = "edited"
    assert study == frozen
    for run, cfg in zip(runs[1:], cfgs[1:], strict=True):
        assert cfg == R.derived_config(frozen, run)
    # and the other way round: editing the study afterwards changes no derived run
    second = copy.deepcopy(cfgs[1])
    study["organism"]["training"]["epochs"] = -2
    study["circuits"]["placements"].clear()
    assert cfgs[1] == second


def test_merged_replaces_leaves_and_merges_mappings():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 3}
    over = {"a": {"c": [9]}, "e": {"f": [0]}}
    got = R.merged(base, over)
    assert got == {"a": {"b": 1, "c": [9]}, "d": 3, "e": {"f": [0]}}
    got["a"]["c"].append(8)
    got["e"]["f"].append(8)
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 3}  # the base is not changed
    assert over == {"a": {"c": [9]}, "e": {"f": [0]}}    # nor the overrides


@pytest.mark.parametrize("section, match", [
    (None, "robustness: missing"),
    ({"training_seeds": [0, 0], "split_seeds": [1]}, "robustness.training_seeds"),
    ({"training_seeds": [0], "split_seeds": []}, "robustness.split_seeds"),
    ({"training_seeds": [0], "split_seeds": [1], "base": "no/such.yaml"}, "robustness.base"),
])
def test_a_bad_robustness_section_is_one_error_naming_the_key(section, match):
    with pytest.raises(VermemError, match=match):
        R.settings({} if section is None else {"robustness": section})


def test_the_cli_refuses_a_missing_config_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        R.main(["--configfile", "no/such.yaml", "--dry-run"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "no/such.yaml" in err and "\n" not in err


def test_a_run_kept_with_the_same_config_is_not_run_again(tmp_path):
    import io
    import json

    cfg = copy.deepcopy(CONFIG)
    cfg["robustness"]["directory"] = str(tmp_path)
    study = R.study_config(cfg)
    first, second = R.runs(cfg)[:2]
    keep = tmp_path / first.name
    keep.mkdir(parents=True)
    (keep / "config.yaml").write_text(yaml.safe_dump(R.derived_config(study, first)))
    (tmp_path / "runs.json").write_text(json.dumps({first.name: 60.0}))
    # a second run kept under another config (an edited base) is run again
    (tmp_path / second.name).mkdir(parents=True)
    other = R.derived_config(study, second)
    other["circuits"]["target"] = 0.9
    (tmp_path / second.name / "config.yaml").write_text(yaml.safe_dump(other))
    out = io.StringIO()
    seconds = R.run_all(cfg, dry_run=True, out=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"{first.name}: kept from an earlier run"
    assert lines[1].startswith(f"{second.name}: snakemake --directory")
    assert len(lines) == 9 and seconds == {first.name: 60.0}


def by_run(verdicts):
    return pl.DataFrame([{"training_seed": t, "split_seed": s, "claim": c, "semantics": "both",
                          "verdict": v, "reason": "", "n_pairs": 30, "estimate": e,
                          "estimate_lo": e - 0.1, "estimate_hi": e + 0.1}
                         for (t, s, c, v, e) in verdicts])


def test_agreement_counts_verdicts_and_names_the_majority_or_a_tie():
    t = by_run([(0, 0, "X", "supported", 0.7), (0, 1, "X", "supported", 0.8),
                (1, 0, "X", "refuted", 0.2), (0, 0, "Y", "refuted", 0.1),
                (0, 1, "Y", "insufficient evidence", 0.5), (1, 0, "Y", "insufficient evidence",
                                                            0.4),
                (0, 0, "Z", "supported", 0.9), (0, 1, "Z", "refuted", 0.1)])
    got = {a["claim"]: a for a in R.agreement(t)}
    assert got["X"]["majority"] == "supported" and got["X"]["agree"] == pytest.approx(2 / 3)
    assert (got["X"]["supported"], got["X"]["refuted"]) == (2, 1)
    assert (got["X"]["estimate_min"], got["X"]["estimate_max"]) == (0.2, 0.8)
    assert got["Y"]["majority"] == "insufficient evidence"
    assert got["Z"]["majority"] is None and got["Z"]["agree"] == 0.5   # a tie
    text = R.render(R.agreement(t), t, {"train-0/split-0": 90.0}, {
        "training_seeds": [0, 1], "split_seeds": [0, 1]})
    assert "| X | both | 3 | 2 | 1 | 0 | supported | 67% | 0.200 .. 0.800 |" in text
    assert "| Z | both | 2 | 1 | 1 | 0 | no majority | 50% |" in text


def test_the_grid_colours_each_cell_by_its_run_s_verdict():
    t = by_run([(0, 0, "X", "supported", 0.7), (1, 0, "X", "refuted", 0.2),
                (0, 0, "Y", "insufficient evidence", 0.5), (1, 0, "Y", "supported", 0.9)])
    fig = claims_grid(t)
    ax = fig.axes[0]
    grid = ax.images[0].get_array()
    order = list(VERDICT_COLOURS)
    assert grid.tolist() == [[order.index("supported"), order.index("refuted")],
                             [order.index("insufficient evidence"), order.index("supported")]]
    assert [x.get_text() for x in ax.get_legend().get_texts()] == order
    assert [x.get_text() for x in ax.get_xticklabels()] == ["train 0\nsplit 0",
                                                           "train 1\nsplit 0"]


def test_each_kept_file_has_its_own_name():
    names = list(R.KEPT.values())
    assert len(set(names)) == len(names) == 3
    assert all("{" not in n for n in names)
