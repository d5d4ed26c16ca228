"""Study B across model families (issue 32): each stage checks only what it needs, a
Study-B-only Phi model runs, and the family finding on synthetic curves."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from vermem.models import loading

from ..conftest import REPO, TEST_CONFIG

BLOOM = {"hidden_size": 32, "n_layer": 2, "n_head": 4}  # a type no adapter reads
PHI = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
       "intermediate_size": 64, "partial_rotary_factor": 0.5, "max_position_embeddings": 64}


def saved(kind: str, folder: Path, tokenizer, **shape) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(kind, vocab_size=len(tokenizer), **shape,
                               bos_token_id=tokenizer.eos_token_id,
                               eos_token_id=tokenizer.eos_token_id)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def study_b_config(folder: Path, studies: list[str]) -> dict:
    """The .test config with one local model `m`, no organism, Study B on `m` only."""
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    cfg["models"] = {"m": {"source": "local", "path": str(folder)}}
    cfg["organism"] = None
    cfg["studies"] = studies
    cfg["dynamics"]["models"] = ["m"]
    return cfg


@pytest.fixture(scope="module")
def bloom_dir(tmp_path_factory, tokenizer) -> Path:
    return saved("bloom", tmp_path_factory.mktemp("bloom"), tokenizer, **BLOOM)


def test_a_study_b_only_model_skips_the_attribution_check(bloom_dir):
    loading.check_models(study_b_config(bloom_dir, ["B"]))
    assert loading.studies_of("m", study_b_config(bloom_dir, ["B"])) == ("B",)


def test_a_model_both_studies_use_gets_both_checks_and_the_error_names_the_study(bloom_dir):
    cfg = study_b_config(bloom_dir, ["A", "B"])
    assert loading.studies_of("m", cfg) == ("A", "B")
    with pytest.raises(loading.ModelError) as e:
        loading.check_models(cfg)
    assert str(e.value).startswith("config error at models.m.path: Study A needs it: "
                                   "model_type 'bloom' is not supported by the attribution "
                                   "stage")
    assert str(e.value).endswith("to run Study B alone on it, set studies: [B]")


def test_a_sequential_gpt_neox_is_refused_for_study_a_only(tmp_path, tokenizer):
    folder = saved("gpt_neox", tmp_path / "neox", tokenizer, use_parallel_residual=False,
                   hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=64, max_position_embeddings=64)
    loading.check_folder(folder, "here", studies=("B",), letters=4)
    with pytest.raises(loading.ModelError, match="here: Study A needs it: GPT-NeoX without "
                                                 "parallel residual"):
        loading.check_folder(folder, "here", studies=("A", "B"), letters=4)


def test_study_b_checks_its_letters_and_its_context(bloom_dir, phi_dir):
    class Tok:  # 'c' is two tokens
        def encode(self, c, add_special_tokens=False):
            return [1, 2] if c == "c" else [ord(c)]

        def decode(self, ids):
            return "".join(chr(i) if i > 2 else "c" for i in ids)

    loading.check_letters(Tok(), 2, "here")
    with pytest.raises(loading.ModelError, match="here: Study B needs it: letter 'c' is not"):
        loading.check_letters(Tok(), 3, "here")
    cfg = study_b_config(bloom_dir, ["B"])
    assert loading.study_b_letters("m", cfg) == 4  # the .test grid's largest alphabet
    cfg["studies"] = ["A"]
    assert loading.study_b_letters("m", cfg) == 0
    cfg = study_b_config(phi_dir, ["B"])
    cfg["dynamics"]["grid"]["lengths"] = [100]  # the tiny Phi attends over 64 positions
    with pytest.raises(loading.ModelError, match="context of 64 tokens is shorter than the "
                                                 "longest Study B string"):
        loading.check_models(cfg)


@pytest.fixture(scope="module")
def phi_dir(tmp_path_factory, tokenizer) -> Path:
    return saved("phi", tmp_path_factory.mktemp("phi"), tokenizer, **PHI)


def test_a_study_b_only_phi_model_passes_the_precheck_and_runs(tmp_path, phi_dir):
    """A tiny random Phi through Study B alone, a very small grid: every job to the tables."""
    cfg = study_b_config(phi_dir, ["B"])
    dyn = cfg["dynamics"]
    dyn["inits"] = ["random"]
    dyn["grid"].update(alphabet_sizes=[2], lengths=[8], seeds=[0])
    dyn["training"]["epochs"] = 8
    dyn["q2"].update(epochs=[8], k=[1], k_fractions=[])
    dyn["sequential"].update(strings=1, length=6, epochs=4)
    loading.check_models(copy.deepcopy(cfg))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
         "results/dynamics/findings.parquet", "--cores", "1", "--configfile", str(path)],
        capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    phases = pl.read_parquet(tmp_path / "results" / "dynamics" / "phases.parquet")
    assert phases["model"].unique().to_list() == ["m"] and phases.height == 1
    findings = pl.read_parquet(tmp_path / "results" / "dynamics" / "findings.parquet")
    assert findings.height > 0


# -- the family finding on synthetic curves ---------------------------------------------------

PHASES_CFG = {"loss_tolerance": 0.05, "accuracy_rise": 0.1, "plateau_epochs": 3,
              "hold_epochs": 3}
H4 = 1.3862943611198906  # ln 4: a uniform 4-letter string's own entropy


def curve(guessing: bool, delay: int) -> tuple[list[float], list[float]]:
    """20 epochs of accuracy and loss: with `guessing`, a plateau at H(q) with the accuracy
    at the best guess (epochs 2-7), then memorization from epoch 8 + delay; without, the
    accuracy rises from epoch 1 and the loss falls past H(q) in one epoch."""
    if guessing:
        start = 8 + delay
        acc = [0.1, 0.2] + [0.25] * (start - 2) + [min(1.0, 0.25 + 0.25 * (e - start + 1))
                                                  for e in range(start, 20)]
        loss = [3.0, 2.0] + [H4] * (start - 2) + [max(0.0, H4 * (1 - 0.3 * (e - start + 1)))
                                                 for e in range(start, 20)]
    else:
        acc = [0.1] + [min(1.0, 0.4 + 0.2 * e) for e in range(1, 20)]
        loss = [3.0] + [max(0.0, 0.6 - 0.2 * e) for e in range(1, 20)]
    return acc, loss


def synthetic(units: dict[tuple[str, str], bool], strings: int = 6) -> pl.DataFrame:
    """The phases table of `strings` strings per (model, init), each with or without a
    guessing phase as `units` says; alphabet sizes 2 and 4 and lengths 16 and 32 vary
    (memorization later for larger alphabets and longer strings)."""
    from vermem.dynamics import strings as st

    curves, info = [], []
    for (model, init), guessing in units.items():
        for i in range(strings):
            alphabet, length = (2, 4)[i % 2], (16, 32)[(i // 2) % 2]
            acc, loss = curve(guessing, delay=(alphabet == 4) + (length == 32))
            curves += [{"model": model, "init": init, "string_id": i, "seed": 0, "epoch": e,
                        "accuracy": a, "loss": v}
                       for e, (a, v) in enumerate(zip(acc, loss, strict=True))]
            info.append({"string_id": i, "seed": 0, "alphabet_size": alphabet,
                         "entropy_fraction": 1.0, "length": length, "entropy": H4,
                         "empirical_entropy": H4, "max_p": 0.25, "guess_accuracy": 0.25})
    phases = st.phases_table(pl.DataFrame(curves), pl.DataFrame(info).unique(), ["model", "init"],
                             PHASES_CFG)
    return phases.with_columns(pl.lit(1000).alias("n_params"))


FAMILIES = {"pythia": "gpt_neox", "organism": "gpt_neox", "phi": "phi", "llama": "llama"}


def family_finding(units: dict[tuple[str, str], bool]) -> tuple[dict, pl.DataFrame]:
    from vermem.dynamics import findings

    rows = pl.DataFrame(findings.family_rows(synthetic(units), FAMILIES, 0),
                        schema=findings.SCHEMA)
    over = rows.filter(pl.col("finding") == findings.FAMILY_FINDING).row(0, named=True)
    return over, rows


def every(guessing: dict[str, bool]) -> dict[tuple[str, str], bool]:
    return {(m, i): guessing[m] for m in FAMILIES for i in ("pretrained", "random")}


def test_phases_in_every_family_agree():
    over, rows = family_finding(every(dict.fromkeys(FAMILIES, True)))
    assert over["verdict"] == "agrees" and over["compared"] == 3
    per = rows.filter(pl.col("finding").str.starts_with("the phases occur in family "))
    assert per["verdict"].to_list() == ["agrees"] * 3
    assert per["compared"].to_list() == [4, 2, 2]  # gpt_neox: pythia and organism, 2 inits
    assert "Wilson 95% 0.51-1.00, over initialisations" in per["shows"][0]
    # the alphabet-size and length findings per family: later for larger and longer
    factors = rows.filter(pl.col("question") == "Q1")
    assert factors.height == 6 and set(factors["verdict"]) == {"agrees"}
    assert factors["finding"].str.contains(r"\(family phi\)").sum() == 2


def test_one_family_without_a_guessing_phase_disagrees():
    over, rows = family_finding(every({**dict.fromkeys(FAMILIES, True), "phi": False}))
    assert over["verdict"] == "disagrees"
    assert over["reason"].startswith("every initialisation of phi lacks the phases")
    phi = rows.filter(pl.col("finding") == "the phases occur in family phi").row(0, named=True)
    assert phi["verdict"] == "disagrees" and phi["estimate"] == 0


def test_one_family_is_insufficient_and_a_mixed_family_too():
    over, rows = family_finding({("pythia", "pretrained"): True, ("pythia", "random"): True})
    assert over["verdict"] == "insufficient" and over["reason"].startswith("one family")
    assert rows.filter(pl.col("question") == "Q1").height == 0  # no per-family factors
    mixed = {**every(dict.fromkeys(FAMILIES, True)), ("llama", "random"): False}
    over, _ = family_finding(mixed)
    assert over["verdict"] == "insufficient"


def test_an_initialisation_with_few_strings_is_undetermined():
    from vermem.dynamics import findings

    assert findings.unit_call(3, 3) == "undetermined"  # Wilson 0.44-1.00
    assert findings.unit_call(4, 4) == "shows" and findings.unit_call(0, 4) == "lacks"


def test_the_summary_gives_the_family_rows_their_own_table_with_the_rule():
    from vermem.dynamics import findings
    from vermem.report import summary

    rows = findings.family_rows(synthetic(every({**dict.fromkeys(FAMILIES, True),
                                                 "phi": False})), FAMILIES, 0)
    text = "\n".join(summary.findings_section(pl.DataFrame(rows, schema=findings.SCHEMA)))
    assert "Across families" in text and "The unit is the initialisation" in text
    assert (f"| {findings.FAMILY_FINDING} | initialisations showing the phases per family: "
            f"gpt_neox 4/4; llama 2/2; phi 0/2 | 0.00 | 3 | **disagrees** |") in text
    assert "| the phases occur in family phi |" in text


def test_a_default_like_run_with_one_family_is_insufficient_and_keeps_its_other_rows():
    """The default config studies one family (the organism): its findings gain the family
    rows, insufficient, and keep every other row as before."""
    from vermem.dynamics import findings

    phases = synthetic({("organism", "pretrained"): True, ("organism", "random"): True})
    q3 = pl.DataFrame(schema={"model": pl.String, "init": pl.String, "stage": pl.Int64,
                              "trained": pl.Int64, "relearn": pl.Boolean,
                              "epochs_to_memorize": pl.Int32, "end_accuracy": pl.List(
                                  pl.Float64), "start_accuracy": pl.Float64})
    before = findings.table(phases, q3, 0.1, 0)
    after = findings.table(phases, q3, 0.1, 0, {"organism": "gpt_neox"})
    assert after.head(before.height).equals(before)
    extra = after.tail(after.height - before.height)
    assert extra["question"].to_list() == ["families", "families"]
    assert extra["verdict"][-1] == "insufficient"
    assert extra["reason"][-1].startswith("one family in the run (gpt_neox)")


# -- the cross-family configs -------------------------------------------------------------------

def plan_jobs(configfile: Path, tmp_path: Path) -> dict[str, int]:
    """Jobs per rule of a dry run of `configfile` as vermem.workflow.plan makes it
    (VERMEM_PLAN=1: no hub, no GGUF package, no model folder needed)."""
    from vermem.workflow import plan

    p = plan.build(configfile, None, workdir=tmp_path)
    return {rule: sum(j.rule == rule for j in p.jobs) for rule in {j.rule for j in p.jobs}}


def test_speicher2024_bills_three_families_pretrained_and_random_without_the_hub(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "speicher2024.yaml").read_text())
    dyn = cfg["dynamics"]
    assert cfg["studies"] == ["B"] and dyn["inits"] == ["pretrained", "random"]
    assert sorted(dyn["families"].values()) == ["llama-2", "phi", "pythia"]
    jobs = plan_jobs(REPO / "config" / "speicher2024.yaml", tmp_path)
    cells = (len(dyn["grid"]["alphabet_sizes"]) * len(dyn["grid"]["entropy_fractions"])
             * len(dyn["grid"]["lengths"]))
    assert jobs["dynamics_train"] == 3 * 2 * cells and jobs["dynamics_sequential"] == 6
    assert "attribution" not in jobs and "labels" not in jobs
    from vermem.workflow import resources

    for spec in cfg["models"].values():  # every model's shape is known to the plan
        assert resources.known_shape(spec["id"]) is not None, spec["id"]


def test_families_cpu_config_dry_runs_every_family(tmp_path):
    """The CPU config: the organism and SmolLM2 from pretrained and random, the shipped
    shapes from random only (no weight files), five families' worth of jobs."""
    cfg = yaml.safe_load((REPO / "config" / "families-cpu.yaml").read_text())
    jobs = plan_jobs(REPO / "config" / "families-cpu.yaml", tmp_path)
    cells = 2 * 2  # alphabet sizes x lengths
    assert jobs["dynamics_train"] == (2 * 2 + 3) * cells
    assert jobs["dynamics_sequential"] == 7 and jobs["train_organism"] == 1
    for name in ("pythia-shape", "phi-shape", "llama-shape"):
        folder = REPO / cfg["models"][name]["path"]
        assert not any(folder.glob("*.safetensors"))
        assert loading.uses(name, cfg) == {"studies": ("B",), "letters": 4, "weights": False}
    assert loading.uses("organism", cfg)["weights"]
    from vermem.models import shapes

    for name, spec in shapes.SHAPES.items():  # the shipped folders are the module's
        saved = yaml.safe_load((REPO / "config" / "families-cpu" / name / "config.json")
                               .read_text())
        assert {k: saved.get(k) for k in ("model_type", "hidden_size", "num_hidden_layers")} \
            == {k: spec[k] for k in ("model_type", "hidden_size", "num_hidden_layers")}
