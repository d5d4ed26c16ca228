"""Shared by the benchmark scripts: the model and samples they run on."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vermem.core import files  # noqa: E402
from vermem.models import (
    loading,  # noqa: E402
    organism,  # noqa: E402
)


def random_organism(device: str, seed: int = 0):
    """A randomly initialised model of the organism's shape (the default config's)."""
    torch.manual_seed(seed)
    model = organism.make_model(2048, 0, {"layers": 4, "width": 128, "heads": 4, "mlp_ratio": 4,
                                          "rotary_pct": 0.25, "context": 128})
    return model.to(device).eval()


def organism_model(results: Path, device: str):
    """The trained organism of a finished default run, else a random model of its shape:
    (model, description)."""
    record = results / "models" / "organism" / "model.json"
    if not record.is_file():
        return random_organism(device), "random organism-shaped model (no results/ found)"
    rec = files.read_json(record)
    rec["path"] = str(results.parent / rec["path"])
    return loading.load(rec, device)[0], f"trained organism ({results})"


def organism_or_random(results: Path, device: str, seed: int = 0):
    """The trained organism of a finished default run, else a random model of its shape.
    Returns (model, samples as [N, P + C] ids or None, description)."""
    samples = results / "samples" / "organism.parquet"
    if (results / "models" / "organism" / "model.json").is_file() and samples.is_file():
        import polars as pl

        model, desc = organism_model(results, device)
        df = pl.read_parquet(samples)
        ids = [a + b for a, b in zip(df["prefix"].to_list(), df["continuation"].to_list(),
                                     strict=True)]
        return model, torch.tensor(ids), f"{desc}, its own samples"
    return random_organism(device, seed), None, "random organism-shaped model (no results/ found)"


SHAPES = {  # layers, width, heads (GPT-NeoX, parallel residual, rotary 25%, vocab 50304)
    "pythia-70m": (6, 512, 8),
    "pythia-160m": (12, 768, 12),
    "pythia-410m": (24, 1024, 16),
    "pythia-1b": (16, 2048, 8),
    "organism": (4, 128, 4),
}


def make_model(shape: str, device: str, dtype: torch.dtype = torch.float32):
    """A randomly initialised GPT-NeoX of a real shape (no hub needed)."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    layers, width, heads = SHAPES[shape]
    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=50304 if shape != "organism" else 2048, hidden_size=width,
                        num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=4 * width, use_parallel_residual=True,
                        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                         "partial_rotary_factor": 0.25})
    return GPTNeoXForCausalLM(cfg).to(device=device, dtype=dtype).eval()


def model_for(results: Path, device: str, shape: str | None):
    """The trained organism (shape None) or a random model of `shape`:
    (model, samples [N, P + C] or None, description)."""
    if shape is None:
        return organism_or_random(results, device)
    return make_model(shape, device), None, f"random {shape}-shaped model"


def timed(fn, *args, **kwargs):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t
