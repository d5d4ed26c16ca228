"""Study B: dynamics of memorizing random strings (docs/study-b.md; Speicher et al. 2024).

A random string over the first l lowercase letters is fed one token per letter, after the
model's BOS token, so every letter is predicted; the softmax stays over the full
vocabulary. A fresh copy of the model (pretrained, or the same architecture randomly
initialised) is fully fine-tuned on one string with one optimizer step per epoch, and after
every epoch each position is measured teacher-forced: correct, loss, probability of the
true token, entropy (natural log).

- Phases: guessing (the loss holds at the entropy of the string's own letters, accuracy near
  the best constant guess), then memorization (accuracy climbs to 1 and holds), found from
  the per-epoch curves (`detect_phases`).
- Q2 (`context_recall`): recall at position t with only the last k letters before t, and
  with those k kept while the earlier context is kept, shuffled, resampled from the
  string's distribution, or replaced (every earlier letter by a different one).
- Q3 (`sequential`): K strings one after another on one model copy, forgetting curves of
  the earlier ones and the epochs each one takes, and re-learning of the first.
"""

from __future__ import annotations

import logging
import math
import string as _string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch

from vermem.core.errors import VermemError
from vermem.core.naming import parse_run, string_id
from vermem.core.progress import ProgressArg, track
from vermem.core.stats import censored_median, wilson
from vermem.models import architecture

log = logging.getLogger(__name__)

LETTERS = _string.ascii_lowercase
CONDITIONS = ("kept", "local", "shuffled", "resampled", "replaced")
INITS = ("pretrained", "random")
BYTES_PER_PARAM = 16  # fp32 weights 4 + gradients 4 + AdamW moments 8


class DynamicsError(VermemError, ValueError):
    """A model or tokenizer that cannot take part in Study B; the message names it."""


# ---------------------------------------------------------------- strings and tokens


def entropy(p: Sequence[float]) -> float:
    """Shannon entropy in nats."""
    return float(-sum(x * math.log(x) for x in p if x > 0))


def skewed(l: int, fraction: float, tol: float = 1e-12) -> list[float]:
    """p_i ~ exp(-beta i) over l letters with H(p) = fraction * log(l) (beta by bisection).

    fraction 1 is uniform; smaller fractions put more mass on the first letters.
    """
    if not 0 < fraction <= 1 or l < 2:
        raise ValueError(f"need 0 < fraction <= 1 and l >= 2, got {fraction}, {l}")
    target = fraction * math.log(l)

    def dist(beta: float) -> list[float]:
        w = [math.exp(-beta * i) for i in range(l)]
        s = sum(w)
        return [x / s for x in w]

    if fraction == 1:
        return dist(0.0)
    lo, hi = 0.0, 1.0
    while entropy(dist(hi)) > target:  # H falls monotonically in beta
        hi *= 2
    while hi - lo > tol:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if entropy(dist(mid)) > target else (lo, mid)
    return dist((lo + hi) / 2)


def rng_for(*key: int | float | str) -> np.random.Generator:
    """A generator seeded by a tuple of ints, floats (to 1e-6) and short strings."""
    ints = []
    for k in key:
        if isinstance(k, str):
            ints.extend(ord(c) for c in k)
        elif isinstance(k, float):
            ints.append(int(round(k * 1_000_000)))
        else:
            ints.append(int(k))
    return np.random.default_rng(ints)


def sample_string(p: Sequence[float], n: int, rng: np.random.Generator) -> str:
    """n letters drawn independently from p over the first len(p) letters."""
    idx = rng.choice(len(p), size=n, p=np.asarray(p))
    return "".join(LETTERS[i] for i in idx)


def letter_tokens(tok, l: int, model: str) -> dict[str, int]:
    """Token id of each of the first l letters; each must be one token that round-trips."""
    out = {}
    for c in LETTERS[:l]:
        ids = tok.encode(c, add_special_tokens=False)
        if len(ids) != 1 or tok.decode(ids) != c:
            raise DynamicsError(f"dynamics: model {model}: letter {c!r} is not one token that "
                                f"round-trips (encodes to {ids}, decodes to "
                                f"{tok.decode(ids)!r})")
        out[c] = ids[0]
    return out


def bos_id(tok, model: str) -> int:
    """The token put before every string so that its first letter is predicted too."""
    for t in (tok.bos_token_id, tok.eos_token_id):
        if t is not None:
            return int(t)
    raise DynamicsError(f"dynamics: model {model}: tokenizer has neither a BOS nor an EOS token")


def grid_strings(grid: Mapping[str, Any]) -> pl.DataFrame:
    """Every string of the Q1 grid: one row per (alphabet size, entropy fraction, length,
    seed), seeded per row, with its distribution and entropy."""
    rows = []
    for l in grid["alphabet_sizes"]:
        for f in grid["entropy_fractions"]:
            p = skewed(l, f)
            for n in grid["lengths"]:
                for seed in grid["seeds"]:
                    s = sample_string(p, n, rng_for("q1", l, float(f), n, seed))
                    rows.append(_row("q1", string_id(l, f, n), l, f, n, seed, p, s))
    return _frame(rows)


def sequential_strings(seq: Mapping[str, Any]) -> pl.DataFrame:
    """The K strings of Q3, s1..sK, drawn from one distribution with their own seeds."""
    l, f, n = seq["alphabet_size"], seq["entropy_fraction"], seq["length"]
    p = skewed(l, f)
    rows = [_row("q3", f"q3-{j}", l, f, n, seq["seed"] + j, p,
                 sample_string(p, n, rng_for("q3", l, float(f), n, seq["seed"] + j)))
            for j in range(seq["strings"])]
    return _frame(rows)


def _row(study, sid, l, f, n, seed, p, s) -> dict[str, Any]:
    counts = [s.count(c) for c in LETTERS[:l]]
    return {"study": study, "string_id": sid, "alphabet_size": l, "entropy_fraction": float(f),
            "length": n, "seed": seed, "probs": list(p), "entropy": entropy(p),
            "max_p": max(p), "empirical_entropy": entropy([c / n for c in counts]),
            "guess_accuracy": max(counts) / n, "text": s}


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={
        "study": pl.String, "string_id": pl.String, "alphabet_size": pl.Int32,
        "entropy_fraction": pl.Float64, "length": pl.Int32, "seed": pl.Int32,
        "probs": pl.List(pl.Float64), "entropy": pl.Float64, "max_p": pl.Float64,
        "empirical_entropy": pl.Float64, "guess_accuracy": pl.Float64, "text": pl.String})


def tokenize_strings(strings: pl.DataFrame, tok, model: str) -> pl.DataFrame:
    """Add token ids (one per letter), the letters' ids and the BOS id; check round trips."""
    l_max = int(strings["alphabet_size"].max())
    ids = letter_tokens(tok, l_max, model)
    bos = bos_id(tok, model)
    token_ids = [[ids[c] for c in s] for s in strings["text"]]
    for s, t in zip(strings["text"], token_ids, strict=True):
        if tok.decode(t) != s:
            raise DynamicsError(f"dynamics: model {model}: string {s[:20]!r}... does not "
                                f"round-trip through its token ids")
    return strings.with_columns(
        pl.Series("token_ids", token_ids, dtype=pl.List(pl.Int64)),
        pl.Series("letter_ids", [[ids[c] for c in LETTERS[:l]]
                                 for l in strings["alphabet_size"]], dtype=pl.List(pl.Int64)),
        pl.lit(bos, dtype=pl.Int64).alias("bos_id"))


# ---------------------------------------------------------------- models and memory


def full_finetune_bytes(n_params: int, margin: float) -> int:
    """Bytes to fully fine-tune in fp32 with AdamW: weights, gradients, two moments, margin."""
    return int(n_params * BYTES_PER_PARAM * (1 + margin))


def check_memory(model: str, n_params: int, gpu_memory_gb: float | None, margin: float) -> None:
    """Raise if full fine-tuning of `model` does not fit `gpu_memory_gb` (None: no limit)."""
    if gpu_memory_gb is None:
        return
    need = full_finetune_bytes(n_params, margin)
    if need > gpu_memory_gb * 2**30:
        raise DynamicsError(
            f"dynamics: model {model} ({n_params:,} parameters) is too large for full "
            f"fine-tuning on one GPU: it needs about {need / 2**30:.1f} GiB (fp32 weights, "
            f"gradients and AdamW states, +{margin:.0%}), more than "
            f"gpu_memory_gb = {gpu_memory_gb:g}")


def count_params(path: str) -> int:
    """Parameter count of the saved model at `path`, from its config (no weights loaded)."""
    from transformers import AutoModelForCausalLM

    cfg = architecture.read_config(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    return sum(p.numel() for p in model.parameters())


def context_length(path: str) -> int | None:
    """Positions the saved model at `path` can attend over (its config's, read by
    vermem.models.architecture); None if unbounded."""
    return architecture.context_length(architecture.read_config(path))


def fresh_model(path: str, init: str, init_seed: int, device: torch.device):
    """A new fp32 copy of the model at `path`: its weights, or its architecture randomly
    initialised with `init_seed` (the same initial weights for every string). `init` may be
    a run name, 'random-{seed}', whose seed then replaces `init_seed`
    (vermem.core.naming.parse_run)."""
    from transformers import AutoModelForCausalLM

    init, init_seed = parse_run(init, init_seed)

    if init == "pretrained":
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    elif init == "random":
        torch.manual_seed(init_seed)
        model = AutoModelForCausalLM.from_config(architecture.read_config(path),
                                                 dtype=torch.float32)
    else:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    return model.to(device).eval()


# ---------------------------------------------------------------- measurement


@torch.no_grad()
def position_metrics(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Teacher-forced metrics of every predicted token. x [B, T] -> each [B, T-1] (cpu)."""
    logits = model(input_ids=x).logits[:, :-1].float()  # [B, T-1, V]
    logp = torch.log_softmax(logits, -1)
    target = x[:, 1:]
    lp_true = logp.gather(-1, target[..., None])[..., 0]  # [B, T-1]
    pred = logits.argmax(-1)
    return {"correct": (pred == target).cpu(), "loss": (-lp_true).cpu(),
            "p_true": lp_true.exp().cpu(), "entropy": -(logp.exp() * logp).sum(-1).cpu(),
            "pred": pred.cpu()}


@torch.no_grad()
def last_token_metrics(model, seqs: Sequence[Sequence[int]], targets: Sequence[int],
                       pad: int, batch_size: int, device) -> tuple[list[bool], list[float]]:
    """(correct, p_true) of the next token after each sequence, batched with right padding
    (causal attention: padding after the last real token cannot change its logits)."""
    correct, p_true = [], []
    for i in range(0, len(seqs), batch_size):
        chunk, tgt = seqs[i: i + batch_size], targets[i: i + batch_size]
        width = max(map(len, chunk))
        x = torch.tensor([list(s) + [pad] * (width - len(s)) for s in chunk], device=device)
        last = torch.tensor([len(s) - 1 for s in chunk], device=device)
        logits = model(input_ids=x).logits[torch.arange(len(chunk), device=device), last]
        t = torch.tensor(tgt, device=device)
        correct += (logits.argmax(-1) == t).tolist()
        p_true += torch.softmax(logits.float(), -1).gather(-1, t[:, None])[:, 0].tolist()
    return correct, p_true


def _earlier(condition: str, ids: list[int], cut: int, letters: Sequence[int],
             probs: Sequence[float], rng: np.random.Generator) -> list[int]:
    """The context before the last k letters (ids[:cut]) under a Q2 condition."""
    early = ids[:cut]
    if condition == "kept":
        return early
    if condition == "local":
        return []
    if condition == "shuffled":
        return [early[j] for j in rng.permutation(cut)]
    if condition == "resampled":
        return [letters[j] for j in rng.choice(len(letters), size=cut, p=np.asarray(probs))]
    if condition == "replaced":  # each letter by a different letter of the alphabet
        idx = {t: j for j, t in enumerate(letters)}
        shift = rng.integers(1, len(letters), size=cut)
        return [letters[(idx[t] + int(s)) % len(letters)] for t, s in zip(early, shift,
                                                                           strict=True)]
    raise ValueError(f"unknown Q2 condition {condition!r}")


def context_recall(model, string: Mapping[str, Any], ks: Sequence[int],
                   conditions: Sequence[str], seed: int, batch_size: int, device
                   ) -> pl.DataFrame:
    """Q2: recall of each letter i > k from its last k letters, the earlier ones changed.

    `string`: a row of the tokenized strings (`tokenize_strings`: token_ids, bos_id,
    letter_ids, probs). Only positions with an earlier context (i > k) are measured: below
    that every condition sees the whole prefix. `kept` is the teacher-forced pass over the
    whole string. Rows: condition, k, position, correct, p_true.
    """
    ids, bos, letters, probs = (string["token_ids"], string["bos_id"], string["letter_ids"],
                                string["probs"])
    ids = list(ids)
    full = position_metrics(model, torch.tensor([[bos, *ids]], device=device))
    seqs, tgts, keys, rows = [], [], [], []
    for ci, cond in enumerate(conditions):
        for k in ks:
            rng = rng_for("q2", seed, ci, k)
            for i in range(k + 1, len(ids)):
                if cond == "kept":
                    rows.append((cond, k, i, bool(full["correct"][0, i]),
                                 float(full["p_true"][0, i])))
                    continue
                seqs.append([bos] + _earlier(cond, ids, i - k, letters, probs, rng)
                            + ids[i - k: i])
                tgts.append(ids[i])
                keys.append((cond, k, i))
    order = sorted(range(len(seqs)), key=lambda j: len(seqs[j]))  # batches of similar length
    correct, p_true = last_token_metrics(model, [seqs[j] for j in order],
                                         [tgts[j] for j in order], bos, batch_size, device)
    rows += [(*keys[j], c, p) for j, c, p in zip(order, correct, p_true, strict=True)]
    rank = {c: r for r, c in enumerate(conditions)}
    rows.sort(key=lambda r: (rank[r[0]], r[1], r[2]))
    return pl.DataFrame(rows, orient="row",
                        schema={"condition": pl.String, "k": pl.Int32, "position": pl.Int32,
                                "correct": pl.Boolean, "p_true": pl.Float64})


def q2_ks(n: int, ks: Sequence[int], fractions: Sequence[float]) -> list[int]:
    """k values for a string of length n: the absolute ones and round(fraction * n), < n."""
    return sorted({k for k in [*ks, *(max(1, round(f * n)) for f in fractions)] if k < n - 1})


# ---------------------------------------------------------------- training


def _metrics_frame(ms: Sequence[Mapping[str, torch.Tensor]]) -> pl.DataFrame:
    """Rows (epoch, position) from per-epoch metrics of one string, epoch = list index."""
    e, n = len(ms), ms[0]["correct"].shape[-1]
    col = {k: torch.cat([m[k][0] for m in ms]).numpy() for k in ms[0]}  # [e * n] each
    return pl.DataFrame({
        "epoch": np.repeat(np.arange(e, dtype=np.int32), n),
        "position": np.tile(np.arange(n, dtype=np.int32), e),
        "correct": col["correct"], "loss": col["loss"].astype(np.float64),
        "p_true": col["p_true"].astype(np.float64), "entropy": col["entropy"].astype(np.float64),
        "pred": col["pred"].astype(np.int64)})


def optimizer(model, training: Mapping[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=training["learning_rate"],
                             weight_decay=training["weight_decay"])


def step(model, opt, x: torch.Tensor) -> float:
    """One full fine-tuning step on the whole string; the loss before it."""
    model.train()
    loss = model(input_ids=x, labels=x).loss  # mean next-token cross-entropy
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    model.eval()
    return float(loss.detach())


def train_string(model, ids: Sequence[int], bos: int, training: Mapping[str, Any], seed: int,
                 on_epoch: Callable[[int], None] | None = None, *,
                 progress: ProgressArg = None) -> pl.DataFrame:
    """Fine-tune on one string for training.epochs steps; per-position metrics after every
    epoch (epoch 0 is before training). `on_epoch(e)` runs after epoch e's metrics.
    `progress` (vermem.core.progress) counts the epochs trained."""
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    x = torch.tensor([[bos, *ids]], device=device)
    opt = optimizer(model, training)
    ms = [position_metrics(model, x)]
    if on_epoch:
        on_epoch(0)
    with track(progress, "training", training["epochs"], "epochs") as p:
        for e in range(1, training["epochs"] + 1):
            step(model, opt, x)
            ms.append(position_metrics(model, x))
            if on_epoch:
                on_epoch(e)
            p.advance()
    return _metrics_frame(ms)


Q2_SCHEMA = {"seed": pl.Int32, "epoch": pl.Int32, "condition": pl.String, "k": pl.Int32,
             "position": pl.Int32, "correct": pl.Boolean, "p_true": pl.Float64}


def train_cell(path: str, init: str, rows: pl.DataFrame, dyn: Mapping[str, Any], device, *,
               progress: ProgressArg = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rule dynamics_train's runs of one grid cell: each string of `rows` (tokenized, one
    per seed) trained on a fresh copy of the model in `path` (`init`: pretrained or random;
    config `dynamics`: `dyn`), with the Q2 context conditions at the epochs dyn.q2.epochs.
    Returns (per-epoch, per-position curves with the seed; Q2 rows, Q2_SCHEMA plus
    condition rows). `progress` (vermem.core.progress) counts the epochs trained."""
    q2cfg, training = dyn["q2"], dyn["training"]
    curves, q2 = [], []
    cell = rows["string_id"][0] if rows.height else ""
    epochs = track(progress, f"training {cell} ({rows.height} seeds)",
                   rows.height * training["epochs"], "epochs")
    for s in rows.iter_rows(named=True):
        model = fresh_model(path, init, dyn["init_seed"], device)
        ks = q2_ks(s["length"], q2cfg["k"], q2cfg["k_fractions"])

        def at_epoch(e, model=model, s=s, ks=ks):
            if e in q2cfg["epochs"] and ks and q2cfg["conditions"]:
                df = context_recall(model, s, ks, q2cfg["conditions"], s["seed"] * 100_003 + e,
                                    q2cfg["batch_size"], device)
                q2.append(df.select(pl.lit(s["seed"], pl.Int32).alias("seed"),
                                    pl.lit(e, pl.Int32).alias("epoch"), pl.all()))

        df = train_string(model, s["token_ids"], s["bos_id"], training, s["seed"], at_epoch,
                          progress=epochs)
        curves.append(df.select(pl.lit(s["seed"], pl.Int32).alias("seed"), pl.all()))
        final = df.filter(pl.col("epoch") == df["epoch"].max())["correct"].mean()
        log.info("%s seed %d: final accuracy %.3f", cell, s["seed"], final)
    epochs.close()
    return pl.concat(curves), pl.concat(q2) if q2 else pl.DataFrame(schema=Q2_SCHEMA)


def memorized_at(acc: Sequence[float], hold: int = 1) -> int | None:
    """First epoch e at which accuracy is 1 and stays 1 for `hold` consecutive epochs
    (e .. e + hold - 1, all within the curve). None, censored, if no such run is seen: a
    string whose accuracy reaches 1 only in its last hold - 1 epochs is not yet memorized."""
    run = 0
    for e, a in enumerate(acc):
        run = run + 1 if a >= 1 else 0
        if run >= hold:
            return e - hold + 1
    return None


def sequential(model, strings: Sequence[Sequence[int]], bos: int, training: Mapping[str, Any],
               hold: int, seed: int, relearn: bool, *, progress: ProgressArg = None
               ) -> pl.DataFrame:
    """Q3: strings s0..s{K-1} one after another on one model (a fresh AdamW per exposure),
    each until accuracy has been 1 for `hold` epochs, or training.epochs; then s0 again
    when `relearn`. After every epoch, the accuracy and loss on every string.

    Rows: stage, trained (index of the string being trained), epoch (within the stage,
    0 = before its first step), evaluated, accuracy, loss. `progress` (vermem.core.progress)
    counts epochs, out of at most training.epochs per stage (a stage that stops early
    takes its unused epochs off the total).
    """
    device = next(model.parameters()).device
    xs = torch.tensor([[bos, *s] for s in strings], device=device)  # [K, n+1], equal lengths
    order = list(range(len(strings))) + ([0] if relearn else [])
    rows: list[tuple] = []
    epochs = training["epochs"]
    prog = track(progress, "sequential", len(order) * epochs, "epochs")
    for stage, j in enumerate(order):
        torch.manual_seed(seed + stage)
        opt = optimizer(model, training)
        run = 0
        for e in range(epochs + 1):
            if e:
                step(model, opt, xs[j: j + 1])
                prog.advance()
            m = position_metrics(model, xs)  # every string in one batch
            acc = m["correct"].float().mean(1).tolist()
            loss = m["loss"].mean(1).tolist()
            rows += [(stage, j, e, i, acc[i], loss[i]) for i in range(len(strings))]
            run = run + 1 if acc[j] >= 1 else 0
            if run >= hold:
                prog.expect(-(epochs - e))  # the stage's epochs left unused
                break
    prog.close()
    return pl.DataFrame(rows, orient="row", schema={
        "stage": pl.Int32, "trained": pl.Int32, "epoch": pl.Int32, "evaluated": pl.Int32,
        "accuracy": pl.Float64, "loss": pl.Float64})


# ---------------------------------------------------------------- phases and tables


IN_ORDER, NO_GUESSING = "guessing then memorization", "no guessing phase"


@dataclass(frozen=True)
class Phases:
    guess_start: int | None         # first epoch of the guessing plateau (None: none)
    guess_end: int | None           # its last epoch
    memorization_start: int | None  # first epoch accuracy > guess + rise (or reaches 1)
    memorized: int | None           # first epoch of `hold` consecutive epochs at accuracy 1
    order: str = IN_ORDER           # IN_ORDER or NO_GUESSING
    reason: str = ""                # why there is no guessing phase ("" when in order)


def _runs(ok: Sequence[bool]) -> list[tuple[int, int]]:
    """(first, last) epoch of every maximal run of True."""
    out, start = [], None
    for e, v in enumerate([*ok, False]):
        if v and start is None:
            start = e
        elif not v and start is not None:
            out.append((start, e - 1))
            start = None
    return out


def detect_phases(acc: Sequence[float], loss: Sequence[float], h: float, guess: float,
                  tolerance: float, rise: float, plateau: int = 1, hold: int = 1) -> Phases:
    """Phase boundaries (epochs) of one string's per-epoch accuracy and mean loss.

    h: the entropy (nats) of the string's own letter distribution q, the loss of a model
    that predicts q at every position; guess: the accuracy of the best constant guess, the
    share of the string's most frequent letter. The guessing phase is a plateau: at least
    `plateau` consecutive epochs with the loss within `tolerance` of H(q) while the
    accuracy stays within `rise` of the best guess (the first such run, to its end). It is
    reported only when the accuracy rises above guess + rise (or reaches 1) after it began;
    otherwise `guess_start` and `guess_end` are None, `order` is NO_GUESSING and `reason`
    says which condition failed. `memorization_start` (the accuracy's rise) and
    `memorized` (`memorized_at` with `hold`) are kept either way.
    """
    start = next((e for e, v in enumerate(acc) if v > guess + rise or v >= 1), None)
    done = memorized_at(acc, hold)
    near_loss = [abs(v - h) <= tolerance for v in loss]
    ok = [a and abs(v - guess) <= rise for a, v in zip(near_loss, acc, strict=True)]
    runs = [r for r in _runs(ok) if r[1] - r[0] + 1 >= plateau]
    if not runs:
        if not any(near_loss):
            closest = min(loss, key=lambda v: abs(v - h), default=float("nan"))
            why = (f"the loss never came within {tolerance} nats of H(q) = {h:.3f} "
                   f"(closest {closest:.3f})")
        elif not any(ok):
            why = (f"while the loss was within {tolerance} nats of H(q) = {h:.3f} the accuracy "
                   f"was never within {rise} of the best guess {guess:.3f}")
        else:
            longest = max(b - a + 1 for a, b in _runs(ok))
            why = (f"the loss was within {tolerance} nats of H(q) = {h:.3f} with the accuracy "
                   f"within {rise} of the best guess {guess:.3f} for at most {longest} "
                   f"consecutive epochs, fewer than {plateau}")
        return Phases(None, None, start, done, NO_GUESSING, why)
    first, last = runs[0]
    if start is not None and start < first:
        why = (f"the accuracy rose above the best guess {guess:.3f} + {rise} at epoch {start}, "
               f"before the loss plateau at H(q) = {h:.3f} (epochs {first}-{last}; loss "
               f"{loss[start]:.3f} at epoch {start})")
        return Phases(None, None, start, done, NO_GUESSING, why)
    return Phases(first, last, start, done)


def epoch_curves(per_position: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Per-epoch accuracy, mean loss, p_true and entropy over positions."""
    return (per_position.group_by(*keys, "epoch", maintain_order=True)
            .agg(pl.col("correct").mean().alias("accuracy"), pl.col("loss").mean(),
                 pl.col("p_true").mean(), pl.col("entropy").mean())
            .sort(*keys, "epoch"))


def phases_table(curves: pl.DataFrame, strings: pl.DataFrame, keys: Sequence[str],
                 phases_cfg: Mapping[str, Any]) -> pl.DataFrame:
    """One row per trained string (keys + string_id, seed) with its phase boundaries, judged
    against the string's own letter distribution (`empirical_entropy`, `guess_accuracy`;
    `detect_phases` with `phases_cfg`: loss_tolerance, accuracy_rise, plateau_epochs,
    hold_epochs). `horizon` is the last epoch at which a memorized run can start: a string
    not memorized by then is censored there."""
    info = {(r["string_id"], r["seed"]): r for r in strings.iter_rows(named=True)}
    hold = phases_cfg.get("hold_epochs", 1)
    rows = []
    group_keys = [*keys, "string_id", "seed"]
    for key, g in curves.sort(*group_keys, "epoch").group_by(group_keys, maintain_order=True):
        s = info[(key[-2], key[-1])]
        ph = detect_phases(g["accuracy"].to_list(), g["loss"].to_list(),
                           s["empirical_entropy"], s["guess_accuracy"],
                           phases_cfg["loss_tolerance"], phases_cfg["accuracy_rise"],
                           phases_cfg.get("plateau_epochs", 1), hold)
        rows.append({**dict(zip(group_keys, key, strict=True)),
                     "alphabet_size": s["alphabet_size"],
                     "entropy_fraction": s["entropy_fraction"], "length": s["length"],
                     "entropy": s["entropy"], "empirical_entropy": s["empirical_entropy"],
                     "max_p": s["max_p"], "guess_accuracy": s["guess_accuracy"],
                     "epochs": int(g["epoch"].max()),
                     "horizon": int(g["epoch"].max()) - hold + 1,
                     "final_accuracy": g["accuracy"][-1], "guess_start": ph.guess_start,
                     "guess_end": ph.guess_end, "memorization_start": ph.memorization_start,
                     "memorized": ph.memorized, "phase_order": ph.order,
                     "phase_reason": ph.reason})
    return pl.DataFrame(rows, infer_schema_length=None).with_columns(
        pl.col("guess_start", "guess_end", "memorization_start", "memorized").cast(pl.Int32))


def time_to_memorize(g: pl.DataFrame) -> dict[str, Any]:
    """Censored epochs to memorize and the share memorized (Wilson 95%) of a group of
    strings (rows of the phases table): never-memorized strings censored at the horizon,
    the last epoch at which a run of the hold epochs can start (`epochs` in tables without
    one)."""
    col = "horizon" if "horizon" in g.columns else "epochs"
    med = censored_median(g["memorized"].to_list(), int(g[col].max()) if g.height else 0)
    lo, hi = wilson(med["memorized"], med["n"])
    return {"strings": med["n"], "memorized_strings": med["memorized"],
            "share_memorized": med["memorized"] / med["n"] if med["n"] else None,
            "share_lo": lo, "share_hi": hi,
            "epochs": int(g["epochs"].max()) if g.height else 0, "horizon": med["horizon"],
            "median_epochs": med["median"], "median_censored": med["median_censored"],
            "median_lo": med["lo"], "median_hi": med["hi"],
            "median_hi_censored": med["hi_censored"]}


Q1_KEYS = ("model", "n_params", "init", "alphabet_size", "entropy_fraction", "length")


def q1_table(phases: pl.DataFrame, keys: Sequence[str] = Q1_KEYS) -> pl.DataFrame:
    """Epochs to memorize per group of strings (by default per model, init, alphabet size,
    entropy and length, over seeds), as censored data: the share memorized with its Wilson
    interval, and the median epochs with never-memorized strings counted as '> epochs'
    (`censored_median`), never a mean over the strings that happened to be memorized. Also
    how many strings show the guessing phase in order."""
    rows = []
    for key, g in phases.sort(*keys).group_by(*keys, maintain_order=True):
        guess = g.filter(pl.col("phase_order") == IN_ORDER)
        rows.append({**dict(zip(keys, key, strict=True)), **time_to_memorize(g),
                     "guessing_phase": guess.height,
                     "guess_end_median": guess["guess_end"].median(),
                     "memorization_start_median": g["memorization_start"].median()})
    return pl.DataFrame(rows, infer_schema_length=None)


def q2_table(q2: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Q2 accuracy per string, epoch, condition and k (over positions i > k)."""
    return (q2.group_by(*keys, "string_id", "seed", "length", "epoch", "condition", "k")
            .agg(pl.col("correct").mean().alias("accuracy"), pl.col("p_true").mean(),
                 pl.len().alias("positions"))
            .with_columns((pl.col("k") / pl.col("length")).alias("k_fraction"))
            .sort(*keys, "string_id", "seed", "epoch", "condition", "k"))


def q3_table(seq: pl.DataFrame, keys: Sequence[str], hold: int = 1) -> pl.DataFrame:
    """Per stage: the string trained, epochs to memorize it (`memorized_at` with `hold`,
    the stage's own stopping rule), and the accuracy on every other string at the end of
    the stage (forgetting of earlier ones)."""
    rows = []
    for key, g in seq.sort(*keys, "stage", "epoch").group_by(*keys, "stage",
                                                             maintain_order=True):
        own = g.filter(pl.col("evaluated") == pl.col("trained")).sort("epoch")
        end = g.filter(pl.col("epoch") == g["epoch"].max()).sort("evaluated")
        rows.append({**dict(zip([*keys, "stage"], key, strict=True)),
                     "trained": int(g["trained"][0]),
                     "relearn": int(g["stage"][0]) >= seq["evaluated"].n_unique(),
                     "epochs_to_memorize": memorized_at(own["accuracy"].to_list(), hold),
                     "start_accuracy": float(own["accuracy"][0]),
                     "end_accuracy": end["accuracy"].to_list()})
    return pl.DataFrame(rows, infer_schema_length=None).with_columns(
        pl.col("epochs_to_memorize").cast(pl.Int32))


def summarize(phases: pl.DataFrame, q1: pl.DataFrame, q2: pl.DataFrame,
              q3: pl.DataFrame) -> dict[str, Any]:
    """Headline numbers per model and init: strings memorized, epochs to memorize, how many
    show a plateau at their own letter entropy H(q) before accuracy rises, Q2 and Q3 in
    brief."""
    out: dict[str, Any] = {}
    for (model, init), g in phases.group_by("model", "init", maintain_order=True):
        q2g = q2.filter((pl.col("model") == model) & (pl.col("init") == init))
        last = q2g.filter(pl.col("epoch") == q2g["epoch"].max()) if q2g.height else q2g
        q3g = q3.filter((pl.col("model") == model) & (pl.col("init") == init)).sort("stage")
        out[f"{model}/{init}"] = {
            **time_to_memorize(g),
            # strings whose loss held at H(q) while accuracy stayed at the best guess, before
            # the accuracy rose; the others with the reason
            "guessing_phase": int((g["phase_order"] == IN_ORDER).sum()),
            "no_guessing_phase": g.filter(pl.col("phase_order") == NO_GUESSING)
            .select("alphabet_size", "length", "seed", "phase_reason").to_dicts(),
            "q1": q1.filter((pl.col("model") == model) & (pl.col("init") == init))
            .select("alphabet_size", "entropy_fraction", "length", "strings", "share_memorized",
                    "share_lo", "share_hi", "median_epochs", "median_censored", "median_lo",
                    "median_hi", "guessing_phase").to_dicts(),
            "q2_last_epoch": None if not last.height else {
                "epoch": int(last["epoch"][0]),
                "accuracy": last.group_by("condition", "k_fraction").agg(pl.col("accuracy")
                                                                         .mean())
                .sort("condition", "k_fraction").to_dicts()},
            "q3": q3g.select("stage", "trained", "relearn", "epochs_to_memorize",
                             "end_accuracy").to_dicts(),
        }
    return out
