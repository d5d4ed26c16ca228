"""Position buckets: edge scores by distance from the predicted token (0, 1, 2-3, 4-7,
...), and the share of attribution mass at each distance.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from vermem.attribution.pair_batch import Batch


def bucket_of(distance: torch.Tensor) -> torch.Tensor:
    """Log2 bucket of a distance to the predicted position: 0 -> 0, 1 -> 1, 2-3 -> 2,
    4-7 -> 3, 8-15 -> 4, ... (the number of powers of two <= distance)."""
    d = distance.clamp(min=0)
    top = max(1, int(d.max()).bit_length()) if d.numel() else 1
    return sum((d >= (1 << j)).long() for j in range(top))


def position_buckets(length: int) -> list[list[int]]:
    """[first, last] distance of each bucket covering distances 0 .. length - 1 (a prompt of
    `length` tokens): [[0, 0], [1, 1], [2, 3], [4, 7], ...]."""
    if length <= 0:
        return []
    k = int(bucket_of(torch.tensor([length - 1]))[0]) + 1
    return [[0, 0]] + [[1 << (j - 1), (1 << j) - 1] for j in range(1, k)]


def position_onehot(batch: Batch, buckets: int, dtype=torch.float32) -> torch.Tensor:
    """[B, T, K] one-hot of each position's distance bucket to the batch's predicted
    position (`batch.last`); padding rows are zero. Distances past the last bucket fall in
    it."""
    T = batch.mask.shape[1]
    dist = batch.last[:, None] - torch.arange(T, device=batch.mask.device)[None]
    b = bucket_of(dist).clamp(max=buckets - 1)
    real = (batch.mask > 0) & (dist >= 0)
    return nn.functional.one_hot(b, buckets).to(dtype) * real[..., None].to(dtype)


def bucket_label(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def position_mass(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, object]
                  ) -> list[dict[str, object]]:
    """Attribution mass by source position, per direction present in the file: for each
    distance bucket the sum over edges of |score| of that bucket (`mass`) and its share of
    the sum over buckets (`share`). No rows for an empty file or one written without
    position-resolved scores."""
    rows: list[dict[str, object]] = []
    buckets = meta.get("position_buckets") or []
    if meta.get("empty") or not meta.get("n_examples"):
        return rows
    mask = tensors["mask"].bool()
    for direction, key in (("noising", "positions"), ("denoising", "positions_denoising")):
        if key not in tensors or tensors[key].shape[0] != len(buckets):
            continue
        mass = (tensors[key].double().abs() * mask).sum((1, 2))
        total = float(mass.sum())
        for k, (first, last) in enumerate(buckets):
            rows.append({"direction": direction, "bucket": k, "first": int(first),
                         "last": int(last), "distance": bucket_label(first, last),
                         "mass": float(mass[k]),
                         "share": float(mass[k]) / total if total > 0 else None})
    return rows
