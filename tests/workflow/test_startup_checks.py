"""Model files checked at start-up, before any job (issue 35; vermem.workflow.startup): a
GGUF file that is not GGUF or is truncated, an injected component the base model does not
have, a Study B tokenizer without single-letter tokens. Each is a real run of the test
config with one bad input: it stops with one line naming the config key and the file,
before any job, within `BOUND_S` (it stopped in a job, after the stand-in corpus, the
organism's training or the conversion, before: the test fails as soon as a job starts).
And a split that leaves the attribution
or evaluation part empty is refused by the config check."""

import copy
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from vermem.workflow.config import ConfigError, check, load_schema

from ..conftest import REPO, TEST_CONFIG

BOUND_S = 120  # seconds to the error (start-up: parse, DAG, onstart; 10-30 s on busy cores)
CFG = yaml.safe_load(TEST_CONFIG.read_text())


def stops_at_start(tmp_path: Path, cfg: dict) -> tuple[str, float]:
    """Run `cfg` in a fresh folder: its error line (the run must end before any job
    starts, within BOUND_S) and the seconds it took."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    workdir = tmp_path / "run"
    start = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
         "--cores", "1", "--configfile", str(config)], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)
    timer = threading.Timer(BOUND_S, os.killpg, (proc.pid, signal.SIGKILL))
    timer.start()
    out = []
    try:
        for line in proc.stdout:  # the first job started fails the test at once
            out.append(line)
            if jobs(line):
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail(f"a job started before any error, after {time.time() - start:.1f} "
                            f"s: {line.strip()}")
    finally:
        timer.cancel()
        proc.wait()
    out = "".join(out)
    if proc.returncode == -signal.SIGKILL:
        pytest.fail(f"no error within {BOUND_S} s")
    seconds = time.time() - start
    assert proc.returncode != 0, out[-3000:]
    lines = [line for line in out.splitlines() if "config error at" in line]
    assert len(lines) == 1, out[-3000:]
    print(f"{seconds:.1f} s: {lines[0]}")
    return lines[0], seconds


def jobs(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(("rule ", "localrule "))]


def write_gguf(path: Path) -> Path:
    """A small well-formed GGUF file: a llama header of 2 layers of 4 heads, two tensors."""
    import numpy as np

    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_head_count(4)
    w.add_tensor("token_embd.weight", np.ones((16, 16), dtype=np.float32))
    w.add_tensor("output.weight", np.ones((16, 16), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def with_gguf(path: Path) -> dict:
    cfg = copy.deepcopy(CFG)
    cfg["models"]["side"] = {"source": "gguf", "path": str(path), "study": False}
    return cfg


def test_the_gguf_reader_takes_a_whole_file_and_names_a_truncated_one(tmp_path):
    from vermem.models import gguf_convert

    path = write_gguf(tmp_path / "ok.gguf")
    header = gguf_convert.read_header(path)
    assert header["tensors"] == 2 and header["metadata"]["llama.block_count"] == 2
    blob = path.read_bytes()
    for cut in (len(blob) - 100, 40, 10):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(blob[:cut])
        with pytest.raises(gguf_convert.GGUFError, match=rf"{bad}: truncated GGUF file"):
            gguf_convert.read_header(bad)
    bad.write_bytes(b"not a model at all\n" * 10)
    with pytest.raises(gguf_convert.GGUFError, match="not a GGUF file"):
        gguf_convert.read_header(bad)


def test_a_file_that_is_not_gguf_stops_the_run_at_start(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_text("this is not a GGUF file\n")
    line, _ = stops_at_start(tmp_path, with_gguf(bad))
    assert f"config error at models.side.path: {bad}: not a GGUF file" in line


def test_a_truncated_gguf_file_stops_the_run_at_start(tmp_path):
    whole = write_gguf(tmp_path / "whole.gguf").read_bytes()
    bad = tmp_path / "model.gguf"
    bad.write_bytes(whole[:-512])
    line, _ = stops_at_start(tmp_path, with_gguf(bad))
    assert f"config error at models.side.path: {bad}: truncated GGUF file" in line


def test_an_injected_component_the_base_lacks_stops_the_run_at_start(tmp_path):
    cfg = copy.deepcopy(CFG)
    localized = yaml.safe_load((REPO / "config" / "organism-localized.yaml").read_text())
    spec = copy.deepcopy(localized["models"]["organism-localized"])
    spec["injection"]["trainable"] = [{"layer": 9, "head": 99}]
    spec["study"] = False
    cfg["models"]["injected"] = spec
    line, _ = stops_at_start(tmp_path, cfg)
    assert line.endswith("config error at models.injected.injection.trainable: a9.h99 is not "
                         "in the base model organism (2 layers of 4 heads, from "
                         "organism.architecture)"), line


def test_a_study_b_tokenizer_without_letter_tokens_stops_the_run_at_start(tmp_path,
                                                                          tiny_model_dir):
    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    # the same tokenizer with a space put before every text: it still round-trips text (up
    # to whitespace, the folder check), but a letter alone comes back as " a"
    tok = AutoTokenizer.from_pretrained(folder)
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.save_pretrained(folder)
    ids = tok.encode("a", add_special_tokens=False)
    cfg = copy.deepcopy(CFG)
    cfg["models"]["local"] = {"source": "local", "path": str(folder), "study": False}
    cfg["dynamics"]["models"] = ["local"]
    line, _ = stops_at_start(tmp_path, cfg)
    # the per-study precheck at parse time (models.loading.check_models) names the model's
    # key and the study that needs the letters
    assert line.endswith(f"config error at models.local.path: Study B needs it: letter 'a' "
                         f"is not one token that round-trips (encodes to {ids}, decodes to "
                         f"' a')"), line


@pytest.mark.parametrize("part", ["attribution", "evaluation"])
def test_a_split_that_leaves_attribution_or_evaluation_empty_is_refused(part):
    cfg = copy.deepcopy(CFG)
    other = "evaluation" if part == "attribution" else "attribution"
    cfg["contrastive"]["split"][other] += cfg["contrastive"]["split"][part]
    cfg["contrastive"]["split"][part] = 0.0
    why = "0 leaves the attribution part empty" if part == "attribution" else \
        "0.0 is less than or equal to the minimum of 0"  # the schema's
    with pytest.raises(ConfigError, match=rf"^config error at contrastive.split.{part}: {why}"):
        check(cfg, load_schema(REPO / "config" / "schema.yaml"), planning=True)


def test_a_split_without_selection_part_is_the_authors_design_and_accepted():
    cfg = copy.deepcopy(CFG)
    cfg["contrastive"]["split"] = {"attribution": 0.9, "selection": 0.0, "evaluation": 0.1}
    check(cfg, load_schema(REPO / "config" / "schema.yaml"), planning=True)
