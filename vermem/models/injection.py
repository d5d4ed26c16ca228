"""Injected memorization: planted documents trained into a pretrained language model.

The organism (`vermem.models.organism`) learns everything it knows from the planted corpus; here a
real pretrained model (any causal LM folder: a hub, local or GGUF model) continues training
on ordinary text mixed with planted documents, so which documents it memorized here, and
how often it saw them, is known exactly; and with a localized injection, where they can be
stored is known too. Steps:

1. Documents: the stand-in corpus's documents, tokenized by the base model's tokenizer
   (each ends with its EOS token when it has one).
2. Planting (`plan`): a seeded held-out share never trained on (the unseen control),
   `docs_per_count` planted documents at each repetition count (the organism's
   `plant_duplicates`, same table columns), and a seeded `background` share of the other
   documents trained once: the ordinary text. The rest are not trained on (role
   `unused`, count 0).
3. Restriction (`organism.Restriction`, optional): only the configured components learn, e.g. a
   head or an MLP of one layer. Everything else keeps its exact pretrained values: frozen
   tensors get no gradient; in tensors a head shares with other heads (q/k/v rows and
   o-projection columns) the other heads' gradients are zeroed and their values restored
   after each optimizer step (AdamW's weight decay would move them otherwise).
4. Training (`inject`): the organism's loop (`organism.train`: AdamW, linear warm-up,
   cosine decay, packed blocks of `context` tokens), with the base model's weights kept as
   checkpoint t0 (before injection) and snapshots after k/n of the steps.
5. Scoring a circuit against the known location (`location_recall`): the injected
   components among the nodes that a circuit's top-k edges touch, at its minimal size and
   MIB's sizes, against random circuits of the same size; the circuit's own recall gets a
   cluster-bootstrap interval over its attribution documents (`document_scores`: each
   document's summed edge scores, so a resample's ranking is its documents' mean).

The base model may have seen stand-in text (the Python standard library) in pretraining:
"unseen" means not trained on in the injection; checkpoint t0 measures the baseline.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import torch

from vermem.core.errors import VermemError
from vermem.core.progress import ProgressArg
from vermem.models import organism
from vermem.models.architecture import text_config

UNUSED = "unused"


class InjectionError(VermemError, ValueError):
    """An injection that cannot run as configured; the message names the key."""


# -- 2. planting -----------------------------------------------------------------------------

def plan(docs: pl.DataFrame, recipe: Mapping[str, Any], min_tokens: int) -> pl.DataFrame:
    """Duplicate table (doc_id, subset, n_tokens, dup_count, role) of an injection:
    `docs` has doc_id, subset, n_tokens; `recipe` is the model's `injection` config."""
    dcfg, seed = recipe["duplicates"], recipe["training"]["seed"]
    holdout = organism.split_holdout(docs["doc_id"].to_list(), dcfg["holdout_fraction"], seed)
    try:
        table = organism.plant_duplicates(docs, holdout, dcfg["counts"], dcfg["docs_per_count"],
                                          min_tokens, dcfg["max_tokens"], seed)
    except ValueError as e:
        raise InjectionError(str(e).replace("organism.", "injection.")) from None
    rest = sorted(table.filter(pl.col("role") == "background")["doc_id"].to_list())
    random.Random(seed + 1).shuffle(rest)
    dropped = set(rest[round(recipe["background"] * len(rest)):])
    return table.with_columns(
        pl.when(pl.col("doc_id").is_in(sorted(dropped))).then(0).otherwise(pl.col("dup_count"))
        .cast(pl.Int32).alias("dup_count"),
        pl.when(pl.col("doc_id").is_in(sorted(dropped))).then(pl.lit(UNUSED))
        .otherwise(pl.col("role")).alias("role"))


# -- 3. restriction ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Component:
    """A head (`head` set) or the MLP of a layer: a node of the edge graph."""

    layer: int
    head: int | None = None

    @property
    def node(self) -> str:
        """Its node name in `vermem.attribution.graph` (a{layer}.h{head}, m{layer})."""
        return f"m{self.layer}" if self.head is None else f"a{self.layer}.h{self.head}"


def components(spec: Sequence[Mapping[str, Any]]) -> list[Component]:
    """Components from the config's `trainable` list ({layer, head} or {layer, mlp: true})."""
    out = []
    for i, c in enumerate(spec):
        if ("head" in c) == bool(c.get("mlp")):
            raise InjectionError(f"config error at injection.trainable[{i}]: name a head or "
                                 f"mlp: true (one of them)")
        out.append(Component(int(c["layer"]), c.get("head")))
    return out


_LAYER = re.compile(r"\.layers\.(\d+)\.")
_ATTN = {  # model_type -> (fused or q, k, v, output) parameter-name parts
    "llama": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
    "gpt_neox": ("attention.query_key_value", None, None, "attention.dense"),
}
_ATTN["mistral"] = _ATTN["qwen2"] = _ATTN["llama"]
_ATTN["phi"] = (*_ATTN["llama"][:3], "self_attn.dense")
_ATTN["opt"] = (*_ATTN["llama"][:3], "self_attn.out_proj")
_MLP = {"opt": (".fc1.", ".fc2.")}  # model_type -> MLP parameter-name parts (default .mlp.)


def trainable_masks(model, comps: Sequence[Component]) -> dict[str, torch.Tensor]:
    """{parameter name: bool mask of its trainable entries} for the parameters that hold
    any of `comps`; every other parameter is frozen whole. A head owns its q/k/v rows (with
    grouped-query attention: its key/value head's rows, shared with its group) and its
    columns of the output projection; an MLP owns all of its weights and biases. Norms,
    embeddings and the output projection's bias (shared by every head) stay frozen."""
    cfg = text_config(model.config)
    kind = cfg.model_type
    if kind not in _ATTN:
        raise InjectionError(f"config error at injection.trainable: a localized injection "
                             f"supports model types {sorted(_ATTN)}, not {kind!r}")
    H, L, d = cfg.num_attention_heads, cfg.num_hidden_layers, cfg.hidden_size
    K = getattr(cfg, "num_key_value_heads", None) or H
    hd = getattr(cfg, "head_dim", None) or d // H
    for c in comps:
        if not 0 <= c.layer < L or (c.head is not None and not 0 <= c.head < H):
            raise InjectionError(f"config error at injection.trainable: {c.node} is not in the "
                                 f"model ({L} layers of {H} heads)")
    q, k, v, o = _ATTN[kind]
    mlp = _MLP.get(kind, (".mlp.",))
    masks: dict[str, torch.Tensor] = {}

    def mark(name: str, p: torch.Tensor, index: tuple) -> None:
        m = masks.setdefault(name, torch.zeros_like(p, dtype=torch.bool))
        m[index] = True

    for name, p in model.named_parameters():
        found = _LAYER.search(name)
        if not found:
            continue
        layer = int(found.group(1))
        for c in (c for c in comps if c.layer == layer):
            if c.head is None:
                if any(part in name for part in mlp):
                    mark(name, p, (slice(None),))
                continue
            h, kv = c.head, c.head // (H // K)
            rows = slice(h * hd, (h + 1) * hd)
            if kind == "gpt_neox" and q in name:  # fused, per head [q | k | v] rows
                mark(name, p, (slice(3 * h * hd, 3 * (h + 1) * hd),))
            elif q in name:
                mark(name, p, (rows,))
            elif (k and k in name) or (v and v in name):
                mark(name, p, (slice(kv * hd, (kv + 1) * hd),))
            elif o in name and name.endswith("weight"):
                mark(name, p, (slice(None), rows))
    return masks


# -- 4. training -------------------------------------------------------------------------------

@dataclass
class Injection:
    table: pl.DataFrame                  # the duplicate table (`plan`)
    result: organism.TrainResult         # loss log, steps, snapshots
    before: dict[str, torch.Tensor]      # the base model's weights: checkpoint t0
    trainable: int                       # parameters (entries) that learned


def inject(model, tok, doc_ids: Sequence[str], subsets: Sequence[str], texts: Sequence[str],
           recipe: Mapping[str, Any], sample_tokens: int, *,
           progress: ProgressArg = None) -> Injection:
    """Steps 1 to 4 on `model` (trained in place on its device) with its tokenizer `tok`."""
    ids = tok(list(texts), add_special_tokens=False)["input_ids"]
    docs = pl.DataFrame({"doc_id": list(doc_ids), "subset": list(subsets),
                         "n_tokens": [len(i) for i in ids]},
                        schema={"doc_id": pl.String, "subset": pl.String, "n_tokens": pl.Int32})
    table = plan(docs, recipe, sample_tokens)
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    seqs = [i + eos for i in ids]
    before = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    restriction = None
    if recipe.get("trainable"):
        masks = trainable_masks(model, components(recipe["trainable"]))
        restriction = organism.Restriction(model, masks)
    training = recipe["training"]
    tokens = sum(len(s) * d for s, d in zip(seqs, table["dup_count"], strict=True))
    if tokens < training["context"]:
        raise InjectionError("config error at injection: fewer tokens to train on than one "
                             "block of injection.training.context")
    result = organism.train(model, seqs, table["dup_count"].to_list(), training,
                            training["context"], recipe["checkpoints"],
                            restriction=restriction, progress=progress)
    trainable = restriction.trainable if restriction else sum(p.numel()
                                                              for p in model.parameters())
    return Injection(table, result, before, trainable)


def checkpoint_names(n: int) -> list[str]:
    """t0 (the base model, before injection), then the snapshots at k/n of the steps."""
    from vermem.core.naming import injection_names

    return injection_names(n)
