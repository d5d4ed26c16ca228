"""Thread policy on this machine: threads per job against jobs in parallel, on the work the
default run's rules really do (the trained organism and its own samples and pairs).

    python benchmarks/threads.py [--results results] [--seconds 20] [--write]

Workloads (one per rule family, each a loop of the rule's own call):
- labels: `labels.generate_all` on the organism's samples, batch 64 (config labels.batch_size);
- attribution: `attribution.run` on one task and subset's attribution pairs, EAP-IG, 5 steps,
  batch 16, both directions with position buckets (what rule attribution computes);
- circuits: `circuits.evaluate_many` of 16 circuits on one evaluation set, one per forward
  (what rule circuit does).

Layouts: 1 job x 1 thread, 1 job x 2 threads, 2 jobs x 1 thread at once (each job is its
own process, as Snakemake runs `script:` jobs). Each job loops its workload for about
--seconds of wall time; throughput is items per second of wall time, summed over the jobs
that ran at once. Prints os.getloadavg() before and after and the cores. With --write the
figures go to benchmarks/threads.json (the measured policy the rules' `threads:` follow:
docs/running.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import organism_or_random  # noqa: E402

from vermem.attribution import scoring  # noqa: E402
from vermem.attribution.graph import Graph, Shape  # noqa: E402
from vermem.attribution.settings import AttributionSettings  # noqa: E402
from vermem.circuits import evaluation  # noqa: E402
from vermem.data import labels  # noqa: E402

WORKLOADS = ("labels", "attribution", "circuits")
LAYOUTS = ((1, 1), (1, 2), (2, 1))  # (jobs at once, threads per job)
OUT = Path(__file__).resolve().parent / "threads.json"


def pairs(results: Path, split: str):
    """(clean, corrupt, answer, wrong, doc ids) of the default run's first task and subset
    in `split`, and its name."""
    import polars as pl

    df = pl.read_parquet(results / "pairs" / "organism.parquet")
    task, subset = df.select("task", "subset").sort("task", "subset").row(0)
    q = df.filter((pl.col("task") == task) & (pl.col("subset") == subset)
                  & (pl.col("split") == split))
    return tuple(q[c].to_list() for c in ("clean", "corrupt", "answer", "wrong", "doc_id")), \
        f"{task} / {subset}, {q.height} {split} pairs"


def workload(name: str, results: Path):
    """(one unit of work as a callable returning its item count, a description)."""
    model, samples, desc = organism_or_random(results, "cpu")
    if samples is None:
        raise SystemExit(f"no finished default run under {results}: run `make run` first")
    g = Graph(Shape.from_config(model.config))
    if name == "labels":
        prompts = samples[:256, :32].tolist()
        return (lambda: labels.generate_all(model, prompts, 32, 64, torch.device("cpu")).shape[0]
                ), f"{desc}; 256 samples, P = C = 32, batch 64"
    if name == "attribution":
        (cl, co, an, wr, _), what = pairs(results, "attribution")
        return (lambda: scoring.run(model, g, cl, co, an, wr, AttributionSettings(
            "EAP-IG", steps=5, metric="logit_diff", batch_size=16))[1]
                ), f"{desc}; {what}, EAP-IG 5 steps, batch 16"
    (cl, co, an, wr, docs), what = pairs(results, "evaluation")
    cl, co, an, wr, docs = (x[:30] for x in (cl, co, an, wr, docs))
    ev = evaluation.EvalSet.make(model, cl, co, an, wr, batch_size=32, groups=docs)
    sizes = evaluation.log_sizes(g.n_edges, 8)
    jobs = [
        (
            evaluation.Mode("noising", p, "resample"),
            evaluation.circuit(g, evaluation.random_ranking(g, s), k),
        )
        for s, k in enumerate(sizes)
        for p in ("outside", "inside")
    ][:16]
    return (lambda: len(evaluation.evaluate_many(model, g, ev, jobs, per_forward=1))
            ), f"{desc}; {what[:what.index(',')]}, {ev.n} evaluation pairs, 16 circuits"


def child(name: str, results: Path, threads: int, seconds: float) -> dict:
    torch.set_num_threads(threads)
    fn, desc = workload(name, results)
    fn()  # warm-up
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        done += fn()
    return {"items": done, "wall_s": time.perf_counter() - t0, "workload": desc}


def layout(name: str, results: Path, jobs: int, threads: int, seconds: float) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--threads", str(threads),
           "--seconds", str(seconds), "--results", str(results)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(jobs)]
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    per_job = [o["items"] / o["wall_s"] for o in outs]
    return {"workload": name, "jobs": jobs, "threads": threads,
            "items_per_s": round(sum(per_job), 2),
            "items_per_s_per_job": round(sum(per_job) / jobs, 2), "what": outs[0]["workload"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    ap.add_argument("--write", action="store_true", help=f"write {OUT.name}")
    ap.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.results, a.threads, a.seconds)))
        return
    before = tuple(round(x, 2) for x in os.getloadavg())
    print(f"cores {os.cpu_count()}, loadavg before {before}; each job ~{a.seconds:.0f} s",
          flush=True)
    rows = []
    for name in a.workloads:
        for jobs, threads in LAYOUTS:
            rows.append(layout(name, a.results, jobs, threads, a.seconds))
            r = rows[-1]
            print(f"{name:>12}  {jobs} job(s) x {threads} thread(s): {r['items_per_s']:8.2f} "
                  f"items/s ({r['items_per_s_per_job']:.2f} per job)", flush=True)
    best = {n: max((r for r in rows if r["workload"] == n), key=lambda r: r["items_per_s"])
            for n in a.workloads}
    after = tuple(round(x, 2) for x in os.getloadavg())
    for n, r in best.items():
        print(f"best for {n}: {r['jobs']} job(s) x {r['threads']} thread(s)  ({r['what']})")
    print(f"loadavg after {after}")
    if a.write:
        OUT.write_text(json.dumps({"written_by": "benchmarks/threads.py", "cores": os.cpu_count(),
                                   "loadavg_before": before, "loadavg_after": after,
                                   "seconds_per_job": a.seconds, "rows": rows,
                                   "best": {n: [r["jobs"], r["threads"]]
                                            for n, r in best.items()}}, indent=1) + "\n")


if __name__ == "__main__":
    main()
