"""Divergence points: the batched computation (vermem.data.divergence.divergence_points)
against the naive definition (one generation per prefix length per sample).

    python benchmarks/divergence.py [--results results] [--n 40]

Runs on the memorized samples of a finished default run (else on the organism-shaped
random model's own greedy text). Prints samples per second, generation calls, the
speed-up, and whether both give identical divergence points.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl
import torch
from common import SHAPES, model_for, timed

from vermem.data import divergence, labels


def run(results: Path, n: int, prefix: int, cont: int, batch_size: int = 64,
        device: str = "cpu", shape: str | None = None) -> dict:
    model, _, what = model_for(results, device, shape)
    lab = results / "labels" / "organism.parquet"
    if lab.is_file() and "trained" in what:
        df = pl.read_parquet(lab).filter(pl.col("label") == "memorized").head(n)
        fulls = [a + b for a, b in zip(df["prefix"].to_list(), df["continuation"].to_list(),
                                       strict=True)]
        prefix = len(fulls[0]) - len(df["continuation"][0])
    else:
        g = torch.Generator().manual_seed(0)
        starts = torch.randint(1, model.config.vocab_size, (n, 4), generator=g).to(device)
        fulls = torch.cat([starts, labels.greedy(model, starts, prefix + cont - 4)], 1).tolist()
    fast, t_fast = timed(divergence.divergence_points, model, fulls, prefix, batch_size)
    slow, t_slow = timed(lambda: [divergence.divergence_naive(model, f, prefix) for f in fulls])
    return {"model": what, "device": device, "samples": len(fulls),
            "samples_per_s": round(len(fulls) / t_fast, 1),
            "naive_samples_per_s": round(len(fulls) / t_slow, 2),
            "speedup": round(t_slow / t_fast, 1),
            "generation_calls": sum(r.generations for r in fast),
            "naive_generation_calls": sum(r.generations for r in slow),
            "same_points": [r.d for r in fast] == [r.d for r in slow]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--prefix", type=int, default=32)
    ap.add_argument("--continuation", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shape", choices=SHAPES, help="a random model of this shape "
                    "(default: the trained organism of a finished run)")
    a = ap.parse_args()
    for k, v in run(a.results, a.n, a.prefix, a.continuation, device=a.device,
                    shape=a.shape).items():
        print(f"{k:>24}: {v}")


if __name__ == "__main__":
    main()
