"""Integration: jobs of the test config through `--profile slurm` on a real single-node
SLURM cluster.

tests/runs/slurm_cluster.py installs Debian's slurm-wlm and munge when missing and starts
munged, slurmctld and slurmd on localhost (partitions cpu and gpu, one fake GPU). The
test profile is slurm/config.yaml plus only what this cluster needs (written by
`write_test_profile`): status from squeue (no accounting), no account, quick status checks,
and requests scaled to fit the one node.

The SLURM run does not repeat the whole local run (`workflow_run`, conftest.py): on a
copy of it, the outputs of a few jobs are deleted and made again through SLURM (`RERUN`):
a CPU job, a GPU job on its own and two GPU jobs of one group. Every one of them must have
run in the partition its rule's resources call for, with a GPU request exactly when the
rule asks `gpu=1` (read back from `scontrol show job`), the group's two as one SLURM job,
and what they wrote must equal the local run's outputs.

Only this test shows what a real cluster does with the workflow (tests/runs/test_workflow.py
reads the profile's plan from dry runs): sbatch placing each job in its partition, the
GPU request and a GPU allocated exactly for the GPU rules, a group job as one SLURM job,
and jobs that each parse the workflow in a Snakemake process of their own on the node
computing what the local run computed.

Skipped, with the reason, where SLURM cannot run (not root, no apt-get, packages not
installable, daemons not starting) or with VERMEM_SLURM_TEST=0; in CI (CI=true) as root
with apt-get, those are failures instead of skips (tests/debian.py).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
import yaml

from vermem.workflow import plan

from .. import debian
from ..conftest import REPO, TEST_CONFIG
from . import slurm_cluster

PROFILE = REPO / "slurm" / "config.yaml"
# fields that legitimately differ between two runs of the same workflow (wall-clock time)
VOLATILE = {"train_seconds"}


def unavailable(reason: str):
    debian.unavailable("SLURM integration test", reason)


@pytest.fixture(scope="session")
def slurm_installed() -> str:
    """Session-scoped so that it is decided before the (session) local run is made."""
    if os.environ.get("VERMEM_SLURM_TEST", "1") == "0":
        pytest.skip("SLURM integration test: disabled by VERMEM_SLURM_TEST=0")
    if os.geteuid() != 0:
        unavailable("needs root (apt-get install slurm-wlm munge; slurmd runs jobs as root)")
    try:
        return slurm_cluster.ensure_installed()
    except slurm_cluster.Unavailable as e:
        reason = str(e)
    unavailable(reason)


@pytest.fixture(scope="module")
def cluster(slurm_installed):
    print(slurm_installed)
    c = slurm_cluster.Cluster(tempfile.mkdtemp(prefix="vermem-slurm-"))
    try:
        reason = None
        try:
            c.start()
        except slurm_cluster.Unavailable as e:
            reason = f"the cluster did not start: {e}"
        if reason:
            unavailable(reason)
        yield c
    finally:
        c.stop()
        left = c.leftover_pids()
        assert not left, f"processes of the test cluster still running: {left}"
        assert not c.root.exists()
        assert not (c.conf.is_file() and c.conf.read_text().startswith(c.header())), c.conf


def dry_run_jobs(profile: Path, workdir: Path) -> list[dict]:
    """The jobs of the test config under `profile` (a dry run through Snakemake's API,
    vermem.workflow.plan): rule, resources, its group job (one SLURM job for all its members, from
    the rules' `group:` and the profile's group-components), whether submitted (local
    rules run on the submit host; a job without output, the target rule, runs nothing)."""
    p = plan.build(TEST_CONFIG, profile, workdir=workdir)
    return [{"rule": j.rule, "wildcards": j.wildcards,
             "submitted": j.has_output and not j.local, "group": j.group,
             "resources": {k: str(v) for k, v in j.resources.items()}} for j in p.jobs]


# Jobs the SLURM run makes again, each with its outputs (rules/*.smk), from its wildcards:
# a CPU job (partition cpu, no GPU), a GPU job of its own (partition gpu, GPU request) and
# two GPU jobs of one group (one SLURM job with both), none upstream of another, so that
# nothing else needs to run.
RERUN = {
    "dynamics_strings": ("results/dynamics/{model}/strings.parquet",
                         "results/dynamics/{model}/strings.json"),
    "checkpoint_labels": ("results/checkpoints/{model}/{ckpt}/labels.parquet",
                          "results/checkpoints/{model}/{ckpt}/labels.summary.json"),
    "attribution": ("results/attribution/{model}/{task}/{subset}/{metric}.safetensors",
                    "results/attribution/{model}/{task}/{subset}/{metric}.eap.json"),
}


def rerun_jobs(jobs: list[dict]) -> list[dict]:
    """Of the dry run's jobs, those the SLURM run makes again (`RERUN`): the first
    dynamics_strings and checkpoint_labels jobs, and two attribution jobs of the first
    model and task (two subsets: members of one group job)."""
    first = {rule: next(j for j in jobs if j["rule"] == rule) for rule in RERUN}
    same = {k: first["attribution"]["wildcards"][k] for k in ("model", "task")}
    attribution = [j for j in jobs if j["rule"] == "attribution"
                   and all(j["wildcards"][k] == v for k, v in same.items())][:2]
    assert len(attribution) == 2 and len({j["group"] for j in attribution}) == 1, attribution
    return [first["dynamics_strings"], first["checkpoint_labels"], *attribution]


def outputs(job: dict) -> list[str]:
    return [pattern.format(**job["wildcards"]) for pattern in RERUN[job["rule"]]]


def write_test_profile(folder: Path, node: dict, jobs: list[dict]) -> Path:
    """slurm/config.yaml plus what the one-node test cluster needs; returns the folder.

    Per-rule partitions and GPU requests are the real profile's. Memory requests are
    scaled so that the largest fits in half the node, CPUs capped at the node's; threads
    are the rules' own, as in the local run, so that both runs compute alike.
    """
    profile = yaml.safe_load(PROFILE.read_text())
    # each job keeps its rule's own threads, as in the local run (--cores 2, no rule asks
    # more): torch's reductions depend on the thread count, the outputs must not
    profile.pop("set-threads", None)
    mems = [int(j["resources"]["mem_mb"]) for j in jobs if "mem_mb" in j["resources"]]
    mems.append(int(profile["default-resources"].get("mem_mb", 1000)))
    factor = min(1.0, node["memory_mb"] / 2 / max(mems))

    def fit(res: dict) -> dict:
        res = dict(res)
        if "mem_mb" in res:
            res["mem_mb"] = max(100, int(int(res["mem_mb"]) * factor))
        if "cpus_per_task" in res:
            res["cpus_per_task"] = min(int(res["cpus_per_task"]), node["cpus"])
        return res

    set_resources = profile.get("set-resources", {})
    for job in jobs:
        rule, res = job["rule"], job["resources"]
        keep = {k: res[k] for k in ("mem_mb", "cpus_per_task") if k in res}
        set_resources[rule] = fit({**set_resources.get(rule, {}), **keep})
    profile.update({
        "default-resources": fit(profile["default-resources"]),
        "set-resources": set_resources,
        "slurm-status-command": "squeue",        # no accounting: slurmctld's view only
        "slurm-no-account": True,
        "slurm-init-seconds-before-status-checks": 2,
        "latency-wait": 5,                        # one file system, nothing to wait for
    })
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(
        "# generated by tests/runs/test_slurm.py from slurm/config.yaml\n"
        + yaml.safe_dump(profile, sort_keys=False))
    return folder


def rule_of(job: dict, groups: set[str] = frozenset()) -> str:
    """The executor's job comment: rule_<name> or rule_<name>_wildcards_<values>, where a
    group job's name is <group id>_<its rules>; the rule, or the group id."""
    comment = job.get("Comment", "")
    assert comment.startswith("rule_"), job
    name = comment[len("rule_"):].split("_wildcards_", 1)[0]
    return next((g for g in groups if name.startswith(g + "_")), name)


def submission(job: dict) -> str:
    """What one dry-run job becomes on SLURM: its group job, or a job of its own rule."""
    return job["group"] or job["rule"]


def files_under(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def strip(record, volatile=VOLATILE):
    if isinstance(record, dict):
        return {k: strip(v) for k, v in record.items() if k not in volatile}
    if isinstance(record, list):
        return [strip(v) for v in record]
    return record


def safetensors_content(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata(), {k: f.get_tensor(k) for k in f.keys()}


def same_content(a: Path, b: Path) -> bool:
    """Equal once parsed: JSON minus VOLATILE fields, Parquet frames, safetensors tensors
    and metadata (whose key order in the header varies from one process to the next)."""
    if a.suffix == ".json":
        return strip(json.loads(a.read_text())) == strip(json.loads(b.read_text()))
    if a.suffix == ".parquet":
        return pl.read_parquet(a).equals(pl.read_parquet(b))
    if a.suffix == ".safetensors":
        import torch

        (meta_a, ta), (meta_b, tb) = safetensors_content(a), safetensors_content(b)
        return meta_a == meta_b and ta.keys() == tb.keys() and all(
            torch.equal(ta[k], tb[k]) for k in ta)
    return False


def differences(local: Path, other: Path) -> tuple[list[str], list[str]]:
    """Files of two results/ folders: (differing, equal by content only, not by bytes)."""
    a, b = files_under(local), files_under(other)
    assert a.keys() == b.keys(), sorted(a.keys() ^ b.keys())
    differ, by_content = [], []
    for name, path in a.items():
        if path.read_bytes() != b[name].read_bytes():
            (by_content if same_content(path, b[name]) else differ).append(name)
    return differ, by_content


def check_placement(cluster: slurm_cluster.Cluster, jobs: list[dict]) -> str:
    """Every submitted job of the dry run ran as a SLURM job where its rule's resources
    say: `gpu=1` in partition gpu with a GPU request and the fake GPU allocated, any other
    in partition cpu with neither. Returns a table of what `scontrol show job` showed."""
    node = cluster.node
    submitted = [j for j in jobs if j["submitted"]]
    expected = collections.Counter()
    for j in submitted:     # a group job counts once, whatever the number of its members
        if j["group"] is None or j["group"] not in expected:
            expected[submission(j)] += 1
    groups = {j["group"] for j in submitted if j["group"]}
    gpu_rules = {submission(j) for j in submitted if j["resources"].get("gpu") == "1"}
    cpus = collections.defaultdict(int)
    for j in submitted:     # a group job runs its members one after another: their maximum
        c = min(int(j["resources"].get("cpus_per_task", 1)), node["cpus"])
        cpus[submission(j)] = max(cpus[submission(j)], c)
    ran = cluster.jobs()
    assert collections.Counter(rule_of(j, groups) for j in ran) == expected
    seen = collections.defaultdict(set)
    for job in ran:
        rule = rule_of(job, groups)
        request = job.get("TresPerJob", "") + job.get("TresPerNode", "")   # what sbatch asked
        allocated = job.get("JOB_GRES", "(null)")                           # what it got
        seen[rule].add((job["Partition"], request or "-", allocated, job["CPUs/Task"],
                        job["JobState"]))
        assert job["JobState"] == "COMPLETED", job
        assert int(job["CPUs/Task"]) == cpus[rule], job
        if rule in gpu_rules:
            assert job["Partition"] == "gpu", job
            assert "gres:gpu:1" in request and allocated == "gpu:fake:1", job
        else:
            assert job["Partition"] == "cpu", job
            assert "gpu" not in request and "gpu" not in allocated, job
    spans = sorted((datetime.fromisoformat(j["StartTime"]), datetime.fromisoformat(j["EndTime"]))
                   for j in ran)
    busy, idle, end = 0.0, 0.0, spans[0][0]
    for a, b in spans:                       # time with at least one job running, and gaps
        idle += max(0.0, (a - end).total_seconds())
        busy += max(0.0, (b - max(a, end)).total_seconds())
        end = max(end, b)
    table = [f"{len(ran)} SLURM jobs (scontrol show job); from first start to last end "
             f"{busy + idle:.0f} s: {busy:.0f} s with a job running, {idle:.0f} s between jobs"]
    for rule, rows in sorted(seen.items()):
        for partition, request, allocated, cpus_per_task, state in sorted(rows):
            table.append(f"  {rule:26} x{expected[rule]:<3} partition={partition:4} "
                         f"request={request:11} gres={allocated:10} cpus={cpus_per_task} "
                         f"{state}")
    return "\n".join(table)


@pytest.mark.slow
@pytest.mark.slurm
def test_jobs_of_the_test_config_on_a_real_slurm_cluster(slurm_installed, workflow_run, cluster,
                                                        workflow_copy, tmp_path):
    """On a copy of the local run, the outputs of `rerun_jobs` are deleted and made again
    through SLURM: each job in its partition with its GPU request, the group's jobs as one
    SLURM job, nothing else run, and every file of results/ equal to the local run's."""
    jobs = dry_run_jobs(REPO / "slurm", tmp_path / "dry")
    rerun = rerun_jobs(jobs)
    assert {j["rule"] for j in rerun} == set(RERUN) and all(j["submitted"] for j in rerun)
    assert {j["resources"].get("gpu") for j in rerun} == {"1", None}   # GPU and CPU jobs
    profile = write_test_profile(tmp_path / "profile", cluster.node,
                                 [j for j in jobs if j["submitted"]])
    workdir = workflow_copy.parent
    targets = [t for j in rerun for t in outputs(j)]
    for target in targets:
        (workdir / target).unlink()
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", str(profile),
         "-s", str(REPO / "Snakefile"), "-d", str(workdir), *targets,
         "--configfile", str(TEST_CONFIG)],    # nargs+: the targets first
        capture_output=True, text=True, cwd=REPO, env=cluster.env, timeout=1200)
    seconds = time.monotonic() - start
    assert proc.returncode == 0, (proc.stdout[-3000:] + proc.stderr[-5000:]
                                  + "\n--- slurmctld\n" + cluster.log_tail("slurmctld"))

    print(f"\nSLURM run of {len(rerun)} jobs of the test config: {seconds:.0f} s")
    print(check_placement(cluster, rerun))

    # made again, and what the local run computed; nothing else touched
    assert all((workdir / t).is_file() for t in targets)
    made = {t.removeprefix("results/") for t in targets}
    touched = [name for name, path in files_under(workflow_copy).items() if name not in made
               and path.stat().st_mtime_ns != (workflow_run / name).stat().st_mtime_ns]
    assert not touched, f"written again, though not deleted: {touched}"
    differ, by_content = differences(workflow_run, workflow_copy)
    print(f"made again through SLURM: {len(targets)} files, equal to the local run's "
          f"(equal by content only, {sorted(VOLATILE)} dropped from JSON: {by_content})")
    assert not differ, f"SLURM and local outputs differ: {differ}"


def test_test_profile_keeps_partitions_and_fits_one_small_node(tmp_path):
    """No cluster needed: the generated profile, dry-run, asks what one 2-CPU node has."""
    node = {"name": "n", "cpus": 2, "memory_mb": 6000}
    real = dry_run_jobs(REPO / "slurm", tmp_path / "dry")
    profile = write_test_profile(tmp_path / "profile", node, [j for j in real if j["submitted"]])
    test = dry_run_jobs(profile, tmp_path / "dry")
    assert sorted(j["rule"] for j in test) == sorted(j["rule"] for j in real)
    by_rule = {j["rule"]: j for j in real}  # partitions and GPU requests are per rule
    for t in test:
        r, res = by_rule[t["rule"]], t["resources"]
        assert res["slurm_partition"] == r["resources"]["slurm_partition"], t
        assert res.get("gpu") == r["resources"].get("gpu"), t
        assert int(res["mem_mb"]) <= node["memory_mb"] // 2, t
        assert 1 <= int(res["cpus_per_task"]) <= node["cpus"], t
    assert {r["rule"] for r in real if r["resources"].get("gpu") == "1"} >= {"attribution"}


def test_small_jobs_stay_local_and_gpu_jobs_of_a_model_share_one_slurm_job(tmp_path):
    """No cluster needed: figures, tables and claims are local rules; attribution, circuits
    and Study B cells are grouped per model (and init), so the queue sees far fewer jobs."""
    jobs = [j for j in dry_run_jobs(REPO / "slurm", tmp_path / "dry") if j["rule"] != "all"]
    local = {j["rule"] for j in jobs if not j["submitted"]}
    assert {"figure_attribution_layers", "figure_faithfulness", "figure_transfer",
            "circuit_claims", "figures_memorization", "dynamics_tables",
            "figures_dynamics", "figure_dynamics_q1", "checkpoint_record", "checkpoint_samples",
            "checkpoint_tables", "figure_checkpoints"} <= local
    assert not {"attribution", "circuit", "dynamics_train", "labels", "checkpoint_labels",
                "checkpoint_attribution", "checkpoint_circuit",
                "checkpoint_final_circuits"} & local
    groups = collections.defaultdict(set)
    for j in jobs:
        if j["submitted"] and j["group"]:
            groups[j["group"]].add(j["rule"])
    assert groups["attribution-organism"] == {"attribution"}
    assert groups["circuits-organism"] == {"circuit"}
    assert groups["dynamics-organism-pretrained"] == {"dynamics_train", "dynamics_sequential"}
    # one SLURM job per checkpoint for its attribution, one for its circuits
    ckpts = yaml.safe_load(TEST_CONFIG.read_text())["models"]["organism"]["checkpoints"]
    for ckpt in ckpts:
        assert groups[f"ckpt-attribution-organism-{ckpt}"] == {"checkpoint_attribution"}
        assert groups[f"ckpt-circuits-organism-{ckpt}"] == {"checkpoint_circuit"}
    assert len(groups) == 4 + 2 * len(ckpts), groups
    subs = {j["group"] or id(j) for j in jobs if j["submitted"]}
    n = collections.Counter(j["rule"] for j in jobs)
    print(f"\n{len(jobs)} jobs, {len(subs)} SLURM jobs; per rule {dict(n)}")
    assert len(subs) <= len(jobs) // 3
