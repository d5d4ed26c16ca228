"""A batch of clean and corrupt prompts, padded and aligned at the predicted token, and
the metric (`METRICS`) that attribution and circuit evaluation read from its logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple

import torch

from vermem.attribution.adapters import _acc

METRICS = ("logit_diff", "wrong_logit", "answer_logprob")


# -- metrics ---------------------------------------------------------------------------------

class Pairs(NamedTuple):
    """Contrastive pairs as token ids, one entry per pair in each field: the clean and the
    corrupt prompt, the answer token (clean's next token) and the wrong one."""
    clean: Sequence[Sequence[int]]
    corrupt: Sequence[Sequence[int]]
    answer: Sequence[int]
    wrong: Sequence[int]


@dataclass
class Batch:
    clean: torch.Tensor       # [B, T] right-padded token ids
    corrupt: torch.Tensor     # [B, T]
    mask: torch.Tensor        # [B, T] attention mask (1 = real token)
    last: torch.Tensor        # [B] index of the last real token
    answer: torch.Tensor      # [B]
    wrong: torch.Tensor       # [B]

    @classmethod
    def make(cls, clean: Sequence[Sequence[int]], corrupt: Sequence[Sequence[int]],
             answer: Sequence[int], wrong: Sequence[int], device, pad: int = 0) -> Batch:
        T = max(map(len, clean))
        lens = [len(c) for c in clean]
        if any(len(a) != len(b) for a, b in zip(clean, corrupt, strict=True)):
            raise ValueError("clean and corrupt prompts must have equal lengths")

        def padded(rows):
            return torch.tensor([list(r) + [pad] * (T - len(r)) for r in rows], device=device)

        m = torch.tensor([[1] * n + [0] * (T - n) for n in lens], device=device)
        return cls(padded(clean), padded(corrupt), m, torch.tensor(lens, device=device) - 1,
                   torch.tensor(list(answer), device=device),
                   torch.tensor(list(wrong), device=device))

    def repeated(self, reps: int) -> Batch:
        """The batch `reps` times over along its rows (as IG steps and tiled circuits stack
        their runs)."""
        if reps == 1:
            return self
        return Batch(*(getattr(self, f.name).repeat(reps, *[1] * (getattr(self, f.name).dim()
                                                                   - 1)) for f in fields(self)))


# A metric of the circuit and attribution code: one of METRICS, or a function of (logits
# [N, T, V], batch of N rows: Batch) giving one value per row [N], differentiable for
# attribution. Read `batch.last` for each row's last real position, `batch.answer` and
# `batch.wrong` for its tokens; the rows of an IG or tiled run are the batch repeated
# (`Batch.repeated`), so the function sees as many batch rows as logits.
Metric = str | Callable[[torch.Tensor, Batch], torch.Tensor]


def metric(logits: torch.Tensor, batch: Batch, kind: Metric) -> torch.Tensor:
    """Per-example metric at the last real position. logits [N, T, V] with N a multiple
    of the batch (IG steps stacked step-major). -> [N]. `kind`: a name of METRICS or a
    function (`Metric`)."""
    reps = logits.shape[0] // batch.last.shape[0]
    if callable(kind):
        out = kind(logits, batch.repeated(reps))
        if out.shape != (logits.shape[0],):
            raise ValueError(f"a metric function must give one value per row: "
                             f"{tuple(out.shape)} for {logits.shape[0]} rows")
        return out
    last, ans, wr = batch.last.repeat(reps), batch.answer.repeat(reps), batch.wrong.repeat(reps)
    lg = _acc(logits[torch.arange(logits.shape[0], device=logits.device), last])  # [N, V]
    a = lg.gather(1, ans[:, None])[:, 0]
    w = lg.gather(1, wr[:, None])[:, 0]
    if kind == "logit_diff":
        return a - w
    if kind == "wrong_logit":
        return w
    if kind == "answer_logprob":
        return a - lg.logsumexp(-1)
    raise ValueError(f"unknown metric {kind!r}; one of {METRICS}")


def swapped(batch: Batch) -> Batch:
    """The batch with clean and corrupt exchanged (the de-noising direction's run is the
    corrupt prompt); the answer, the wrong token and the metric stay."""
    return Batch(batch.corrupt, batch.clean, batch.mask, batch.last, batch.answer, batch.wrong)
