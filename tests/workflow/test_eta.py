"""The run-level ETA (vermem.workflow.eta): the plan's time model per job, the time left as
jobs finish, and the watcher that writes it from the DAG."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from vermem.workflow import eta, resources

TEST_CONFIG = Path(__file__).resolve().parents[2] / ".test" / "config" / "config.yaml"


def test_time_left_is_the_work_left_over_the_cores_scaled_by_the_pace():
    e = eta.Eta({"a": 100.0, "b": 50.0, "c": 50.0}, cores=2)
    assert e.total_s == pytest.approx(100.0)
    assert e.left_s([], 0.0) == (pytest.approx(100.0), pytest.approx(100.0), 1.0)
    # "a" (50 s of wall time expected on 2 cores) took 100 s: the run is twice as slow
    left, plan_left, pace = e.left_s(["a"], 100.0)
    assert (plan_left, pace, left) == (pytest.approx(50.0), pytest.approx(2.0),
                                       pytest.approx(100.0))
    assert "1 of 3 jobs done" in e.line(["a"], 100.0) and "x 2 this run" in e.line(["a"], 100.0)
    assert e.line(["a", "b", "c"], 300.0).startswith("run ETA: all 3 jobs done in 5.0 min")


def test_a_job_costs_its_flops_over_the_throughput_plus_its_start():
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    tp = {"measurements": [{"device": "cpu", "tflops": 0.01}]}
    w = resources.work("train_organism", cfg, {"model": "organism"})
    got = eta.job_seconds("train_organism", cfg, {"model": "organism"}, "cpu", tp)
    assert got == pytest.approx(eta.START_S + w.flops / 1e10)
    assert got > 2 * eta.START_S
    assert eta.job_seconds("summary", cfg, {}, "cpu", tp) == eta.START_S


class Job:  # hashable, as Snakemake's jobs are
    def __init__(self, rule, wildcards):
        self.rule, self.wildcards_dict = SimpleNamespace(name=rule), wildcards


class Dag:
    def __init__(self, jobs):
        self.jobs, self.done = jobs, set()

    def needrun_jobs(self, exclude_finished=True):
        return iter(self.jobs)

    def finished(self, job):
        return job in self.done


def test_the_watcher_writes_a_line_when_jobs_finish(tmp_path):
    cfg = {**yaml.safe_load(TEST_CONFIG.read_text()), "device": "cpu"}
    jobs = [Job("train_organism", {"model": "organism"}), Job("summary", {})]
    dag = Dag(jobs)
    wf = SimpleNamespace(dag=dag, resource_settings=SimpleNamespace(cores=2))
    lines, seen = [], threading.Event()

    def emit(line):
        lines.append(line)
        if "all 2 jobs done" in line:
            seen.set()

    log = tmp_path / "logs" / "eta.log"
    t = eta.watch(wf, cfg, log, emit, every_s=0.01)
    assert lines[0].startswith("run ETA: 2 jobs to run, about ") and "on 2 cores, cpu" in lines[0]
    dag.done.add(jobs[0])
    dag.done.add(jobs[1])
    assert seen.wait(10)
    t.join(10)
    assert not t.is_alive()
    written = log.read_text().splitlines()
    assert len(written) == len(lines) and written[-1].endswith(lines[-1])


def test_finish_writes_the_last_line_the_watcher_had_no_time_for(tmp_path):
    cfg = {**yaml.safe_load(TEST_CONFIG.read_text()), "device": "cpu"}
    jobs = [Job("summary", {})]
    dag = Dag(jobs)
    wf = SimpleNamespace(dag=dag, resource_settings=SimpleNamespace(cores=1))
    lines: list[str] = []
    log = tmp_path / "eta.log"
    eta.watch(wf, cfg, log, lines.append, every_s=3600)  # asleep until the run ends
    assert lines == ["run ETA: 1 job to run, about 4.0 s expected (the plan's time model "
                     "on 1 core, cpu)"]
    dag.done.add(jobs[0])
    eta.finish()
    eta.finish()  # once only
    assert len(lines) == 2 and lines[1].startswith("run ETA: 1 job done in ")
    assert log.read_text().count("run ETA") == 2
