"""Labelling throughput: batched greedy decoding with a KV cache (vermem.data.labels) against a
naive per-sample Hugging Face `generate` loop, same model, same samples.

    python benchmarks/labels.py [--results results] [--batch-size 64] [--n 512] [--naive-n 64]

Prints generated tokens per second for both and their ratio (goal: >= 10x on CPU at
batch 64), and checks that both produce the same tokens.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import SHAPES, model_for, timed

from vermem.data import labels


def naive(model, prompts: torch.Tensor, n_new: int) -> torch.Tensor:
    """One `generate` call per sample: greedy, exactly n_new tokens, EOS neither stopping
    nor suppressed (a memorization score compares all C tokens)."""
    eos, model.generation_config.eos_token_id = model.generation_config.eos_token_id, None
    try:
        out = [model.generate(p[None], max_new_tokens=n_new, do_sample=False, pad_token_id=0,
                              attention_mask=torch.ones_like(p[None]))[0, p.numel():]
               for p in prompts]
    finally:
        model.generation_config.eos_token_id = eos
    return torch.stack(out)


def run(results: Path, batch_size: int, n: int, naive_n: int, prefix: int, cont: int,
        device: str = "cpu", shape: str | None = None) -> dict:
    model, data, what = model_for(results, device, shape)
    if data is None:
        g = torch.Generator().manual_seed(0)
        data = torch.randint(1, model.config.vocab_size, (n, prefix + cont), generator=g)
    data = data[:n].to(device)
    prompts = data[:, :prefix]
    fast, t_fast = timed(labels.generate_all, model, prompts.tolist(), cont, batch_size,
                         torch.device(device))
    with torch.no_grad():
        slow, t_slow = timed(naive, model, prompts[:naive_n], cont)
    agree = bool(torch.equal(fast[:naive_n], slow.cpu()))
    fast_tps = prompts.shape[0] * cont / t_fast
    slow_tps = naive_n * cont / t_slow
    return {"model": what, "device": device, "batch_size": batch_size,
            "samples": prompts.shape[0], "naive_samples": naive_n,
            "tokens_per_s": round(fast_tps, 1), "naive_tokens_per_s": round(slow_tps, 1),
            "speedup": round(fast_tps / slow_tps, 1), "same_tokens": agree}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--naive-n", type=int, default=64)
    ap.add_argument("--prefix", type=int, default=32)
    ap.add_argument("--continuation", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shape", choices=SHAPES, help="a random model of this shape "
                    "(default: the trained organism of a finished run)")
    a = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    r = run(a.results, a.batch_size, a.n, a.naive_n, a.prefix, a.continuation, a.device,
            a.shape)
    for k, v in r.items():
        print(f"{k:>20}: {v}")


if __name__ == "__main__":
    main()
