"""Memorization labels by greedy decoding (docs/study-a.md §2).

All samples share one prefix length P, so a batch needs no padding: the prefixes run in
one forward pass that fills the KV cache, then C single-token steps extend it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
import torch

from vermem.core.progress import ProgressArg, track

SCORES = ("match_fraction", "exact_prefix", "extractable")


@torch.no_grad()
def greedy(model, prompts: torch.Tensor, n_new: int) -> torch.Tensor:
    """Greedy continuation of equal-length prompts [B, P] -> [B, n_new], with a KV cache."""
    out = model(input_ids=prompts, use_cache=True)
    nxt = out.logits[:, -1].argmax(-1)  # [B]
    gen = [nxt]
    for _ in range(n_new - 1):
        out = model(input_ids=nxt[:, None], past_key_values=out.past_key_values,
                    use_cache=True)
        nxt = out.logits[:, -1].argmax(-1)
        gen.append(nxt)
    return torch.stack(gen, dim=1)


def scores(generated: torch.Tensor, true: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-row match fraction, exact-prefix length and k-extractable flag. [B, C] -> [B]"""
    eq = generated == true
    return {
        "match_fraction": eq.float().mean(1),
        "exact_prefix": eq.int().cumprod(1).sum(1),
        "extractable": eq.all(1),
    }


def generate_all(model, prefixes: list[list[int]], n_new: int, batch_size: int,
                 device: torch.device, *, progress: ProgressArg = None) -> torch.Tensor:
    """Greedy generations for every prefix, in batches, on `device`. -> [N, n_new] (cpu).
    `progress`: samples done (vermem.core.progress)."""
    outs = []
    with track(progress, "labels", len(prefixes), "samples") as p:
        for i in range(0, len(prefixes), batch_size):
            x = torch.tensor(prefixes[i: i + batch_size], dtype=torch.long, device=device)
            outs.append(greedy(model, x, n_new).cpu())
            p.advance(x.shape[0])
    return torch.cat(outs) if outs else torch.empty(0, n_new, dtype=torch.long)


def threshold_for(subset: str, thresholds: Mapping[str, Any]) -> tuple[float, float]:
    t = thresholds.get("per_subset", {}).get(subset, thresholds["default"])
    return float(t["high"]), float(t["low"])


def label_samples(samples: pl.DataFrame, generated: torch.Tensor, score: str,
                  thresholds: Mapping[str, Any], continuation_tokens: int) -> pl.DataFrame:
    """The samples with their generation, the three scores and a label from `score`."""
    # [N, C] also when N = 0 (a subset whose documents are all too short)
    true = torch.tensor(samples["continuation"].to_list(), dtype=torch.long).reshape(
        -1, continuation_tokens)
    s = scores(generated, true)
    df = samples.with_columns(
        pl.Series("generation", generated.tolist(), dtype=pl.List(pl.Int32)),
        pl.Series("match_fraction", s["match_fraction"].tolist(), dtype=pl.Float64),
        pl.Series("exact_prefix", s["exact_prefix"].tolist(), dtype=pl.Int32),
        pl.Series("extractable", s["extractable"].tolist(), dtype=pl.Boolean),
    )
    value = {"match_fraction": pl.col("match_fraction"),
             "exact_prefix": pl.col("exact_prefix") / continuation_tokens,
             "extractable": pl.col("extractable").cast(pl.Float64)}[score]
    hi = pl.col("subset").map_elements(lambda s: threshold_for(s, thresholds)[0],
                                       return_dtype=pl.Float64)
    lo = pl.col("subset").map_elements(lambda s: threshold_for(s, thresholds)[1],
                                       return_dtype=pl.Float64)
    return df.with_columns(
        pl.when(value >= hi).then(pl.lit("memorized"))
        .when(value <= lo).then(pl.lit("non-memorized"))
        .otherwise(pl.lit("ambiguous")).alias("label")
    )


LABELS = ("memorized", "ambiguous", "non-memorized")


def summarize(labels: pl.DataFrame, subsets: Sequence[str] = ()) -> dict[str, Any]:
    """Label counts per subset (every one of `subsets` and of the table, each label with
    its count, n = 0 said rather than left out) and, where duplicate counts are known, the
    share of samples memorized (k-extractable) per duplicate count."""
    counts = labels.group_by("subset", "label").len().sort("subset", "label")
    per_subset = {s: dict.fromkeys(LABELS, 0)
                  for s in sorted({*subsets, *labels["subset"].to_list()})}
    for subset, label, n in counts.iter_rows():
        per_subset[subset][label] = n
    out: dict[str, Any] = {"samples": labels.height, "labels_per_subset": per_subset}
    known = labels.filter(pl.col("dup_count").is_not_null())
    if known.height:
        by = (known.group_by("dup_count").agg(
            pl.len().alias("n"), pl.col("extractable").mean().alias("extractable_share"),
            pl.col("match_fraction").mean().alias("mean_match_fraction"))
            .sort("dup_count"))
        out["by_dup_count"] = by.to_dicts()
    return out
