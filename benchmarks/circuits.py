"""Circuit evaluation throughput: many circuits per batched forward pass (each batch row
carrying its own circuit's patch mask) against one circuit per forward, on the organism
(trained if a finished run is found, else its shape) and a Pythia-160m shape (random
weights, no hub). An evaluation is one circuit run on every pair of the set.

    python benchmarks/circuits.py [--shape pythia-160m] [--device cpu] [--pairs 4]
                                  [--length 64] [--circuits 24] [--per-forward 16]

Prints evaluations per second both ways, the speed-up, and the largest difference between
the two ways' per-pair metrics (they must agree).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import SHAPES, model_for, timed  # noqa: E402

from vermem import circuits as C  # noqa: E402
from vermem.graph import Graph, Shape  # noqa: E402


def run(shape: str | None = "pythia-160m", device: str = "cpu", pairs: int = 4,
        length: int = 64, n_circuits: int = 24, per_forward: int = 16,
        results: Path = Path("results")) -> dict:
    model, _, desc = model_for(results, device, shape)
    g = Graph(Shape.from_config(model.config))
    gen = torch.Generator().manual_seed(0)
    V = model.config.vocab_size
    clean = torch.randint(1, V, (pairs, length), generator=gen)
    corrupt = clean.clone()
    corrupt[:, -8:] = torch.randint(1, V, (pairs, 8), generator=gen)
    ev = C.EvalSet.make(model, clean.tolist(), corrupt.tolist(), [1] * pairs, [2] * pairs,
                        batch_size=pairs)
    # the mix of a circuit run: both placements, curve sizes, random seeds, one direction
    sizes = C.log_sizes(g.n_edges, max(2, n_circuits // 4))
    jobs = [(C.Mode("noising", p, "resample"), C.circuit(g, C.random_ranking(g, s), k))
            for s, k in enumerate(sizes) for p in ("outside", "inside")][:n_circuits]
    C.evaluate_many(model, g, ev, jobs[:2], per_forward=2)  # warm-up
    one, t1 = timed(C.evaluate_many, model, g, ev, jobs, per_forward=1)
    many, tb = timed(C.evaluate_many, model, g, ev, jobs, per_forward=per_forward)
    diff = max(float((a.metric - b.metric).abs().max()) for a, b in zip(one, many, strict=True))
    return {"model": desc, "edges": g.n_edges, "pairs": pairs, "length": length,
            "circuits": len(jobs), "per_forward": per_forward,
            "evals_per_s_batched": round(len(jobs) / tb, 2),
            "evals_per_s_one_at_a_time": round(len(jobs) / t1, 2),
            "speedup": round(t1 / tb, 2), "max_abs_diff": diff}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="pythia-160m", choices=[*SHAPES, "trained"],
                    help="'trained': the organism of a finished run (else its shape)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--circuits", type=int, default=24)
    ap.add_argument("--per-forward", type=int, default=16)
    ap.add_argument("--results", type=Path, default=Path("results"))
    a = ap.parse_args()
    r = run(None if a.shape == "trained" else a.shape, a.device, a.pairs, a.length,
            a.circuits, a.per_forward, a.results)
    for k, v in r.items():
        print(f"{k:>26}: {v}")


if __name__ == "__main__":
    main()
