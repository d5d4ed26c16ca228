"""Fixed cost per job: what a Snakemake job pays before its first computation.

    python benchmarks/jobstart.py [--repeat 3] [--no-job]

Prints, with the machine's cores and load (`os.getloadavg()`, before and after):
- start-up: `python -c pass`, `python -c 'import torch'`, `snakemake --version`;
- parsing the workflow on the test config (.test/config/config.yaml) in a fresh temporary
  working directory: `snakemake --list-rules` (parse only) and `snakemake -n` (parse and the
  DAG), and whether parsing imported torch (`python -X importtime`). Every job of a SLURM
  run parses the workflow again in its own Snakemake process; locally only the main
  process parses it, each `script:` job starts a Python process of its own;
- `python -c 'import vermem.X'` for the modules the rule scripts import (each in a fresh
  process, minus `python -c pass`);
- one real chain of jobs, unless --no-job: `results/models/organism/model.json` of the test
  config with --cores 1 (standin_corpus, then train_organism), read off the rules' logs
  (`scripts/_rule.py` logs `start:` once a script's imports are done): launch to the first
  job's start, the gap from one job's end to the next one's start (Snakemake's bookkeeping,
  a new Python process, the script's imports), and from train_organism's start to its first
  training step; the run is stopped there.

Times are the minimum over --repeat runs (the job chain runs once). Run from anywhere: the
repository this file belongs to is put first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = REPO / ".test" / "config" / "config.yaml"
# the vermem modules that scripts/*.py import, lightest first
MODULES = ("errors", "config", "tasks", "resources", "io", "standin", "corpus", "stats",
           "graph", "models", "labels", "divergence", "contrastive", "organism", "attribution",
           "circuits", "claims", "checkpoints", "dynamics", "plots")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [e.get("PYTHONPATH")])])
    return e


def wall(cmd: list[str], repeat: int, cwd: Path = REPO) -> float:
    """Minimum wall time of `cmd` over `repeat` runs (it must succeed)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
        best = min(best, time.perf_counter() - t)
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return best


def snakemake(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d",
            str(workdir), "--configfile", str(TEST_CONFIG), *args]


def parse_imports(workdir: Path) -> tuple[bool, float]:
    """(whether `snakemake -n` imported torch, the vermem modules' cumulative import time
    in seconds), from `python -X importtime`."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *snakemake(workdir, "-n")[1:]],
                          cwd=REPO, env=env(), capture_output=True, text=True)
    torch, ours = False, 0.0
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)$", line)
        if not m:
            continue
        name = m.group(3)
        torch |= name == "torch"
        if name.startswith("vermem.") and len(m.group(2)) == 1:  # imported by the Snakefile
            ours += int(m.group(1)) / 1e6
    return torch, ours


def log_times(path: Path) -> list[tuple[float, str]]:
    """(time, message) of each line of a rule's log (format of scripts/_rule.py)."""
    out = []
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ \S+ (.*)", line)
        if m:
            t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((t, m.group(2)))
    return out


def job_chain(timeout: float = 600) -> dict[str, float]:
    """standin_corpus then train_organism on the test config (--cores 1), stopped at the
    first training step; seconds between the milestones."""
    work = Path(tempfile.mkdtemp(prefix="vermem-jobstart-"))
    standin, train = work / "logs" / "standin_corpus.log", work / "logs/models/organism.log"
    launch = time.time()
    proc = subprocess.Popen(
        snakemake(work, "--cores", "1", "--") + ["results/models/organism/model.json"],
        cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        while time.time() - launch < timeout:
            if any("epoch 0 step" in msg for _, msg in log_times(train)):
                break
            if proc.poll() is not None:
                raise SystemExit(f"the job chain ended (rc {proc.returncode}) before training "
                                 f"started; see {work}/logs")
            time.sleep(0.05)
        else:
            raise SystemExit(f"no training step within {timeout:.0f} s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    s, t = log_times(standin), log_times(train)
    first_step = next(ts for ts, msg in t if "epoch 0 step" in msg)
    times = {
        "launch -> standin_corpus start (Snakemake start-up, parse, DAG, job start)":
            s[0][0] - launch,
        "standin_corpus: start -> done (its computation)": s[-1][0] - s[0][0],
        "standin_corpus done -> train_organism start (the fixed cost of a job)":
            t[0][0] - s[-1][0],
        "train_organism: start -> first training step (tokenizer, planting, model)":
            first_step - t[0][0],
    }
    shutil.rmtree(work, ignore_errors=True)
    return times


def measure(repeat: int = 3, job: bool = True) -> list[tuple[str, float | str]]:
    """(what, seconds or a word) for every figure above, in print order."""
    rows: list[tuple[str, float | str]] = [
        ("cores, load (1, 5, 15 min) before",
         f"{os.cpu_count()}, {' '.join(f'{x:.2f}' for x in os.getloadavg())}")]
    py = wall([sys.executable, "-c", "pass"], repeat)
    rows += [("python -c pass", py),
             ("python -c 'import torch'", wall([sys.executable, "-c", "import torch"], repeat)),
             ("snakemake --version",
              wall([sys.executable, "-m", "snakemake", "--version"], repeat))]
    with tempfile.TemporaryDirectory(prefix="vermem-parse-") as tmp:
        work = Path(tmp)
        rows += [("parse: snakemake --list-rules (test config)",
                  wall(snakemake(work, "--list-rules"), repeat)),
                 ("parse + DAG: snakemake -n (test config)", wall(snakemake(work, "-n"), repeat))]
        torch, ours = parse_imports(work)
        rows += [("  torch imported while parsing", "yes" if torch else "no"),
                 ("  vermem imports while parsing (-X importtime)", ours)]
    for m in MODULES:
        if not (REPO / "vermem" / f"{m}.py").is_file():  # an older checkout
            rows.append((f"import vermem.{m}", "absent"))
            continue
        t = wall([sys.executable, "-c", f"import vermem.{m}"], repeat)
        rows.append((f"import vermem.{m} (minus python start-up)", t - py))
    if job:
        rows += list(job_chain().items())
    rows.append(("load (1, 5, 15 min) after", " ".join(f"{x:.2f}" for x in os.getloadavg())))
    return rows


def print_table(rows: list[tuple[str, float | str]]) -> None:
    width = max(len(r) for r, _ in rows)
    for name, v in rows:
        print(f"{name:<{width}}  {v:>7.2f} s" if isinstance(v, float) else
              f"{name:<{width}}  {v:>9}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per timing (the minimum)")
    ap.add_argument("--no-job", action="store_true", help="skip the real job chain")
    a = ap.parse_args()
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')} (the job chain: --cores 1, "
          f"train_organism's threads: 2 capped at 1); min of {a.repeat} runs; {REPO}")
    print_table(measure(a.repeat, not a.no_job))


if __name__ == "__main__":
    main()
