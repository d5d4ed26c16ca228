"""Ctrl-C stops a run (issue 35; vermem.workflow.interrupts, scripts/_rule.py).

A job script stopped by SIGTERM writes one line, no traceback, leaves no temporary file
and exits 130; a real run of the test config (the organism's training, its longest job
before the first circuits) ends within seconds of SIGINT, sent to Snakemake alone or to
its process group as a terminal's Ctrl-C does, retries nothing, leaves no output of the
stopped job, and the next run does that job and nothing before it.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ..conftest import REPO, TEST_CONFIG

STOP_WITHIN_S = 30  # seconds from SIGINT to the end of the run (about 4 s on 2 busy cores)


def test_a_job_script_stopped_by_sigterm_says_one_line_and_leaves_no_temporary(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        from types import SimpleNamespace
        sys.path.insert(0, {str(REPO / "scripts")!r})
        from _rule import rule
        from vermem.core import files
        snakemake = SimpleNamespace(log=[{str(tmp_path / "job.log")!r}], rule="demo",
                                    wildcards={{"model": "m"}}, threads=1)
        with rule(snakemake) as log:
            with files.atomic_path({str(tmp_path / "out.txt")!r}) as tmp:
                tmp.write_text("half")
                print("writing", flush=True)
                time.sleep(60)
        """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ,
                                                                    "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline() == "writing\n"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [
        "stopped in rule demo (model=m) by SIGTERM: nothing written; the next run does this "
        "job again"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.log", "job.py"]
    assert "Traceback" not in (tmp_path / "job.log").read_text()


def _start(workdir: Path, target: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
         "--cores", "2", target, "--configfile", str(TEST_CONFIG)],  # nargs+: target first
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.mark.slow
def test_sigint_ends_a_run_within_seconds_and_the_rerun_resumes(tmp_path):
    target = "results/models/organism/model.json"
    folder = tmp_path / "results" / "models" / "organism"
    log = tmp_path / "logs" / "models" / "organism.log"
    for how in ("snakemake", "group"):
        log.unlink(missing_ok=True)
        proc = _start(tmp_path, target)
        deadline = time.time() + 600
        while not (log.is_file() and "epoch 0 step" in log.read_text()):
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.time() < deadline, "training never started"
            time.sleep(0.2)
        sent = time.time()
        if how == "group":  # a terminal's Ctrl-C
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"SIGINT to {how}: the run still runs after {STOP_WITHIN_S} s")
        took = time.time() - sent
        print(f"SIGINT to {how}: the run ended after {took:.1f} s, rc {proc.returncode}")
        assert proc.returncode != 0
        assert "Interrupted (SIGINT)" in out
        assert "Traceback" not in out and "KeyboardInterrupt" not in out, out[-3000:]
        assert "Trying to restart" not in out
        assert "stopped in rule train_organism (model=organism) by SIGTERM" in log.read_text()
        assert not folder.exists() or not any(folder.iterdir()), list(folder.iterdir())
    rerun = _start(tmp_path, target)
    out, _ = rerun.communicate(timeout=1800)
    assert rerun.returncode == 0, out[-3000:]
    ran = {line.split()[1].rstrip(":") for line in out.splitlines()
           if line.startswith(("rule ", "localrule "))}
    assert ran == {"train_organism"}, ran
    assert (folder / "model.json").is_file()
