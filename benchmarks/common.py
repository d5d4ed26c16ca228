"""Shared by the benchmark scripts: the model and samples they run on."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vermem import io, models, organism  # noqa: E402


def organism_or_random(results: Path, device: str, seed: int = 0):
    """The trained organism of a finished default run, else a random model of its shape.
    Returns (model, samples as [N, P + C] ids or None, description)."""
    record = results / "models" / "organism" / "model.json"
    samples = results / "samples" / "organism.parquet"
    if record.is_file() and samples.is_file():
        import polars as pl

        rec = io.read_json(record)
        rec["path"] = str(results.parent / rec["path"])
        model, _ = models.load(rec, device)
        df = pl.read_parquet(samples)
        ids = [a + b for a, b in zip(df["prefix"].to_list(), df["continuation"].to_list(),
                                     strict=True)]
        return model, torch.tensor(ids), f"trained organism ({results}), its own samples"
    torch.manual_seed(seed)
    model = organism.make_model(2048, 0, {"layers": 4, "width": 128, "heads": 4, "mlp_ratio": 4,
                                          "rotary_pct": 0.25, "context": 128})
    return model.to(device).eval(), None, "random organism-shaped model (no results/ found)"


def timed(fn, *args, **kwargs):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t
