import copy
import os
import subprocess
import sys

import pytest
import yaml

from vermem.workflow.config import ConfigError, check, load_schema, validate_schema

from ..conftest import REPO

SCHEMA = load_schema(REPO / "config" / "schema.yaml")


def load(name):
    return yaml.safe_load((REPO / "config" / name).read_text())


@pytest.fixture
def default():
    return load("config.yaml")


def test_embedded_default_and_test_config_are_valid():
    check(load("config.yaml"), SCHEMA)
    check(yaml.safe_load((REPO / ".test/config/config.yaml").read_text()), SCHEMA)


def test_paper_config_is_valid_except_for_its_placeholder_shard():
    cfg = load("pythia.yaml")
    validate_schema(cfg, SCHEMA)
    assert {m["id"] for m in cfg["models"].values()} == {
        "EleutherAI/gpt-neo-125m", *(f"EleutherAI/pythia-{s}-deduped"
                                     for s in ("70m", "160m", "410m", "1b"))}
    assert cfg["memorization"]["prefix_tokens"] == cfg["memorization"]["continuation_tokens"] == 50
    assert set(cfg["corpus"]["subsets"]) == {"Wikipedia (en)", "Github", "Enron Emails", "Pile-CC"}
    with pytest.raises(ConfigError, match="shard file not found: /data/pile/train/00.jsonl.zst"):
        check(cfg, SCHEMA)


def test_paper_config_with_real_shards_passes(tmp_path):
    cfg = load("pythia.yaml")
    shard = tmp_path / "00.jsonl.zst"
    shard.write_bytes(b"")
    cfg["corpus"]["shards"] = [str(tmp_path / "*.jsonl.zst")]
    check(cfg, SCHEMA)


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["corpus"].update(bogus=1), "config error at corpus: unknown key(s) 'bogus'"),
    (lambda c: c.update(extra=True), "config error at <top level>: unknown key(s) 'extra'"),
    (lambda c: c["memorization"].update(prefix_tokens="32"),
     "config error at memorization.prefix_tokens: '32' is not of type 'integer'"),
    (lambda c: c["corpus"].pop("subsets"), "'subsets' is a required property"),
    (lambda c: c["organism"]["architecture"].update(context=48),
     "config error at organism.architecture.context: 48 < prefix + continuation tokens (64)"),
    (lambda c: c["corpus"].update(shards=["data/00.jsonl"]),
     "config error at corpus.shards: standin is set but no shard is under results/standin/"),
    (lambda c: c["organism"]["training"].update(epochs=0),
     "organism.training.epochs: 0 is less than the minimum of 1"),
    (lambda c: c["models"].update(x={"source": "hub"}), "models.x: 'id' is a required property"),
    (lambda c: c["corpus"].update(main_subset="Nope"), "corpus.main_subset: 'Nope'"),
    (lambda c: c["corpus"].update(subsets=["Github"], main_subset="Github")
     or c["memorization"]["thresholds"].pop("per_subset"),
     "corpus.subsets: ['Github'] not written by the stand-in corpus"),
    (lambda c: c["memorization"]["thresholds"]["per_subset"].update(Nope={"high": 1, "low": 0}),
     "memorization.thresholds.per_subset.Nope"),
    (lambda c: c["organism"]["duplicates"].update(max_tokens=10),
     "organism.duplicates.max_tokens: 10 < prefix + continuation tokens"),
    (lambda c: c.update(standin=None) or c["corpus"].update(shards=["/no/such/00.jsonl"]),
     "config error at corpus.shards: shard file not found: /no/such/00.jsonl"),
    (lambda c: c["circuits"].update(rank_by="wrong_logit"),
     "config error at circuits.rank_by: 'wrong_logit' is not one of attribution.metrics"),
    (lambda c: c["circuits"].update(placements=["inside"]),
     "config error at circuits.main.placement: 'outside' is not one of circuits.placements"),
    (lambda c: c["circuits"].update(directions=["sideways"]),
     "config error at circuits.directions.0: 'sideways' is not one of"),
    (lambda c: c["attribution"].update(method="EAP-IG-inputs"),
     "config error at attribution.method: 'EAP-IG-inputs' is not one of"),
])
def test_bad_config_is_one_line_naming_the_key(default, mutate, message):
    cfg = copy.deepcopy(default)
    mutate(cfg)
    with pytest.raises(ConfigError) as e:
        check(cfg, SCHEMA)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_every_attribution_method_is_accepted_and_the_schema_lists_the_engine_s(default):
    from vermem.attribution.scoring import METHODS

    assert SCHEMA["properties"]["attribution"]["properties"]["method"]["enum"] == list(METHODS)
    for method in METHODS:
        cfg = copy.deepcopy(default)
        cfg["attribution"]["method"] = method
        check(cfg, SCHEMA)


def test_the_schema_lists_the_methods_a_comparison_can_run():
    from vermem.circuits.method_comparison import COMPARED_METHODS

    compare = SCHEMA["properties"]["attribution"]["properties"]["compare_methods"]
    assert compare["items"]["enum"] == list(COMPARED_METHODS)


def test_glob_matching_nothing_names_the_pattern(default):
    cfg = copy.deepcopy(default)
    cfg["standin"] = None
    cfg["models"] = {"m": {"source": "local", "path": "/x"}}
    cfg["organism"] = None
    cfg["corpus"]["shards"] = ["/nonexistent/*.jsonl.zst"]
    with pytest.raises(ConfigError, match=r"pattern '/nonexistent/\*.jsonl.zst' matches no file"):
        check(cfg, SCHEMA)


def test_snakemake_reports_bad_config_before_any_job(tmp_path):
    cfg = yaml.safe_load((REPO / ".test/config/config.yaml").read_text())
    cfg["memorization"]["batch_size"] = "large"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
         "--configfile", str(tmp_path / "bad.yaml"), "--cores", "1"],
        capture_output=True, text=True)
    assert proc.returncode != 0
    assert ("config error at memorization.batch_size: 'large' is not of type 'integer'"
            in proc.stderr + proc.stdout)
    assert not (tmp_path / "results").exists()


def test_parsing_the_workflow_imports_no_torch(tmp_path):
    """Every Snakemake process parses the workflow: each job of a SLURM run, every dry run.
    The modules rules/*.smk import are light (vermem.workflow.config, .tasks, .models, .resources;
    vermem.circuits.checkpoints, .contrastive and .dynamics re-export their names): no torch, no
    polars. `-X importtime` lists every module the dry run imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "snakemake", "-s", str(REPO / "Snakefile"),
         "-d", str(tmp_path), "--configfile", str(REPO / ".test/config/config.yaml"), "-n"],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert {
        "vermem.workflow.config",
        "vermem.core.vocabulary",
        "vermem.models.loading",
    } <= imported  # it sees the parse
    heavy = {
        "torch",
        "transformers",
        "polars",
        "vermem.circuits.checkpoints",
        "vermem.data.contrastive",
        "vermem.dynamics.strings",
    }
    assert not heavy & imported, sorted(heavy & imported)


def dry_run_jobs(cwd, *args) -> dict[str, int]:
    """Rule -> jobs of `snakemake -n` on the embedded default, run from `cwd` (not the
    repository) into the working directory cwd/wd."""
    from ..runs.test_workflow import planned

    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                           "-d", str(cwd / "wd"), "-n", *args],
                          capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return planned(proc)


def test_targets_run_one_study_from_any_directory(tmp_path):
    """The default config is found next to the Snakefile (-d elsewhere, another cwd);
    study_a and study_b split the DAG, and `studies` says what `all` runs."""
    both = dry_run_jobs(tmp_path)
    a, b = dry_run_jobs(tmp_path, "study_a"), dry_run_jobs(tmp_path, "study_b")
    assert both["labels"] == a["labels"] == 1 and both["summary"] == 1
    assert "dynamics_train" not in a and "summary" not in a
    assert b["dynamics_train"] == both["dynamics_train"] > 0 and "labels" not in b
    only_b = dry_run_jobs(tmp_path, "--config", 'studies=["B"]')
    assert "labels" not in only_b and only_b["summary"] == 1
    assert only_b["dynamics_train"] == both["dynamics_train"]


def test_every_rule_is_defined_whatever_the_config_and_runs_its_namesake_script(tmp_path):
    """The config decides what the targets ask for (all_targets, rules/common.smk), not which
    rules exist: `--list` on the authors' config (no stand-in corpus, no Study B) names every
    rule of rules/*.smk. A rule with a script runs scripts/<its name>.py."""
    import re

    text = "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    defined = re.findall(r"^(?:rule|use rule \w+ as) (\w+)(?: with)?:", text, re.M)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
         "--configfile", str(REPO / "config" / "lasy2025.yaml"), "--list"],
        capture_output=True, text=True, env={**os.environ, "VERMEM_PLAN": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    listed = set(proc.stdout.split())
    assert {"standin_corpus", "dynamics_train"} <= set(defined)
    assert set(defined) | {"all", "study_a", "study_b"} <= listed, set(defined) - listed
    scripts = re.findall(r"^rule (\w+):\n(?:(?!^rule ).*\n)*?    script:\n"
                         r'        "\.\./scripts/(\w+)\.py"', text, re.M)
    assert len(scripts) == len(re.findall(r"^    script:", text, re.M)) > 30
    assert [rule for rule, script in scripts if rule != script] == []


def test_study_b_alone_needs_its_section(default):
    cfg = copy.deepcopy(default)
    cfg.update(studies=["B"], dynamics=None)
    with pytest.raises(ConfigError, match="config error at studies: Study B alone"):
        check(cfg, SCHEMA)
    cfg["studies"] = ["A"]
    check(cfg, SCHEMA)
    cfg["studies"] = []
    with pytest.raises(ConfigError, match="studies"):
        check(cfg, SCHEMA)


def test_planning_takes_shards_and_local_folders_that_are_not_here_as_declared(default):
    """vermem.workflow.plan's dry run (VERMEM_PLAN=1): the paper config's Pile shard and a cluster's
    model folder need not exist; a run with the variable set is refused before any job."""
    from vermem.models.loading import check_models
    from vermem.workflow.config import expand_shards, unread_shards

    cfg = load("pythia.yaml")
    cfg["corpus"]["shards"].append("/data/pile/train/*.jsonl.zst")
    check(cfg, SCHEMA, planning=True)
    shards = expand_shards(cfg, planning=True)
    assert unread_shards(cfg, shards) == shards == cfg["corpus"]["shards"]
    cfg["models"]["mine"] = {"source": "local", "path": "/cluster/models/mine"}
    check_models(cfg, planning=True)
    with pytest.raises(ConfigError, match="shard file not found"):
        check(cfg, SCHEMA)


def test_a_run_with_the_planning_variable_set_is_refused(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
         "--configfile", str(REPO / ".test/config/config.yaml"), "--cores", "1"],
        capture_output=True, text=True, env={**os.environ, "VERMEM_PLAN": "1"})
    assert proc.returncode != 0
    assert "VERMEM_PLAN=1 is for vermem.workflow.plan's dry runs only" in proc.stderr + proc.stdout
    assert not (tmp_path / "results").exists()
