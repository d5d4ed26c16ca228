"""The bill of a configuration before submitting it: jobs per rule, SLURM submissions
(with the profile's groups and local rules), estimated GPU-hours and peak GPU memory.

    vermem plan --configfile config/pythia.yaml [--profile slurm] [--device cuda]
    python -m vermem.workflow.plan ...   (the same)
    make plan CONFIG=config/pythia.yaml

The DAG is built by Snakemake itself (dry run through its API, in an empty scratch
working directory unless --directory is given, so every job counts); groups come from the
rules' `group:` and the profile's `group-components`, local rules from `localrules:`.
GPU-hours and peak memory come from vermem.workflow.resources: the memory model at the batch that
fits `gpu_memory_gb`, and FLOPs over the throughput benchmarks/all.py measured on the
device (benchmarks/throughput.json), else its documented default.

The plan needs no data: the dry run is parsed with VERMEM_PLAN=1
(`vermem.workflow.config.planning`),
so declared shards that are not on this machine (the Pile, on a cluster) and local model
folders that are not here are taken as declared, unread; sizes come from
`corpus.samples_per_subset`, as the plan's last lines say. A user error (a bad config, a
missing config file) is one line on stderr and exit status 2, no traceback.

After the bill, the power table (vermem.workflow.pair_forecast): per model, task and subset the
memorized
samples, pairs and documents per part that the config's `plan` rates predict, and the
cells that will end as "insufficient evidence".
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vermem.core.errors import VermemError, one_line
from vermem.workflow import config as workflow_config
from vermem.workflow import pair_forecast, resources

REPO = Path(__file__).resolve().parents[2]


@dataclass
class PlannedJob:
    rule: str
    wildcards: dict[str, str]
    resources: dict[str, Any]
    group: str | None          # SLURM submission id of its group job, None when alone
    local: bool                # runs on the submitting host
    has_output: bool = True
    retries: int = 0           # restarts after a failure (attempt 2, 3, ...)


@dataclass
class Plan:
    config: dict[str, Any]
    jobs: list[PlannedJob] = field(default_factory=list)
    unread_shards: list[str] = field(default_factory=list)  # declared, not on this machine

    def submissions(self) -> collections.Counter:
        """SLURM jobs: a group job's id, or an ungrouped job's rule, with its count."""
        out: collections.Counter = collections.Counter()
        groups = set()
        for j in self.jobs:
            if j.local or not j.has_output:
                continue
            if j.group is None:
                out[j.rule] += 1
            elif j.group not in groups:
                groups.add(j.group)
                out[j.group] += 1
        return out


def build(configfile: Path, profile: Path | None = REPO / "slurm",
          snakefile: Path = REPO / "Snakefile", workdir: Path | None = None) -> Plan:
    """Dry-run the workflow through Snakemake's API, with the settings that
    `snakemake --profile PROFILE -n --configfile CONFIGFILE` would use (parsed by
    Snakemake's own command line parser); every job with its resources, group and place."""
    from snakemake.api import SnakemakeApi
    from snakemake.cli import parse_args
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        GroupSettings,
        OutputSettings,
        Quietness,
        ResourceSettings,
    )

    with contextlib.ExitStack() as stack:
        stack.enter_context(_planning())
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vermem-plan-")))
        argv = ["-n", "-s", str(snakefile), "-d", str(workdir),
                "--configfile", str(Path(configfile).absolute())]
        if profile is not None:
            argv = ["--profile", str(Path(profile).absolute()), *argv]
        sink = io.StringIO()
        stack.enter_context(contextlib.redirect_stdout(sink))
        stack.enter_context(contextlib.redirect_stderr(sink))
        _, args = parse_args(argv)
        api = stack.enter_context(SnakemakeApi(OutputSettings(quiet={Quietness.ALL},
                                                              dryrun=True)))
        wf = api.workflow(
            resource_settings=ResourceSettings(
                cores=args.cores or 1, nodes=args.jobs or 1, resources=args.resources,
                overwrite_threads=args.set_threads,
                overwrite_resource_scopes=args.set_resource_scopes,
                overwrite_resources=args.set_resources,
                default_resources=args.default_resources),
            config_settings=ConfigSettings(configfiles=args.configfile),
            snakefile=Path(snakefile), workdir=Path(workdir))
        try:
            wf.dag(DAGSettings()).execute_workflow(
                executor=args.executor or "local", pseudo_executor="dryrun",
                group_settings=GroupSettings(group_components=args.group_components))
        except user_errors():
            raise
        except Exception:  # a bug: what Snakemake said, then the traceback
            sys.stderr.write(sink.getvalue()[-3000:])
            raise
        w = wf._workflow
        d = w.dag
        groups = getattr(d, "_group", {})
        plan = Plan(dict(w.config), unread_shards=list(w.globals.get("UNREAD_SHARDS", [])))
        for job in d.jobs:
            g = groups.get(job)
            local = job.rule.name in w._localrules or job.rule.norun
            plan.jobs.append(PlannedJob(
                job.rule.name, dict(job.wildcards_dict), dict(job.resources.items()),
                None if (g is None or local) else str(g.groupid), local,
                bool(job.output), int(job.rule.restart_times or 0)))
    return plan


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors the user fixes (a bad config or path): `main` prints them as one line."""
    from snakemake.exceptions import RuleException, WorkflowError

    return VermemError, WorkflowError, RuleException


@contextlib.contextmanager
def _planning():
    """VERMEM_PLAN=1 while the workflow is parsed (data need not exist), then as before."""
    before = os.environ.get(workflow_config.PLANNING_ENV)
    os.environ[workflow_config.PLANNING_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(workflow_config.PLANNING_ENV, None)
        else:
            os.environ[workflow_config.PLANNING_ENV] = before


def assumptions(plan: Plan) -> list[str]:
    """What the bill assumes in place of data it does not read: samples per subset (the
    shards are never read), memorized share, and the shards that are not on this machine."""
    corpus = plan.config["corpus"]
    n, windows = corpus["samples_per_subset"], (corpus.get("windows") or {}).get(
        "per_document", 1)
    docs = (f"corpus.samples_per_subset = {n:,} documents" if n is not None else
            f"{resources.DEFAULT_SAMPLES:,} documents (corpus.samples_per_subset is null: "
            f"all documents, a number unknown before the shards are read)")
    out = [f"assumed: shards not read; each of the {len(corpus['subsets'])} subsets gives "
           f"{docs} x {windows} window(s) per document = "
           f"{resources.samples_per_subset(plan.config):,} samples, "
           f"memorized as the plan section's rates state (else "
           f"{resources.MEMORIZED_FRACTION:.0%}), for the GPU-hours and the power table alike"]
    if plan.unread_shards:
        shown = ", ".join(plan.unread_shards[:3]) + (
            f" and {len(plan.unread_shards) - 3} more" if len(plan.unread_shards) > 3 else "")
        out.append(f"not on this machine (billed as declared): {shown}")
    return out


@dataclass
class Row:
    rule: str
    jobs: int
    slurm: int
    gpu_hours: float
    peak_gpu_gb: float
    batch: str


def table(plan: Plan, device: str = "cuda",
          throughput: Mapping[str, Any] | None = None) -> tuple[list[Row], str]:
    """Rows per rule and where the throughput comes from."""
    tf, source = resources.tflops(device, throughput)
    by_rule: dict[str, list[PlannedJob]] = collections.defaultdict(list)
    for j in plan.jobs:
        if j.has_output:
            by_rule[j.rule].append(j)
    group_rules: dict[str, set[str]] = collections.defaultdict(set)
    for j in plan.jobs:
        if j.group:
            group_rules[j.rule].add(j.group)
    rows = []
    for rule, jobs in by_rule.items():
        hours, peak, batches = 0.0, 0.0, set()
        for j in jobs:
            w = resources.work(rule, plan.config, j.wildcards,
                               f"results/models/{j.wildcards.get('model')}/model.json")
            if w is None or "gpu" not in j.resources:
                continue
            hours += w.flops / (tf * 1e12) / 3600
            peak = max(peak, w.gpu_bytes / resources.GiB)
            batches.add(w.batch)
        slurm = 0 if all(j.local for j in jobs) else (
            len(group_rules[rule]) or sum(not j.local for j in jobs))
        rows.append(Row(rule, len(jobs), slurm, hours, peak,
                        ",".join(map(str, sorted(batches))) or "-"))
    return rows, f"{tf:g} TFLOP/s on {device}, {source}"


def render(plan: Plan, device: str = "cuda", throughput: Mapping[str, Any] | None = None
           ) -> str:
    rows, source = table(plan, device, throughput)
    lim = plan.config.get("gpu_memory_gb")
    hours = ("GPU" if device == "cuda" else device.upper()) + "-h"
    out = [f"{'rule':<26} {'jobs':>5} {'slurm':>5} {hours:>8} {'peak GPU GB':>11} {'batch':>7}"]
    for r in rows:
        dash = "-"
        gpu = (f"{r.gpu_hours:8.3g} {r.peak_gpu_gb:11.1f}" if r.peak_gpu_gb
               else f"{dash:>8} {dash:>11}")
        out.append(f"{r.rule:<26} {r.jobs:>5} {r.slurm:>5} {gpu} {r.batch:>7}")
    subs = plan.submissions()
    total_h = sum(r.gpu_hours for r in rows)
    peak = max((r.peak_gpu_gb for r in rows), default=0.0)
    out.append(f"{'total':<26} {sum(r.jobs for r in rows):>5} {sum(subs.values()):>5} "
               f"{total_h:8.3g} {peak:11.1f}")
    out.append(f"throughput: {source}; gpu_memory_gb: {lim}; GPU-hours are estimates "
               f"(vermem.workflow.resources: FLOPs / throughput)")
    if "A" in plan.config.get("studies", ["A", "B"]):  # the corpus is Study A's
        out += assumptions(plan)
    return "\n".join(out)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """`vermem plan` (vermem.workflow.cli) and `python -m vermem.workflow.plan`."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    ap.add_argument("--configfile", type=Path, default=REPO / "config" / "config.yaml")
    ap.add_argument("--profile", default=str(REPO / "slurm"),
                    help="profile folder whose groups count (none: no profile)")
    ap.add_argument("--device", default="cuda", help="throughput of this device (cuda, cpu)")
    ap.add_argument("--directory", type=Path, default=None,
                    help="working directory (default: empty scratch, i.e. everything to run)")
    a = ap.parse_args(argv)
    profile = None if a.profile in ("", "none") else Path(a.profile)
    for what, path in (("config file", a.configfile), ("profile folder", profile)):
        if path is not None and not path.exists():
            ap.exit(2, f"vermem.workflow.plan: {what} not found: {path}\n")
    try:
        p = build(a.configfile, profile, workdir=a.directory)
        text = render(p, a.device)
        if "A" in p.config.get("studies", ["A", "B"]):  # the power table is Study A's
            text += "\n\n" + pair_forecast.render(p.config)
    except user_errors() as e:  # the user's to fix: one line
        ap.exit(2, f"vermem.workflow.plan: {one_line(e, 2000)}\n")
    print(text)


if __name__ == "__main__":
    main()
