"""Bad models and degenerate data (issue 14): every row of its table, one line each.

Config and model errors are raised at parse time (checked here with `check` /
`check_models` and `snakemake -n`); corpus and hub errors by the first job that reads them,
as one line on stderr and in the log, without a traceback and without an output file a rerun
would take as complete.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from vermem.core.errors import VermemError
from vermem.core.vocabulary import BRANCH, DECISION, control_task
from vermem.models import loading
from vermem.models.architecture import SUPPORTED_MODEL_TYPES
from vermem.report.figures import common, study_a
from vermem.workflow.config import ConfigError, check, load_schema

from ..conftest import REPO, TEST_CONFIG, doc, write_jsonl

SCHEMA = load_schema(REPO / "config" / "schema.yaml")
TRACEBACK = "Traceback (most recent call last)"
# small configs of model types, the first one nobody supports is the unsupported row
TINY_CONFIGS = {
    "bloom": {"hidden_size": 32, "n_layer": 2, "n_head": 4},
    "opt": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
            "ffn_dim": 64, "word_embed_proj_dim": 32, "max_position_embeddings": 64},
    "gpt2": {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64},
    "llama": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64},
    "gpt_neo": {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64,
                "attention_types": [[["global", "local"], 1]], "max_position_embeddings": 64},
}


def config_with(models_: dict, standin: bool = True) -> dict:
    """The .test config with these models, no organism, no Study B (and no stand-in)."""
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    cfg["models"], cfg["organism"], cfg["dynamics"] = models_, None, None
    if not standin:
        cfg["standin"] = None
    return cfg


def snakemake(workdir: Path, cfg: dict, *args: str, env: dict | None = None):
    (workdir / "c.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
         "--configfile", str(workdir / "c.yaml"), "--cores", "1", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})})


def error_lines(proc) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines()
            if line.startswith(("error in rule", "config error"))]


def only_hidden_files(folder: Path) -> bool:
    """Nothing a rerun would take as complete: no files, or only hidden temporaries."""
    return not folder.exists() or all(p.name.startswith(".") for p in folder.rglob("*")
                                      if p.is_file())


@pytest.fixture
def local(tiny_model_dir):
    return {"m": {"source": "local", "path": str(tiny_model_dir)}}


# -- config rows --------------------------------------------------------------------------

def test_negative_prefix_tokens_is_one_line_before_any_job(local):
    cfg = config_with(local)
    cfg["memorization"]["prefix_tokens"] = -3
    with pytest.raises(ConfigError) as e:
        check(cfg, SCHEMA)
    assert str(e.value) == ("config error at memorization.prefix_tokens: -3 is less than the "
                            "minimum of 1")


def test_shard_glob_matching_nothing(tmp_path, local):
    cfg = config_with(local, standin=False)
    cfg["corpus"]["shards"] = [str(tmp_path / "nothing-*.jsonl")]
    with pytest.raises(ConfigError) as e:
        check(cfg, SCHEMA)
    assert str(e.value) == (f"config error at corpus.shards: pattern "
                            f"'{tmp_path}/nothing-*.jsonl' matches no file")


def test_standin_plus_a_user_shard_is_accepted_and_scanned_together(tmp_path, local):
    cfg = config_with(local, standin=True)
    own = write_jsonl(tmp_path / "famous.jsonl", [doc(f"famous text {i} " * 30, "Famous")
                                                   for i in range(4)])
    cfg["corpus"]["shards"].append(str(own))
    cfg["corpus"]["subsets"].append("Famous")
    check(cfg, SCHEMA)  # was: ['Famous'] not written by the stand-in corpus
    proc = snakemake(tmp_path, cfg, "results/corpus/ingest.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ingest = json.loads((tmp_path / "results/corpus/ingest.json").read_text())
    assert ingest["documents_per_subset"]["Famous"] == 4
    assert set(cfg["corpus"]["subsets"]) <= set(ingest["documents_per_subset"])


def test_standin_alone_still_refuses_a_subset_it_does_not_write(local):
    cfg = config_with(local, standin=True)
    cfg["corpus"]["subsets"].append("Famous")
    with pytest.raises(ConfigError, match=r"^config error at corpus.subsets: \['Famous'\] not "
                                          r"written by the stand-in corpus"):
        check(cfg, SCHEMA)


def test_model_names_differing_only_in_case_are_refused(local):
    """Issue: `Org` and `org` were accepted; results/labels/Org.parquet and org.parquet are
    one file on a case-insensitive file system (macOS, Windows)."""
    cfg = config_with({"Org": local["m"], "org": local["m"], "other": local["m"]})
    with pytest.raises(ConfigError) as e:
        check(cfg, SCHEMA)
    assert str(e.value) == ("config error at models: names 'Org' and 'org' differ only in case; "
                            "their result files would collide on a case-insensitive file "
                            "system")

# -- model rows -----------------------------------------------------------------------------

def test_local_path_that_does_not_exist_fails_at_parse_time(tmp_path):
    missing = tmp_path / "no-such-model"
    proc = snakemake(tmp_path, config_with({"m": {"source": "local", "path": str(missing)}}),
                     "-n")
    assert proc.returncode != 0
    assert error_lines(proc) == [f"config error at models.m.path: no such folder {missing}"]
    assert not (tmp_path / "results").exists()


def test_folder_without_config_json(tmp_path):
    with pytest.raises(loading.ModelError) as e:
        loading.check_models(config_with({"m": {"source": "local", "path": str(tmp_path)}}))
    assert str(e.value) == f"config error at models.m.path: no config.json in {tmp_path}"


def test_local_folder_without_tokenizer(tmp_path, tiny_model_dir):
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder,
                    ignore=shutil.ignore_patterns("tokenizer*", "special_tokens*"))
    with pytest.raises(loading.ModelError) as e:
        loading.check_models(config_with({"m": {"source": "local", "path": str(folder)}}))
    assert str(e.value) == (
        f"config error at models.m.path: no tokenizer in {folder} (none of tokenizer.json, "
        f"tokenizer_config.json, vocab.json, tokenizer.model); save it there with "
        f"tokenizer.save_pretrained")


def _saved(kind: str, folder: Path, tokenizer) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(kind, vocab_size=len(tokenizer), **TINY_CONFIGS[kind])
    AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_unsupported_model_type_fails_before_any_job(tmp_path, tokenizer):
    kind = next(k for k in TINY_CONFIGS if k not in SUPPORTED_MODEL_TYPES)
    folder = _saved(kind, tmp_path / kind, tokenizer)
    proc = snakemake(tmp_path, config_with({"m": {"source": "local", "path": str(folder)}}),
                     "-n")
    assert proc.returncode != 0
    assert error_lines(proc) == [
        f"config error at models.m.path: Study A needs it: model_type {kind!r} is not "
        f"supported by the attribution stage (supported: "
        f"{', '.join(sorted(SUPPORTED_MODEL_TYPES))}); to run Study B alone on it, set "
        f"studies: [B]"]
    assert not (tmp_path / "results").exists()


def test_every_supported_tiny_type_passes_the_check(tmp_path, tokenizer):
    kinds = [k for k in TINY_CONFIGS if k in SUPPORTED_MODEL_TYPES]
    assert {"llama", "gpt_neo"} <= set(kinds)
    for kind in kinds:
        rec = loading.check_folder(_saved(kind, tmp_path / kind, tokenizer), "x", 32)
        assert rec["model_type"] == kind
        if kind == "llama":  # grouped-query attention is described, not refused
            assert (rec["n_heads"], rec["n_kv_heads"]) == (4, 2)


def test_context_shorter_than_prefix_plus_continuation(local, tiny_model_dir):
    cfg = config_with(local)
    cfg["memorization"].update(prefix_tokens=40, continuation_tokens=40)
    with pytest.raises(loading.ModelError) as e:
        loading.check_models(cfg)
    assert str(e.value) == ("config error at models.m.path: context of 64 tokens is shorter "
                            "than prefix + continuation (80 tokens)")


def test_tokenizer_larger_than_the_embedding(tmp_path, tiny_model_dir):
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["vocab_size"] = 100
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(loading.ModelError) as e:
        loading.check_folder(folder, "config error at models.m.path", 32)
    assert str(e.value) == ("config error at models.m.path: the tokenizer has 300 tokens but "
                            "the embedding only 100 rows")


def _truncated_weights(tmp_path: Path, tiny_model_dir: Path, keep: int | None) -> Path:
    """A copy of the tiny model whose model.safetensors lost its last 100 bytes (`keep`:
    only its first `keep` bytes)."""
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    weights = folder / "model.safetensors"
    blob = weights.read_bytes()
    weights.write_bytes(blob[:-100] if keep is None else blob[:keep])
    return folder


@pytest.mark.parametrize("keep, problem", [
    (None, "{size} bytes, its header describes {full} (truncated?)"),
    (50, "its header claims {header} bytes, the file has 50 (truncated?)"),
    (4, "4 bytes, too short for a safetensors header"),
])
def test_truncated_safetensors_is_named_before_any_job(tmp_path, tiny_model_dir, keep, problem):
    """Issue: a truncated weight file passed the folder check, then labels raised a raw
    SafetensorError after corpus and samples ran. Its header is read at start-up."""
    from safetensors import SafetensorError, safe_open

    full = (tiny_model_dir / "model.safetensors").stat().st_size
    header = int.from_bytes((tiny_model_dir / "model.safetensors").read_bytes()[:8], "little")
    folder = _truncated_weights(tmp_path, tiny_model_dir, keep)
    weights = folder / "model.safetensors"
    with pytest.raises(SafetensorError):  # what the labels job met
        safe_open(str(weights), "np")
    with pytest.raises(loading.ModelError) as e:
        loading.check_models(config_with({"m": {"source": "local", "path": str(folder)}}))
    size = weights.stat().st_size
    assert str(e.value) == (f"config error at models.m.path: cannot read weight file {weights}: "
                            + problem.format(size=size, full=full, header=header))
    assert loading.safetensors_problem(tiny_model_dir / "model.safetensors") is None

def _with_checkpoints(folder: Path, *names: str) -> dict:
    return config_with({"m": {"source": "local", "path": str(folder), "checkpoints": list(names),
                              "final_step": 1000}})


def test_missing_checkpoint_subfolder_of_a_local_model_is_found_before_any_job(
        tmp_path, tiny_model_dir):
    """Issue: a local model's checkpoint subfolder that does not exist was reported only
    when checkpoint_record ran, after other jobs. Every listed one is checked at start-up
    (all but its tokenizer, which checkpoint_record still checks)."""
    root = tmp_path / "m"
    shutil.copytree(tiny_model_dir, root)
    shutil.copytree(tiny_model_dir, root / "step100",
                    ignore=shutil.ignore_patterns("tokenizer*", "special_tokens*"))
    loading.check_models(_with_checkpoints(root, "step100"))
    with pytest.raises(loading.ModelError) as e:
        loading.check_models(_with_checkpoints(root, "step100", "step500"))
    assert str(e.value) == (f"config error at models.m.checkpoints ('step500'): no such folder "
                            f"{root / 'step500'}")
    _truncated_weights(root, tiny_model_dir, None).rename(root / "step500")
    with pytest.raises(loading.ModelError, match=r"^config error at models.m.checkpoints "
                                                r"\('step500'\): cannot read weight file "):
        loading.check_models(_with_checkpoints(root, "step100", "step500"))

@pytest.mark.parametrize("device, gpus, problem", [
    ("cuda", 0, "'cuda' asked for, but torch sees no CUDA device"),
    ("cuda:1", 1, "'cuda:1' asked for, but torch sees 1 CUDA device(s)"),
    ("cuda:0", 1, None), ("cpu", 0, None), ("auto", 0, None)])
def test_device_without_a_gpu_is_one_line(monkeypatch, local, device, gpus, problem):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    cfg = config_with(local)
    cfg["device"] = device
    if problem is None:
        loading.check_device(cfg)
        return
    with pytest.raises(loading.ModelError) as e:
        loading.check_device(cfg)
    assert str(e.value) == (f"config error at device: {problem} on this host (a local run; "
                            f"device: auto runs on the CPU without one)")
    with pytest.raises(loading.ModelError) as e:  # a job's own check says the same
        loading.pick_device(device)
    assert str(e.value) == f"device {problem}"


def _late_failure(case: str, tmp_path: Path, tiny_model_dir: Path) -> tuple[dict, str, str]:
    """(config, target, the one line) of an input that used to fail only after other jobs
    had run: truncated weights, a missing checkpoint subfolder, device cuda without a GPU,
    model names differing only in case."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    cfg = config_with({"m": {"source": "local", "path": str(folder)}})
    if case == "truncated weights":
        weights = folder / "model.safetensors"
        size = weights.stat().st_size
        weights.write_bytes(weights.read_bytes()[:-100])
        line = (f"config error at models.m.path: cannot read weight file {weights}: "
                f"{size - 100} bytes, its header describes {size} (truncated?)")
    elif case == "missing checkpoint":
        cfg["models"]["m"].update(checkpoints=["step100"], final_step=1000)
        line = (f"config error at models.m.checkpoints ('step100'): no such folder "
                f"{folder / 'step100'}")
    elif case == "cuda without a GPU":
        cfg["device"] = "cuda"
        line = ("config error at device: 'cuda' asked for, but torch sees no CUDA device on "
                "this host (a local run; device: auto runs on the CPU without one)")
    else:
        cfg["models"] = {"Org": cfg["models"]["m"], "org": cfg["models"]["m"]}
        line = ("config error at models: names 'Org' and 'org' differ only in case; their "
                "result files would collide on a case-insensitive file system")
    return cfg, f"results/labels/{next(iter(cfg['models']))}.parquet", line


@pytest.mark.parametrize("case", ["truncated weights", "missing checkpoint",
                                  "cuda without a GPU", "names differing in case"])
def test_input_that_failed_late_now_stops_a_run_before_any_job(tmp_path, tiny_model_dir, case):
    """The issue's late failures, as a run meets them: one line, no job run, nothing
    written (they used to fail after the corpus and samples jobs, or not at all)."""
    import torch

    if case == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg, target, line = _late_failure(case, tmp_path, tiny_model_dir)
    proc = snakemake(tmp_path, cfg, target)
    assert proc.returncode != 0
    assert error_lines(proc) == [line]
    assert TRACEBACK not in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()

def test_hub_model_without_network_is_one_line_from_model_record(tmp_path, local):
    cfg = config_with({"p": {"source": "hub", "id": "EleutherAI/pythia-70m-deduped",
                             "revision": "step143000"}})
    proc = snakemake(tmp_path, cfg, "results/models/p/model.json",
                     env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode != 0
    [line] = error_lines(proc)
    assert line.startswith("error in rule model_record (model=p): models.p: cannot fetch "
                           "EleutherAI/pythia-70m-deduped@step143000 from the hub (")
    assert line.endswith("Offline? Download it where the hub is reachable and use source: "
                         "local with its folder.")
    log = (tmp_path / "logs/models/p.log").read_text()
    assert TRACEBACK not in proc.stderr + log and line in log
    assert only_hidden_files(tmp_path / "results")


# -- corpus rows ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["malformed", "truncated"])
def test_bad_shard_is_one_line_from_the_scan_without_traceback(tmp_path, local, kind):
    recs = [doc(f"text number {i} " * 20, "StdLib Docstrings") for i in range(8)]
    if kind == "malformed":
        shard = write_jsonl(tmp_path / "malformed.jsonl", recs,
                            raw_lines={5: "{not json", 7: '["a list"]'})
        want = (f"2 of 10 lines malformed (allowed fraction 0.0); first: {shard}:6: "
                f"invalid JSON: Expecting property name enclosed in double quotes (column 2)")
    else:
        full = write_jsonl(tmp_path / "full.jsonl.zst", recs)
        shard = tmp_path / "trunc.jsonl.zst"
        shard.write_bytes(full.read_bytes()[:-20])
        want = (f"{shard}: cannot read after line 0: truncated zstd stream "
                f"(incomplete last frame)")
    cfg = config_with(local, standin=False)
    cfg["corpus"].update(shards=[str(shard)], subsets=["StdLib Docstrings"])
    cfg["memorization"]["thresholds"].pop("per_subset")
    proc = snakemake(tmp_path, cfg, "results/corpus/candidates.parquet")
    assert proc.returncode != 0
    assert error_lines(proc) == [f"error in rule corpus_candidates (no wildcards): {want}"]
    log = (tmp_path / "logs/corpus_candidates.log").read_text()
    assert TRACEBACK not in proc.stderr + log and want in log
    assert only_hidden_files(tmp_path / "results")


# -- the rule wrapper ----------------------------------------------------------------------

class _Snakemake:
    def __init__(self, log):
        self.log, self.rule, self.wildcards, self.threads = [str(log)], "r", {"model": "m"}, 1


def test_rule_turns_own_errors_into_one_line_and_keeps_tracebacks_of_bugs(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "scripts"))
    from _rule import rule

    with pytest.raises(SystemExit) as e, rule(_Snakemake(tmp_path / "a.log")):
        raise VermemError("models.m: something the user can fix")
    assert e.value.code == 1
    line = "error in rule r (model=m): models.m: something the user can fix"
    assert capsys.readouterr().err == line + "\n"
    assert line in (tmp_path / "a.log").read_text()
    assert TRACEBACK not in (tmp_path / "a.log").read_text()
    with pytest.raises(KeyError), rule(_Snakemake(tmp_path / "b.log")):
        raise KeyError("a bug")
    assert TRACEBACK in (tmp_path / "b.log").read_text()


# -- degenerate data: figures say what is missing ---------------------------------------------

def _texts(fig) -> str:
    return " | ".join(t.get_text() for ax in fig.axes for t in ax.texts + [ax.title])


def test_nothing_memorized_gives_annotated_figures_not_a_crash():
    labels = pl.DataFrame({"subset": ["A"] * 5 + ["B"] * 3, "match_fraction": [0.0] * 8,
                           "label": ["non-memorized"] * 8, "extractable": [False] * 8,
                           "dup_count": [None] * 8})
    fig = study_a.score_histograms(labels, "match_fraction", "m")
    assert "A\nn = 5, 0 memorized" in _texts(fig) and "all 3 scores = 0" in _texts(fig)
    div = pl.DataFrame({"d": [], "subset": []}, schema={"d": pl.Int32, "subset": pl.String})
    assert "no memorized sample (n = 0)" in _texts(study_a.divergence_histogram(div, 16, "m"))
    pairs = pl.DataFrame(schema={"task": pl.String, "subset": pl.String, "split": pl.String})
    assert "no contrastive pairs (n = 0)" in _texts(study_a.pair_counts(pairs, "m", ["A"],
                                                                      ["branch_comparison"]))
    assert "(n = 0)" in _texts(study_a.rate_by_duplicates(labels, "m"))


def test_a_single_pair_and_a_subset_without_pairs_are_drawn_and_named():
    pairs = pl.DataFrame({"task": ["branch_comparison"], "subset": ["A"],
                          "split": ["attribution"]})
    fig = study_a.pair_counts(pairs, "m", ["A", "B"], ["branch_comparison"])
    assert "no pairs (n = 0): branch comparison / B" in _texts(fig)
    div = pl.DataFrame({"d": [3], "subset": ["A"]}, schema={"d": pl.Int32, "subset": pl.String})
    fig = study_a.divergence_histogram(div, 16, "m")
    assert "(0 of 1 without one)" in _texts(fig)
    assert sum(p.get_height() for p in fig.axes[0].patches) == pytest.approx(1)


def test_empty_attribution_is_marked_and_drawn_as_empty(tmp_path, tiny_model):
    import torch

    from vermem.attribution import graph, positions, scoring, storage
    from vermem.attribution.settings import AttributionSettings

    g = graph.Graph(graph.Shape.from_config(tiny_model.config))
    out, n = scoring.run(tiny_model, g, [], [], [], [], AttributionSettings(
        "EAP-IG", steps=2, metric="logit_diff", batch_size=4, backend="hooks"))
    scores = out["scores"]
    assert n == 0 and not scores.any() and not out["scores_denoising"].any()
    assert out["positions"].shape == (0, *g.mask.shape)
    path = tmp_path / "a.safetensors"
    storage.save(path, g, scores, {"n_examples": n, "empty": n == 0},
                     out["scores_denoising"], out["positions"], out["positions_denoising"],
                     positions.position_buckets(0))
    tensors, meta = storage.load(path)
    assert meta["empty"] is True and meta["n_examples"] == 0
    fig = common.empty_figure("m: t", "no attribution pairs (n = 0):\nno edge scores")
    assert "no attribution pairs (n = 0)" in _texts(fig)
    assert isinstance(tensors["scores"], torch.Tensor)


def test_config_copy_is_not_mutated_by_checks(local):
    cfg = config_with(local)
    before = copy.deepcopy(cfg)
    check(cfg, SCHEMA)
    loading.check_models(cfg)
    assert cfg == before


def test_hub_model_is_checked_once_fetched(monkeypatch, tmp_path, tokenizer):
    kind = next(k for k in TINY_CONFIGS if k not in SUPPORTED_MODEL_TYPES)
    folder = _saved(kind, tmp_path / kind, tokenizer)
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda *a, **k: str(folder))
    with pytest.raises(loading.ModelError) as e:
        loading.resolve("p", {"source": "hub", "id": "org/x", "revision": "main"}, (32, "x"))
    assert str(e.value).startswith(f"models.p (org/x@main): Study A needs it: model_type "
                                   f"{kind!r} is not supported by the attribution stage")


# a run of the workflow up to the pairs, one job at a time (--cores 1): beside the unit tests
def test_a_model_that_memorizes_nothing_runs_through_with_n_0(tmp_path, tiny_model_dir):
    """A random model memorizes nothing: labels, divergence, pairs, attribution and their
    figures complete, the summaries say n = 0 and the attribution is marked empty."""
    cfg = config_with({"m": {"source": "local", "path": str(tiny_model_dir)}})
    cfg["corpus"].update(subsets=["StdLib Docstrings"], main_subset="StdLib Docstrings")
    cfg["standin"]["domains"] = {"docstrings": cfg["standin"]["domains"]["docstrings"]}
    cfg["attribution"].update(tasks=["branch_comparison"], metrics=["logit_diff"])
    figs = tmp_path / "results/figures/m"
    proc = snakemake(tmp_path, cfg, "results/pairs/m.summary.json",
                     "results/figures/m/memorization_scores.png",
                     "results/figures/m/attribution/branch_comparison.stdlib-docstrings"
                     ".logit_diff.png")
    assert proc.returncode == 0, proc.stderr[-3000:]
    labels = json.loads((tmp_path / "results/labels/m.summary.json").read_text())
    assert labels["labels_per_subset"]["StdLib Docstrings"]["memorized"] == 0
    pairs = json.loads((tmp_path / "results/pairs/m.summary.json").read_text())
    assert pairs["branch_comparison"]["StdLib Docstrings"]["pairs"] == 0
    assert pairs["divergence"]["StdLib Docstrings"] == {"memorized": 0, "with_divergence": 0,
                                                        "memorized_documents": 0}
    from vermem.attribution import storage

    _, meta = storage.load(tmp_path / "results/attribution/m/branch_comparison/"
                               "stdlib-docstrings/logit_diff.safetensors")
    assert meta["n_examples"] == 0 and meta["empty"] is True
    for name in ("memorization_scores", "divergence_positions", "pair_counts"):
        assert (figs / f"{name}.png").stat().st_size > 5000


# -- degenerate data: a subset without samples (every document shorter than P + C) ---------

BASE_TASKS = [BRANCH, DECISION]
SHORT, LONG = "A", "B"  # subsets: documents of a few tokens, documents of many


def _candidates(per_subset: dict[str, list[str]]) -> pl.DataFrame:
    """A corpus_candidates table of these texts."""
    rows = [{"subset": s, "key": i, "doc_id": f"{s}-{i}", "text": t, "meta": "{}"}
            for s, texts in per_subset.items() for i, t in enumerate(texts)]
    return pl.DataFrame(rows, schema={"subset": pl.String, "key": pl.Int64,
                                      "doc_id": pl.String, "text": pl.String,
                                      "meta": pl.String})


def _labels_to_pairs(cands: pl.DataFrame, tokenizer, model, tmp_path: Path) -> dict:
    """samples -> labels -> divergence -> pairs as their rules run them (the test config's
    memorization and contrastive settings), each table written and read back."""
    import torch

    from vermem.core import files
    from vermem.data import contrastive, corpus, divergence, labels
    from vermem.data.settings import PairSettings, SampleSettings

    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    mem, con = cfg["memorization"], cfg["contrastive"]
    subsets = sorted(cands["subset"].unique())
    samples, s_summary = corpus.make_samples(cands, tokenizer, SampleSettings(
        mem["prefix_tokens"], mem["continuation_tokens"]))
    gen = labels.generate_all(model, samples["prefix"].to_list(), mem["continuation_tokens"],
                              mem["batch_size"], torch.device("cpu"))
    df = labels.label_samples(samples, gen, mem["score"], mem["thresholds"],
                              mem["continuation_tokens"])
    files.write_parquet(df, tmp_path / "labels.parquet", {})
    df = pl.read_parquet(tmp_path / "labels.parquet")
    div = divergence.run(model, df, mem["prefix_tokens"], mem["batch_size"], 0.3, 0.1)
    pairs, p_summary = contrastive.build(model, df, div, cands.select("doc_id", "subset"),
                                         PairSettings(mem["batch_size"], 0, con["split"]))
    files.write_parquet(pairs, tmp_path / "pairs.parquet", {})
    return {"samples": samples, "samples_summary": s_summary, "labels": df,
            "labels_summary": labels.summarize(df, subsets), "divergence": div,
            "pairs": pl.read_parquet(tmp_path / "pairs.parquet"), "pairs_summary": p_summary}


LABEL_COLUMNS = {"generation": pl.List(pl.Int32), "match_fraction": pl.Float64,
                 "exact_prefix": pl.Int32, "extractable": pl.Boolean, "label": pl.String}
NO_LABELS = {"memorized": 0, "ambiguous": 0, "non-memorized": 0}
TASKS = [*BASE_TASKS, *map(control_task, BASE_TASKS)]


def test_corpus_of_only_too_short_documents_flows_with_n_0_and_a_warning(
        tmp_path, tokenizer, tiny_model, caplog):
    """Issue: samples wrote a 0-row table without a word, then labels crashed (`The size of
    tensor a (16) must match the size of tensor b (0)`). Now the samples log names the
    subset and every table after it is a valid 0-row table of its usual columns."""
    cands = _candidates({SHORT: ["def f(): pass", "short text", "x = 1"]})
    with caplog.at_level("WARNING", logger="vermem.data.corpus"):
        out = _labels_to_pairs(cands, tokenizer, tiny_model, tmp_path)
    assert [r.getMessage() for r in caplog.records if r.name == "vermem.data.corpus"] == [
        "subset 'A': no samples (n = 0): all 3 candidates are shorter than prefix + "
        "continuation (32 tokens)"]
    assert out["samples_summary"] == {SHORT: {"candidates": 3, "too_short": 3, "kept": 0,
                                              "samples": 0}}
    assert out["labels"].height == 0
    assert {c: out["labels"].schema[c] for c in LABEL_COLUMNS} == LABEL_COLUMNS
    assert out["labels_summary"] == {"samples": 0, "labels_per_subset": {SHORT: NO_LABELS}}
    assert out["divergence"].height == 0 and out["pairs"].height == 0
    summary = out["pairs_summary"]
    assert summary["divergence"] == {SHORT: {"memorized": 0, "memorized_documents": 0,
                                             "with_divergence": 0}}
    for task in TASKS:
        assert summary[task][SHORT]["pairs"] == 0, task


def test_subset_without_samples_is_listed_with_n_0_in_the_labels_and_pairs_summaries(
        tmp_path, tokenizer, tiny_model):
    """Issue: a subset left with 0 samples disappeared from both summaries (attribution
    still wrote its files). It is listed with n = 0 beside a subset that has samples."""
    cands = _candidates({SHORT: ["short text", "x = 1"],
                         LONG: [f"The quick brown fox {i} jumps over the lazy dog. " * 4
                                for i in range(6)]})
    out = _labels_to_pairs(cands, tokenizer, tiny_model, tmp_path)
    assert set(out["labels"]["subset"]) == {LONG}
    per = out["labels_summary"]["labels_per_subset"]
    assert per[SHORT] == NO_LABELS and sum(per[LONG].values()) == 6
    summary = out["pairs_summary"]
    assert set(summary["divergence"]) == {SHORT, LONG}
    for task in TASKS:
        assert set(summary[task]) == {SHORT, LONG}, task
        assert summary[task][SHORT]["pairs"] == 0
        assert summary[task][SHORT]["dropped"] == {}



# a run of the workflow up to the labels, one job at a time (--cores 1)
def test_a_run_on_only_too_short_documents_labels_n_0_and_says_so(tmp_path, tiny_model_dir):
    """The issue's row as a run meets it (4 jobs): the samples and labels jobs complete,
    their logs name the subset, the labels table has 0 rows and its summary says n = 0."""
    shard = write_jsonl(tmp_path / "short.jsonl", [doc(f"short {i}", "Short") for i in range(5)])
    cfg = config_with({"m": {"source": "local", "path": str(tiny_model_dir)}}, standin=False)
    cfg["corpus"].update(shards=[str(shard)], subsets=["Short"], main_subset="Short")
    cfg["memorization"]["thresholds"].pop("per_subset")
    cfg["checkpoints"] = None
    proc = snakemake(tmp_path, cfg, "results/labels/m.summary.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("vermem.data.corpus WARNING subset 'Short': no samples (n = 0): all 5 candidates are "
            "shorter than prefix + continuation (32 tokens)"
            in (tmp_path / "logs/samples/m.log").read_text())
    assert ("rule.labels WARNING subset 'Short': no samples to label (n = 0; see the samples "
            "log)" in (tmp_path / "logs/labels/m.log").read_text())
    assert pl.read_parquet(tmp_path / "results/labels/m.parquet").height == 0
    summary = json.loads((tmp_path / "results/labels/m.summary.json").read_text())
    assert summary == {"samples": 0, "labels_per_subset": {"Short": NO_LABELS}}
