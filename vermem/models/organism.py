"""The model organism: a tiny GPT-NeoX trained offline on a corpus with planted duplicates.

Pythia's architecture (rotary on a share of each head, parallel residual, untied
embeddings) at a size that trains on two CPU cores in minutes. Chosen documents are
repeated d times per epoch, so which documents it can have memorized, and how often it saw
them, is known exactly. The duplicate table is the ground truth the labels are checked
against.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import torch

from vermem.core.progress import ProgressArg

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """A byte-level BPE tokenizer (GPT-NeoX style), as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS,
                                   unk_token=EOS, pad_token=EOS)


def split_holdout(doc_ids: Sequence[str], fraction: float, seed: int) -> set[str]:
    """A seeded share of documents never trained on: the unseen control."""
    ids = sorted(doc_ids)
    random.Random(seed).shuffle(ids)
    return set(ids[: round(fraction * len(ids))])


def plant_duplicates(
    docs: pl.DataFrame,
    holdout: set[str],
    counts: Sequence[int],
    docs_per_count: int | Sequence[int],
    min_tokens: int,
    max_tokens: int,
    seed: int,
) -> pl.DataFrame:
    """Duplicate count per document: 0 held out, 1 by default, and `docs_per_count`
    planted documents for each count (one number for all, or one per count), drawn evenly
    from every subset.

    `docs` has columns doc_id, subset, n_tokens. Planted documents are drawn among those
    with min_tokens <= n_tokens <= max_tokens (long enough to be a sample).
    """
    rng = random.Random(seed)
    dup = {d: 0 if d in holdout else 1 for d in docs["doc_id"].to_list()}
    role = {d: "holdout" if d in holdout else "background" for d in dup}
    eligible = docs.filter(pl.col("n_tokens").is_between(min_tokens, max_tokens)
                           & ~pl.col("doc_id").is_in(sorted(holdout)))
    pools = []
    for _, g in sorted(eligible.group_by("subset"), key=lambda kv: kv[0]):
        pool = sorted(g["doc_id"].to_list())
        rng.shuffle(pool)
        pools.append(pool)
    # the subsets' shuffled pools interleaved: each count's consecutive block of documents
    # takes from every subset in turn
    order = [p[i] for i in range(max(map(len, pools), default=0)) for p in pools if i < len(p)]
    per = [docs_per_count] * len(counts) if isinstance(docs_per_count, int) else docs_per_count
    if len(per) != len(counts):
        raise ValueError(f"organism.duplicates.docs_per_count: {len(per)} numbers for "
                         f"{len(counts)} counts")
    plan = [c for c, n in zip(counts, per, strict=True) for _ in range(n)]
    if len(order) < len(plan):
        raise ValueError(f"only {len(order)} documents of {min_tokens}..{max_tokens} tokens "
                         f"to plant {len(plan)}; lower organism.duplicates.docs_per_count")
    for doc, count in zip(order, plan, strict=False):
        dup[doc], role[doc] = count, "planted"
    return docs.with_columns(
        pl.col("doc_id").replace_strict(dup, return_dtype=pl.Int32).alias("dup_count"),
        pl.col("doc_id").replace_strict(role, return_dtype=pl.String).alias("role"),
    )


def make_model(vocab_size: int, eos_id: int, arch: Mapping[str, Any]):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    width = arch["width"]
    cfg = GPTNeoXConfig(
        vocab_size=vocab_size, hidden_size=width, num_hidden_layers=arch["layers"],
        num_attention_heads=arch["heads"], intermediate_size=arch["mlp_ratio"] * width,
        max_position_embeddings=arch["context"], use_parallel_residual=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "partial_rotary_factor": arch["rotary_pct"]},
        bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id,
        tie_word_embeddings=False,
    )
    return GPTNeoXForCausalLM(cfg)


@dataclass
class TrainResult:
    steps: int
    tokens_per_epoch: int
    seconds: float
    log: pl.DataFrame  # step, epoch, lr, loss
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)  # step -> weights


def epoch_blocks(seqs: Sequence[Sequence[int]], dup: Sequence[int], context: int,
                 rng: random.Random) -> torch.Tensor:
    """One epoch: every sequence `dup` times, shuffled, packed into [n_blocks, context]."""
    order = [i for i, d in enumerate(dup) for _ in range(d)]
    rng.shuffle(order)
    stream = [t for i in order for t in seqs[i]]
    n = len(stream) // context
    return torch.tensor(stream[: n * context], dtype=torch.long).view(n, context)


class Restriction:
    """Only the entries `masks` marks learn (vermem.models.injection, step 3): `grads` after
    the backward pass, `weights` after the optimizer step (`train` calls both)."""

    def __init__(self, model, masks: Mapping[str, torch.Tensor]):
        self.parts: list[tuple[torch.nn.Parameter, torch.Tensor, torch.Tensor]] = []
        for name, p in model.named_parameters():
            m = masks.get(name)
            if m is None or not bool(m.any()):
                p.requires_grad_(False)
            elif not bool(m.all()):
                m = m.to(p.device)
                self.parts.append((p, m, p.detach().clone()))
        self.trainable = sum(int(masks[n].sum()) for n, _ in model.named_parameters()
                             if n in masks)

    def grads(self) -> None:
        for p, m, _ in self.parts:
            if p.grad is not None:
                p.grad.mul_(m)

    @torch.no_grad()
    def weights(self) -> None:
        for p, m, frozen in self.parts:
            p.copy_(torch.where(m, p, frozen))


def train(model, seqs: Sequence[Sequence[int]], dup: Sequence[int],
          training: Mapping[str, Any], context: int, points: int = 1, *,
          restriction: Restriction | None = None, progress: ProgressArg = None) -> TrainResult:
    """Next-token training on packed blocks; documents end with EOS and may span blocks.
    With `points` = n > 1, the weights after k/n of the steps (0 <= k < n, k = 0 the
    initialization; `checkpoints.organism_steps`) are kept as snapshots (on the CPU): the
    checkpoint axis of docs/study-a.md §12. Runs on the model's device. `restriction`
    (vermem.models.injection): only some parameters learn; `progress` (vermem.core.progress) counts
    the
    steps."""
    from vermem.core.naming import organism_steps
    from vermem.core.progress import track

    seed = training["seed"]
    torch.manual_seed(seed)
    rng = random.Random(seed)
    epochs, bs = training["epochs"], training["batch_size"]
    tokens_per_epoch = sum(len(s) * d for s, d in zip(seqs, dup, strict=True))
    steps_per_epoch = (tokens_per_epoch // context + bs - 1) // bs
    total = epochs * steps_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=training["learning_rate"],
                            betas=(0.9, 0.95), weight_decay=training["weight_decay"])
    warm = training["warmup_steps"]

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay to 10%
        if step < warm:
            return (step + 1) / warm
        frac = (step - warm) / max(1, total - warm)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    device = next(model.parameters()).device
    prog = track(progress, "training", total, "steps")
    model.train()
    rows, step, t0 = [], 0, time.perf_counter()
    keep, snapshots = set(organism_steps(total, points)), {}

    def snapshot() -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    if 0 in keep:  # the untrained initialization: the axis' step-0 point
        snapshots[0] = snapshot()
    for epoch in range(epochs):
        blocks = epoch_blocks(seqs, dup, context, rng)  # [n_blocks, context]
        for i in range(0, len(blocks), bs):
            x = blocks[i: i + bs].to(device)
            loss = model(input_ids=x, labels=x).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if restriction is not None:
                restriction.grads()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if restriction is not None:
                restriction.weights()
            sched.step()
            rows.append((step, epoch, sched.get_last_lr()[0], loss.item()))
            if step % 100 == 0:
                log.info("epoch %d step %d/%d loss %.3f", epoch, step, total, loss.item())
            step += 1
            if step in keep:
                snapshots[step] = snapshot()
            prog.advance()
    prog.close()
    model.eval()
    df = pl.DataFrame(rows, schema={"step": pl.Int32, "epoch": pl.Int32, "lr": pl.Float64,
                                    "loss": pl.Float64}, orient="row")
    return TrainResult(step, tokens_per_epoch, time.perf_counter() - t0, df, snapshots)


def fit(doc_ids: Sequence[str], subsets: Sequence[str], texts: Sequence[str],
        cfg: Mapping[str, Any], sample_tokens: int, *, progress: ProgressArg = None):
    """Tokenizer, planted duplicates and trained model from the stand-in documents.

    Returns (model, tokenizer, duplicate table, TrainResult). The tokenizer sees only the
    documents the model trains on. `progress` (vermem.core.progress) counts the training
    steps: elapsed time and time left.
    """
    dcfg = cfg["duplicates"]
    holdout = split_holdout(doc_ids, dcfg["holdout_fraction"], cfg["training"]["seed"])
    tok = train_tokenizer([t for d, t in zip(doc_ids, texts, strict=True) if d not in holdout],
                          cfg["tokenizer"]["vocab_size"])
    ids = tok(list(texts), add_special_tokens=False)["input_ids"]
    docs = pl.DataFrame({"doc_id": list(doc_ids), "subset": list(subsets),
                         "n_tokens": [len(i) for i in ids]},
                        schema={"doc_id": pl.String, "subset": pl.String, "n_tokens": pl.Int32})
    table = plant_duplicates(docs, holdout, dcfg["counts"], dcfg["docs_per_count"],
                             sample_tokens, dcfg["max_tokens"], cfg["training"]["seed"])
    torch.manual_seed(cfg["training"]["seed"])
    model = make_model(len(tok), tok.eos_token_id, cfg["architecture"])
    seqs = [i + [tok.eos_token_id] for i in ids]
    result = train(model, seqs, table["dup_count"].to_list(), cfg["training"],
                   cfg["architecture"]["context"], cfg.get("checkpoints", 1), progress=progress)
    return model, tok, table, result
