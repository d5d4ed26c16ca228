"""Shared fixtures: tiny models and tokenizers built offline, the real Pythia tokenizer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vermem.models import organism

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TEST_CONFIG = REPO / ".test" / "config" / "config.yaml"
LOCAL_CORES = 2
TEXT = [
    "def add(a, b):\n    return a + b\n",
    "The quick brown fox jumps over the lazy dog. " * 4,
    "Return the number of items in the container, counting duplicates once.",
    "class Stack:\n    def push(self, x):\n        self.items.append(x)\n",
] * 8


@pytest.fixture(scope="session")
def workflow_run(tmp_path_factory) -> Path:
    """One local run of the test config, shared by tests/runs/test_workflow.py and the SLURM
    test (which makes some of its jobs again and compares); the run's results/ folder. Tests only
    read it (dry runs included); a test that writes works on `workflow_copy`."""
    workdir = tmp_path_factory.mktemp("workflow")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
         "--cores", str(LOCAL_CORES), "--configfile", str(TEST_CONFIG)],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir / "results"


# The second run's targets: from nothing, one chain through every stage that trains a model
# or draws random numbers (the stand-in corpus, the organism and its checkpoints, the seeded
# document split, EAP-IG, the circuit search with its random circuits, the context
# replacements, Study B's random strings). Not the whole run again: the fan-out over tasks
# and subsets repeats these stages' code on other inputs, and Study B's training is rerun
# to identical bytes on its own (test_dynamics_training_reruns_to_identical_bytes).
SECOND_RUN_TARGETS = (
    "results/circuits/organism/branch_comparison/stdlib-docstrings/minimal.json",
    "results/context/organism.summary.json",
    "results/dynamics/organism/strings.parquet",
    "results/checkpoints/organism/t50/labels.parquet",
)


@pytest.fixture(scope="session")
def second_run(tmp_path_factory) -> Path:
    """A second run of the test config, in a fresh folder, of `SECOND_RUN_TARGETS` (about a
    quarter of the run's time); its results/ folder, for the tests that compare two runs
    byte for byte (tests/runs/test_identical_runs.py, tests/runs/test_workflow.py)."""
    workdir = tmp_path_factory.mktemp("second_run")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
         "--cores", str(LOCAL_CORES), *SECOND_RUN_TARGETS,
         "--configfile", str(TEST_CONFIG)],   # nargs+: the targets first
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir / "results"


@pytest.fixture
def workflow_copy(workflow_run, tmp_path) -> Path:
    """A private copy of the finished run (results/, logs/ and Snakemake's .snakemake/
    metadata, modification times kept, so Snakemake takes it as finished too), for a test
    that deletes, reruns or kills jobs; the copy's results/ folder."""
    workdir = tmp_path / "workflow"
    shutil.copytree(workflow_run.parent, workdir, symlinks=True)
    return workdir / "results"


@pytest.fixture(scope="session")
def tokenizer():
    return organism.train_tokenizer(TEXT, vocab_size=300)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A randomly initialised GPT-NeoX (organism architecture) saved as a local folder."""
    torch.manual_seed(0)
    arch = {"layers": 2, "width": 32, "heads": 4, "mlp_ratio": 2, "rotary_pct": 0.25,
            "context": 64}
    model = organism.make_model(len(tokenizer), tokenizer.eos_token_id, arch)
    path = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()


@pytest.fixture(scope="session")
def real_tokenizer():
    """The real GPT-NeoX/Pythia tokenizer from ../shared, skipped where it is absent."""
    path = SHARED / "20B_tokenizer.json"
    if not path.is_file():
        pytest.skip("../shared/20B_tokenizer.json not present")
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(path))


def write_jsonl(path: Path, records: list, raw_lines: dict[int, str] | None = None) -> Path:
    """Pile-format shard; raw_lines puts verbatim (e.g. malformed) lines at given indices."""
    lines = [json.dumps(r) for r in records]
    for i, raw in sorted((raw_lines or {}).items()):
        lines.insert(i, raw)
    blob = ("\n".join(lines) + "\n").encode()
    if path.suffix == ".zst":
        import zstandard

        blob = zstandard.ZstdCompressor().compress(blob)
    path.write_bytes(blob)
    return path


def doc(text: str, subset: str) -> dict:
    return {"text": text, "meta": {"pile_set_name": subset}}


def pytest_configure(config):
    # the full and empty runs of random tiny models often differ by less than
    # circuits.MIN_GAP: the warning is right there, and says nothing about the code under
    # test (tests/test_api.py checks it with pytest.warns and circuits.small_gaps)
    config.addinivalue_line("filterwarnings", "ignore::vermem.circuits.evaluation.SmallGapWarning")


RUNS = Path(__file__).resolve().parent / "runs"


def pytest_collection_modifyitems(config, items):
    # `slow`: the end-to-end runs on both cores (tests/runs/) and any test on the shared
    # local run, so that `pytest -m "not slow"` (make test-fast) runs on xdist workers
    for item in items:
        if RUNS in item.path.parents or {"workflow_run", "workflow_copy"} & set(
                item.fixturenames):
            item.add_marker(pytest.mark.slow)
