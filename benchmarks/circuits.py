"""Circuit evaluation throughput on realistic pairs: the cost of exact edge patching
(patched forwards against unpatched forwards of the same batches) and evaluations per
second by circuits per forward (each batch row carrying its own circuit's patch mask)
against one circuit per forward. An evaluation is one circuit run on every pair of a set.

    python benchmarks/circuits.py [--shapes organism pythia-160m] [--device cpu]
                                  [--threads 1] [--circuits 16] [--results results]

Models: the trained organism of a finished run (`--results`, else its shape, random) and
a random Pythia-160m shape (no hub); on a GPU Pythia-160m and Pythia-1b shapes. Pairs: the
default run's evaluation pairs (30 per task and subset; the first task and subset is
timed, every one's padding share is printed), else synthetic pairs of the same lengths.
Prints the padding share (padded tokens / all tokens of the batches), the threads used and
os.getloadavg() next to the figures, and the largest difference between the ways' metrics.
Times are process CPU time on CPU (robust to other load at one thread), wall time on a GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import make_model, organism_model  # noqa: E402

from vermem.attribution import patching  # noqa: E402
from vermem.attribution.graph import Graph, Shape  # noqa: E402
from vermem.circuits import evaluation  # noqa: E402

MAX_PAIRS = {"selection": 16, "evaluation": 30}  # the default config's
# lengths of one default evaluation set (branch_comparison / StdLib Docstrings), for
# synthetic pairs when no finished run is found
LENGTHS = [3, 3, 3, 4, 4, 5, 5, 5, 5, 5, 6, 6, 7, 7, 7, 8, 8, 8, 9, 9, 9, 9, 9, 10, 11, 13,
           13, 16, 18, 19]
PER_FORWARD = (1, 4, 8, 16)


def pair_sets(results: Path, vocab: int) -> tuple[dict[str, tuple], str]:
    """{task / subset: (clean, corrupt, answer, wrong, doc ids)} of the default run's
    evaluation pairs, else one synthetic set with LENGTHS; and where they come from."""
    path = results / "pairs" / "organism.parquet"
    if path.is_file():
        import polars as pl

        df = pl.read_parquet(path)
        out = {}
        for task, subset in sorted(set(zip(df["task"], df["subset"], strict=True))):
            _, q = evaluation.split_sets(df, task, subset, str(path), MAX_PAIRS, 0)
            out[f"{task} / {subset}"] = tuple(q[c].to_list() for c in
                                              ("clean", "corrupt", "answer", "wrong", "doc_id"))
        return out, f"default run's evaluation pairs ({path})"
    gen = torch.Generator().manual_seed(0)
    clean = [torch.randint(1, vocab, (n,), generator=gen).tolist() for n in LENGTHS]
    corrupt = [c[:-1] + [(c[-1] + 1) % vocab] for c in clean]
    n = len(clean)
    return ({"synthetic": (clean, corrupt, [1] * n, [2] * n, [str(i) for i in range(n)])},
            "synthetic pairs with the default's lengths")


def jobs_for(g: Graph, n: int) -> list[tuple[evaluation.Mode, torch.Tensor]]:
    """The mix of a circuit run: the main mode (outside placement: most edges patched) and
    inside, log-spaced sizes, seeded random circuits, one direction."""
    sizes = evaluation.log_sizes(g.n_edges, max(2, n // 2))
    return [
        (
            evaluation.Mode("noising", p, "resample"),
            evaluation.circuit(g, evaluation.random_ranking(g, s), k),
        )
        for s, k in enumerate(sizes)
        for p in ("outside", "inside")
    ][:n]


def clock() -> float:
    """Process CPU time on CPU (at one thread, what other load on a shared machine does
    not stretch), wall time where a GPU computes."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def best_of(fn, repeats: int) -> float:
    """Least time of `repeats` calls (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


def forward_cost(model, g: Graph, ev: evaluation.EvalSet, jobs, tile: int, repeats: int
                 ) -> tuple[float, float]:
    """(patched, unpatched) seconds of one pass over the EvalSet's batches, each batch
    tiled `tile` times with the jobs' masks (clean prompts, corrupt replacement)."""
    masks = [evaluation._plan(g, m, e)[0] for m, e in jobs[:tile]]
    masks += masks[:1] * (tile - len(masks))
    rows = torch.stack(masks)

    def patched():
        for b, corrupt in zip(ev.batches, ev.corrupt, strict=True):
            patching.patched_logits(model, g, b, rows, corrupt, b.clean.repeat(tile, 1))

    @torch.no_grad()
    def plain():
        for b in ev.batches:
            model(input_ids=b.clean.repeat(tile, 1), attention_mask=b.mask.repeat(tile, 1))

    best = [float("inf"), float("inf")]
    for _ in range(repeats):  # interleaved: both see the same load
        best = [min(b, best_of(f, 1)) for b, f in zip(best, (patched, plain), strict=True)]
    return best[0], best[1]


def run(shape: str | None, device: str, results: Path, n_circuits: int | None = None,
        max_pairs: int | None = None, repeats: int | None = None,
        max_padding: float = evaluation.MAX_PADDING) -> dict:
    """Every figure of one model (shape None: the organism) on one device. Defaults: 16
    circuits on every pair, best of 5; a Pythia shape on CPU 8 circuits on 8 pairs, timed
    once (the whole CPU run about 2 minutes at one thread)."""
    big = shape not in (None, "organism", "pythia-70m") and device == "cpu"
    n_circuits = n_circuits or (8 if big else 16)
    max_pairs = max_pairs or (8 if big else None)
    repeats = repeats or (1 if big else 5)
    if shape is None:
        model, desc = organism_model(results, device)
    else:
        model, desc = make_model(shape, device), f"random {shape}-shaped model"
    g = Graph(Shape.from_config(model.config))
    sets, where = pair_sets(results, model.config.vocab_size)
    name = next(iter(sets))
    # every set's padding (the organism only: it is the same for every model, and cheap)
    pad = {k: round(evaluation.EvalSet.make(model, *v[:4], batch_size=32, groups=v[4],
                                   max_padding=max_padding).padding, 3)
           for k, v in (sets.items() if shape is None else [])}
    cl, co, an, wr, docs = (x[:max_pairs] for x in sets[name])
    ev = evaluation.EvalSet.make(model, cl, co, an, wr, batch_size=32, groups=docs,
                        max_padding=max_padding)
    jobs = jobs_for(g, n_circuits)
    evaluation.evaluate_many(model, g, ev, jobs[:2], per_forward=2)  # warm-up
    out = {"model": desc, "device": device, "threads": torch.get_num_threads(),
           "clock": "wall" if torch.cuda.is_available() else "process CPU time",
           "edges": g.n_edges, "pairs": where, "timed set": f"{name}, {ev.n} pairs",
           "batches": len(ev.batches), "padding share (timed set)": round(ev.padding, 3),
           **({"padding share (max over sets)": max(pad.values()),
               "padding share (mean over sets)": round(sum(pad.values()) / len(pad), 3)}
              if pad else {})}
    for tile in (1, 8):
        p, u = forward_cost(model, g, ev, jobs, tile, repeats)
        out[f"ms per pass, patched (x{tile} rows)"] = round(1e3 * p, 1)
        out[f"ms per pass, unpatched (x{tile} rows)"] = round(1e3 * u, 1)
        out[f"patched / unpatched time (x{tile} rows)"] = round(p / u, 2)
    ref = None
    for pf in PER_FORWARD:
        res: list = []
        dt = best_of(lambda pf=pf, res=res: res.append(evaluation.evaluate_many(model, g, ev, jobs,
                                                                       per_forward=pf)),
                     repeats)
        got = torch.stack([r.metric for r in res[-1]])
        ref = got if ref is None else ref
        out[f"evaluations/s (circuits_per_forward {pf})"] = round(len(jobs) / dt, 2)
        out["max |metric - one at a time|"] = max(out.get("max |metric - one at a time|", 0.0),
                                                  float((got - ref).abs().max()))
    out["checksum (sum of metrics)"] = round(float(ref.sum()), 6)
    out["loadavg (1, 5, 15 min) at end"] = tuple(round(x, 2) for x in os.getloadavg())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    gpu = torch.cuda.is_available()
    ap.add_argument("--device", default="cuda" if gpu else "cpu")
    ap.add_argument("--shapes", nargs="+", default=None,
                    help="'organism' or SHAPES names (default: organism pythia-160m on "
                         "CPU, pythia-160m pythia-1b on a GPU)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    ap.add_argument("--circuits", type=int, default=None,
                    help="circuits evaluated (default 16; 8 for a Pythia shape on CPU)")
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--max-padding", type=float, default=evaluation.MAX_PADDING,
                    help="EvalSet batches' padding share limit (1: one batch of 32, as before)")
    a = ap.parse_args()
    if a.device == "cpu":
        torch.set_num_threads(a.threads)
    on_gpu = a.device.startswith("cuda")
    shapes = a.shapes or (["pythia-160m", "pythia-1b"] if on_gpu else ["organism", "pythia-160m"])
    print(f"loadavg at start: {os.getloadavg()}, threads {torch.get_num_threads()}", flush=True)
    for shape in shapes:
        r = run(None if shape == "organism" else shape, a.device, a.results, a.circuits,
                max_padding=a.max_padding)
        for k, v in r.items():
            print(f"{k:>42}: {v}")
        print(flush=True)


if __name__ == "__main__":
    main()
