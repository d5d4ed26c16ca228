"""EAP-IG throughput and peak memory: nnsight capture against plain PyTorch hooks, on a
randomly initialised model of a real shape (the same computation, the same numbers).

    python benchmarks/attribution.py [--shape pythia-160m] [--device cpu] [--batch 2]

At --threads on CPU (default 1: the attribution rule's local threads). Each backend runs in
its own process (peak memory is per process: max RSS on CPU, torch.cuda.max_memory_allocated
on a GPU). Prints examples per second, peak memory, nnsight's overhead over hooks (goal:
under 15%), the threads and the load average at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import SHAPES, make_model  # noqa: E402

from vermem.attribution import (
    backends,  # noqa: E402
    pair_batch,  # noqa: E402
    scoring,  # noqa: E402
)
from vermem.attribution.graph import Graph, Shape  # noqa: E402


def child(a) -> dict:
    if a.device == "cpu":
        torch.set_num_threads(a.threads)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[a.dtype]
    model = make_model(a.shape, a.device, dtype)
    g = Graph(Shape.from_config(model.config))
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, model.config.vocab_size, (a.batch, a.length), generator=gen)
    corrupt = clean.clone()
    corrupt[:, -1] = (corrupt[:, -1] + 1) % model.config.vocab_size
    b = pair_batch.Batch.make(
        clean.tolist(), corrupt.tolist(), [1] * a.batch, [2] * a.batch, a.device
    )
    be = backends.BACKENDS[a.backend]()
    scoring.attribute(model, g, b, "EAP-IG", a.steps, backend=be)  # warm-up
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(a.repeats):
        scores = scoring.attribute(model, g, b, "EAP-IG", a.steps, backend=be)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    dt = (time.perf_counter() - t) / a.repeats
    return {"backend": a.backend, "examples_per_s": a.batch / dt, "seconds_per_batch": dt,
            "peak_mib": peak, "edges": g.n_edges, "checksum": float(scores.abs().sum())}


def run(shape="pythia-160m", device="cpu", batch=2, length=50, steps=5, repeats=2,
        dtype="float32", threads=1) -> dict:
    res = {}
    for backend in ("hooks", "nnsight"):
        cmd = [sys.executable, __file__, "--child", "--backend", backend, "--shape", shape,
               "--device", device, "--batch", str(batch), "--length", str(length),
               "--steps", str(steps), "--repeats", str(repeats), "--dtype", dtype,
               "--threads", str(threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        res[backend] = json.loads(out.strip().splitlines()[-1])
    h, n = res["hooks"], res["nnsight"]
    return {"shape": shape, "device": device, "dtype": dtype, "batch": batch,
            "threads": threads if device == "cpu" else None,
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "length": length, "ig_steps": steps, "edges": h["edges"],
            "hooks_examples_per_s": round(h["examples_per_s"], 3),
            "nnsight_examples_per_s": round(n["examples_per_s"], 3),
            "hooks_peak_mib": round(h["peak_mib"]), "nnsight_peak_mib": round(n["peak_mib"]),
            "nnsight_overhead_pct": round(100 * (h["examples_per_s"] / n["examples_per_s"] - 1), 1),
            "same_scores": abs(h["checksum"] - n["checksum"]) <= 1e-4 * abs(h["checksum"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="pythia-160m", choices=SHAPES)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--length", type=int, default=50)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--backend", default="hooks")
    ap.add_argument("--threads", type=int, default=1, help="torch threads on CPU (the rule's)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a)))
        return
    r = run(a.shape, a.device, a.batch, a.length, a.steps, a.repeats, a.dtype, a.threads)
    for k, v in r.items():
        print(f"{k:>24}: {v}")


if __name__ == "__main__":
    main()
