"""The run's expected time as a whole, from the plan's own time model, updated as jobs finish:
a line in the terminal of a local run and in logs/eta.log.

    run ETA: 52 of 125 jobs done, 6.1 min elapsed; about 4.3 min left (the plan's time
    model: 5.2 min of work left on 2 cores, x 0.83 this run's pace so far)

A job's expected seconds are the plan's (`vermem.workflow.plan`, `resources.work`): its
FLOPs over the device's measured throughput (benchmarks/throughput.json, else the
documented default), plus `START_S` for starting the job (Python, torch and the model:
benchmarks/jobstart.py); a job without a model's work (tables, figures) costs `START_S`.
The work left is spread over the run's cores; once jobs have finished, the estimate is
scaled by the run's pace (elapsed time over the expected time of the work done), so a
machine slower or faster than the throughput file corrects it as it goes.

Started from the workflow's `onstart` (rules/common.smk) by `watch`: a daemon thread in
Snakemake's own process that reads which jobs the DAG has finished every `EVERY_S` seconds
and writes a line when that changed; `onsuccess` writes the last line (`finish`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vermem.core.progress import duration, units
from vermem.workflow import resources

START_S = 4.0      # a job's start: Python, torch, the model (benchmarks/jobstart.py)
EVERY_S = 5.0      # how often the watcher looks at the DAG
LOG = "logs/eta.log"


def job_seconds(rule: str, config: Mapping[str, Any], wildcards: Mapping[str, str],
                device: str, throughput: Mapping[str, Any] | None = None) -> float:
    """Expected seconds of one job: the plan's FLOPs over the device's throughput, plus
    START_S."""
    record = (f"results/models/{wildcards['model']}/model.json" if "model" in wildcards
              else None)
    try:
        w = resources.work(rule, config, wildcards, record)
    except (KeyError, ValueError, TypeError, resources.ResourceError):
        w = None  # a rule the time model does not know: its start only
    if w is None:
        return START_S
    tf = resources.tflops(device, throughput)[0]
    return START_S + w.flops / (tf * 1e12)


@dataclass
class Eta:
    """Expected seconds per job (keys: any hashable job ids) and the run's cores."""

    expected: Mapping[Any, float]
    cores: int

    @property
    def total_s(self) -> float:
        """The whole run's expected wall time: every job's seconds over the cores."""
        return sum(self.expected.values()) / max(1, self.cores)

    def left_s(self, done: Sequence[Any], elapsed: float) -> tuple[float, float, float]:
        """(seconds left, the plan's seconds left, the pace factor): the expected seconds
        of the jobs not done, over the cores, times the run's pace so far (elapsed / the
        expected wall time of the work done; 1 before any job finished)."""
        done = set(done)
        left = sum(s for j, s in self.expected.items() if j not in done) / max(1, self.cores)
        did = sum(s for j, s in self.expected.items() if j in done) / max(1, self.cores)
        pace = elapsed / did if did > 0 and elapsed > 0 else 1.0
        return left * pace, left, pace

    def line(self, done: Sequence[Any], elapsed: float) -> str:
        """One line: jobs done of all, elapsed, time left and what it rests on."""
        n_done = len(set(done) & set(self.expected))
        n = len(self.expected)
        if n_done >= n:
            return (f"run ETA: {'all ' if n > 1 else ''}{n} {units(n, 'jobs')} done in "
                    f"{duration(elapsed)} "
                    f"(the plan's time model expected {duration(self.total_s)})")
        left, plan_left, pace = self.left_s(done, elapsed)
        how = (f"the plan's time model: {duration(plan_left)} of work left on {self.cores} "
               f"core{'s' if self.cores != 1 else ''}")
        if n_done:
            how += f", x {pace:.2g} this run's pace so far"
        return (f"run ETA: {n_done} of {n} jobs done, {duration(elapsed)} elapsed; about "
                f"{duration(left)} left ({how})")


def write(line: str, log: Path, emit: Callable[[str], object] | None) -> None:
    """`line` to the terminal (`emit`) and appended to `log` with the time of day."""
    if emit is not None:
        emit(line)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


def watch(workflow, config: Mapping[str, Any], log: str | Path = LOG,
          emit: Callable[[str], object] | None = print, every_s: float = EVERY_S
          ) -> threading.Thread:
    """Start the daemon thread that writes the run's ETA as jobs finish (`onstart`).
    `workflow`: Snakemake's (its DAG's jobs to run and `finished`, its cores)."""
    dag = workflow.dag
    jobs = list(dag.needrun_jobs(exclude_finished=False))
    device = resources.job_device(config)
    expected = {j: job_seconds(j.rule.name, config, dict(j.wildcards_dict), device)
                for j in jobs}
    cores = getattr(getattr(workflow, "resource_settings", None), "cores", None) or 1
    eta = Eta(expected, int(cores))
    path = Path(log)
    start = time.monotonic()
    n = len(jobs)
    write(f"run ETA: {n} {units(n, 'jobs')} to run, about {duration(eta.total_s)} expected "
          f"(the plan's time model on {eta.cores} core{'s' if eta.cores != 1 else ''}, "
          f"{device})", path, emit)

    def loop() -> None:
        seen = 0
        while True:
            time.sleep(every_s)
            done = [j for j in jobs if dag.finished(j)]
            if len(done) != seen:
                seen = len(done)
                write(eta.line(done, time.monotonic() - start), path, emit)
            if seen >= len(jobs):
                return

    t = threading.Thread(target=loop, name="vermem-eta", daemon=True)
    t.start()
    _RUN.update(eta=eta, jobs=jobs, start=start, log=path, emit=emit, thread=t)
    return t


_RUN: dict[str, Any] = {}  # the watched run, for `finish`


def finish() -> None:
    """The last line, at the run's end (`onsuccess`): the watcher may not wake before
    Snakemake exits. Nothing when no run was watched or the watcher wrote it already."""
    if not _RUN or not _RUN["thread"].is_alive():
        return
    _RUN["thread"].join(0)
    jobs = _RUN["jobs"]
    write(_RUN["eta"].line(jobs, time.monotonic() - _RUN["start"]), _RUN["log"], _RUN["emit"])
    _RUN.clear()
