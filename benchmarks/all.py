"""Every benchmark in one run, side by side: labelling (batched KV-cache greedy against
per-sample `generate`), divergence (batched against the naive definition), EAP-IG
attribution (nnsight against plain hooks) and circuit evaluation (many circuits per forward
against one at a time), on CPU with the trained organism (or its shape)
and a Pythia-160m-shaped model, and, where torch sees a GPU, with Pythia-160m and
Pythia-1b shapes on it. Models of Pythia shapes are randomly initialised (no hub). Then the
fixed cost per job (benchmarks/jobstart.py: Snakemake start-up, parsing the workflow, the
modules' import times, one real job chain's start-up), device-independent.

    python benchmarks/all.py [--results results] [--quick] [--throughput-only]

Prints one table: a row per figure, a column per device and model shape. Writes the
attribution throughput (examples per second per device and model shape, as effective
TFLOP/s, with the measured peak memory next to vermem.workflow.resources' model of it) to
benchmarks/throughput.json, which `make plan` reads, at one thread on CPU (the attribution
rule's local threads); after `make run` also the rule's real default workload (the
organism on its own attribution pairs, benchmarks/threads.py). Each row states its threads
and the load average. --throughput-only runs just that.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import attribution
import circuits
import common
import divergence
import jobstart
import labels
import threads
import torch

# (device, shape or None for the trained organism, sizes)
CPU = [("cpu", None, {"n": 256, "naive_n": 32, "div_n": 24, "prefix": 32, "batch": 2}),
       ("cpu", "pythia-160m", {"n": 64, "naive_n": 8, "div_n": 4, "prefix": 16, "batch": 2})]
GPU = [("cuda", "pythia-160m", {"n": 512, "naive_n": 32, "div_n": 32, "prefix": 32, "batch": 16}),
       ("cuda", "pythia-1b", {"n": 512, "naive_n": 16, "div_n": 16, "prefix": 32, "batch": 8})]
QUICK = [("cpu", None, {"n": 64, "naive_n": 8, "div_n": 4, "prefix": 16, "batch": 2})]


def column(results: Path, device: str, shape: str | None, s: dict) -> dict[str, object]:
    p = s["prefix"]
    lab = labels.run(results, 64, s["n"], s["naive_n"], p, p, device, shape)
    div = divergence.run(results, s["div_n"], p, p, 64, device, shape)
    att = attribution.run(shape or "organism", device, batch=s["batch"], length=50, steps=5,
                          threads=1)
    circ = circuits.run(shape, device, results)
    return {
        "model": lab["model"],
        "labels: tokens/s (batched)": lab["tokens_per_s"],
        "labels: tokens/s (naive)": lab["naive_tokens_per_s"],
        "labels: speed-up": lab["speedup"],
        "labels: same tokens": lab["same_tokens"],
        "divergence: samples/s (batched)": div["samples_per_s"],
        "divergence: samples/s (naive)": div["naive_samples_per_s"],
        "divergence: speed-up": div["speedup"],
        "divergence: same points": div["same_points"],
        "attribution: edges": att["edges"],
        "attribution: examples/s (hooks)": att["hooks_examples_per_s"],
        "attribution: examples/s (nnsight)": att["nnsight_examples_per_s"],
        "attribution: nnsight overhead %": att["nnsight_overhead_pct"],
        "attribution: peak MiB (hooks)": att["hooks_peak_mib"],
        "attribution: peak MiB (nnsight)": att["nnsight_peak_mib"],
        "attribution: same scores": att["same_scores"],
        "_attribution": att,
        "circuits: padding share": circ["padding share (timed set)"],
        "circuits: patched / unpatched (x8)": circ["patched / unpatched time (x8 rows)"],
        **{f"circuits: evals/s ({pf} per forward)":
           circ[f"evaluations/s (circuits_per_forward {pf})"] for pf in circuits.PER_FORWARD},
        "circuits: max abs difference": circ["max |metric - one at a time|"],
    }


THROUGHPUT = Path(__file__).resolve().parent / "throughput.json"


def throughput_row(att: dict) -> dict:
    """One measurement of benchmarks/throughput.json: EAP-IG examples per second (hooks
    backend) as effective TFLOP/s of the modelled FLOPs, and measured vs modelled memory."""
    from vermem.workflow import resources

    name = att["shape"] if att["shape"] in resources.KNOWN_SHAPES else None
    layers, width, heads = common.SHAPES[att["shape"]]
    shape = resources.KNOWN_SHAPES[name] if name else resources.Shape(layers, width, heads, 2048)
    shape = resources.replace(shape, dtype=att.get("dtype", "float32"))
    flops = (2 + 3 * att["ig_steps"]) * shape.forward_flops(att["length"])
    model = resources.attribution_bytes(shape, att["batch"], att["ig_steps"], att["length"])
    return {"rule": "attribution", "device": att["device"], "shape": att["shape"],
            "dtype": shape.dtype, "workload": "random tokens", "batch": att["batch"],
            "length": att["length"], "threads": att["threads"], "loadavg": att["loadavg"],
            "ig_steps": att["ig_steps"], "examples_per_s": att["hooks_examples_per_s"],
            "tflops": round(att["hooks_examples_per_s"] * flops / 1e12, 5),
            "peak_mib_measured": att["hooks_peak_mib"],
            "peak_mib_model": round((model - resources.OVERHEAD_BYTES) / 2**20)}


def workload_row(results: Path, seconds: float = 15.0) -> dict:
    """The attribution rule's real default workload as a throughput.json row: the trained
    organism on the default run's own attribution pairs (both directions, position buckets)
    at the rule's local thread count (1), one job alone (benchmarks/threads.py)."""
    from vermem.workflow import resources

    r = threads.layout("attribution", results, 1, 1, seconds)
    (clean, *_), _ = threads.pairs(results, "attribution")
    length = sum(map(len, clean)) / len(clean)
    layers, width, heads = common.SHAPES["organism"]
    fwd = resources.Shape(layers, width, heads, 2048).forward_flops(round(length))
    return {"rule": "attribution", "device": "cpu", "shape": "organism", "dtype": "float32",
            "workload": "default attribution pairs", "what": r["what"], "batch": 16,
            "length": round(length, 1), "ig_steps": 5,
            "directions": 2, "threads": 1, "loadavg": [round(x, 2) for x in os.getloadavg()],
            "examples_per_s": r["items_per_s"],
            "tflops": round(r["items_per_s"] * (2 + 2 * 3 * 5) * fwd / 1e12, 5)}


def write_throughput(rows: list[dict], path: Path = THROUGHPUT) -> None:
    old = json.loads(path.read_text()).get("measurements", []) if path.is_file() else []
    def key(r: dict) -> tuple:  # rows written before workloads were named: random tokens
        return r["device"], r["shape"], r.get("workload", "random tokens")

    keys = set(map(key, rows))
    keep = [r for r in old if key(r) not in keys]
    path.write_text(json.dumps({"written_by": "benchmarks/all.py",
                                "measurements": keep + rows}, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--quick", action="store_true", help="organism on CPU only, small sizes")
    ap.add_argument("--throughput-only", action="store_true",
                    help="only the attribution throughput, written to throughput.json")
    a = ap.parse_args()
    plan = QUICK if a.quick else CPU + (GPU if torch.cuda.is_available() else [])
    if a.throughput_only:
        rows = []
        for device, shape, s in plan:
            print(f"attribution throughput {device} / {shape or 'organism'} ...", file=sys.stderr)
            rows.append(throughput_row(attribution.run(shape or "organism", device,
                                                       batch=s["batch"], length=50, steps=5,
                                                       threads=1)))
            print(json.dumps(rows[-1]))
        if (a.results / "pairs" / "organism.parquet").is_file():
            rows.append(workload_row(a.results))
            print(json.dumps(rows[-1]))
        write_throughput(rows)
        return
    cols = {}
    for device, shape, sizes in plan:
        name = f"{device} / {shape or 'organism'}"
        print(f"running {name} ...", file=sys.stderr, flush=True)
        cols[name] = column(a.results, device, shape, sizes)
    if not torch.cuda.is_available():
        print("no GPU: the Pythia-160m and Pythia-1b GPU columns are not run", file=sys.stderr)
    rows = [throughput_row(c.pop("_attribution")) for c in cols.values()]
    if (a.results / "pairs" / "organism.parquet").is_file():
        rows.append(workload_row(a.results))
    write_throughput(rows)
    rows = list(next(iter(cols.values())))
    width = max(map(len, rows))
    print(f"{'':<{width}}  " + "  ".join(f"{c:>24}" for c in cols))
    for r in rows:
        print(f"{r:<{width}}  " + "  ".join(f"{str(v[r])[:24]:>24}" for v in cols.values()))
    print("\nfixed cost per job (benchmarks/jobstart.py)")
    jobstart.print_table(jobstart.measure(repeat=1 if a.quick else 3))


if __name__ == "__main__":
    main()
