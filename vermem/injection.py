"""Injected memorization: planted documents trained into a pretrained language model.

The organism (`vermem.organism`) learns everything it knows from the planted corpus; here a
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
3. Restriction (`Restriction`, optional): only the configured components learn, e.g. a
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

from . import organism
from .errors import VermemError
from .progress import ProgressArg
from .stats import Bootstrap

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
        """Its node name in `vermem.graph` (a{layer}.h{head}, m{layer})."""
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


def trainable_masks(model, comps: Sequence[Component]) -> dict[str, torch.Tensor]:
    """{parameter name: bool mask of its trainable entries} for the parameters that hold
    any of `comps`; every other parameter is frozen whole. A head owns its q/k/v rows (with
    grouped-query attention: its key/value head's rows, shared with its group) and its
    columns of the output projection; an MLP owns all of its weights and biases. Norms,
    embeddings and the output projection's bias (shared by every head) stay frozen."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") \
        else model.config
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
                if ".mlp." in name:
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


class Restriction:
    """Step 3 during training: `grads` after the backward pass, `weights` after the
    optimizer step (organism.train calls both)."""

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
        restriction = Restriction(model, trainable_masks(model, components(recipe["trainable"])))
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
    from .config import injection_names

    return injection_names(n)


# -- 5. scoring a circuit against the known location ----------------------------------------

RECALL_SCHEMA = {"size": pl.String, "k": pl.Int64, "touched": pl.Int64, "recall": pl.Float64,
                 "recall_lo": pl.Float64, "recall_hi": pl.Float64, "n_docs": pl.Int64,
                 "random_recall": pl.Float64, "random_lo": pl.Float64, "random_hi": pl.Float64,
                 "random_at_least": pl.Float64}


@dataclass(frozen=True)
class DocumentScores:
    """Edge scores of one ranking's attribution pairs, summed per document."""
    sums: torch.Tensor    # [G, S, D] float64: the summed scores of each document's pairs
    counts: torch.Tensor  # [G] float64: its pairs

    def mean(self, weights: torch.Tensor | None = None) -> torch.Tensor:
        """[S, D] mean score over pairs, documents weighted by `weights` [G] (a resample's
        draw counts; None: each once, the attribution file's own mean)."""
        w = torch.ones_like(self.counts) if weights is None else weights.double()
        n = float(w @ self.counts)
        return torch.einsum("g,gsd->sd", w, self.sums) / (n if n else 1.0)


def document_scores(model, graph, pairs: pl.DataFrame, *, directions: Sequence[str],
                    **run: Any) -> dict[str, DocumentScores]:
    """Per direction, the edge scores of `pairs` (clean, corrupt, answer, wrong, doc_id)
    summed per document, in sorted doc_id order: `attribution.run` on each document's pairs
    (`run`: its method, steps, metric, batch_size, backend)."""
    from .attribution import run as attribute

    docs = sorted(set(pairs["doc_id"].to_list()))
    sums: dict[str, list[torch.Tensor]] = {d: [] for d in directions}
    counts = []
    for doc in docs:
        q = pairs.filter(pl.col("doc_id") == doc)
        out, n = attribute(model, graph, q["clean"].to_list(), q["corrupt"].to_list(),
                           q["answer"].to_list(), q["wrong"].to_list(),
                           directions=directions, positions=False, **run)
        for d in directions:
            sums[d].append(out["scores" if d == "noising" else f"scores_{d}"].double() * n)
        counts.append(float(n))
    shape = tuple(graph.mask.shape)
    return {d: DocumentScores(torch.stack(v) if v else torch.zeros((0, *shape),
                                                                   dtype=torch.float64),
                              torch.tensor(counts, dtype=torch.float64))
            for d, v in sums.items()}


def touched_nodes(graph, edges: torch.Tensor) -> set[str]:
    """Nodes an edge set ([S, D] bool mask) touches: every edge's source node and the
    component its destination belongs to (a head's q input: that head; a key/value input:
    every head of its group; an MLP; not the logits)."""
    out: set[str] = set()
    src, dst = edges.nonzero(as_tuple=True)
    for i in sorted(set(src.tolist())):
        out.add(graph.sources[i])
    for j in sorted(set(dst.tolist())):
        out.update(_destination_nodes(graph, graph.destinations[j]))
    out.discard("input")
    return out


def _destination_nodes(graph, name: str) -> list[str]:
    """The components a destination input belongs to: an MLP; a head's query input, that
    head; a key or value input, every query head of its group; the logits, none."""
    if name == "logits":
        return []
    if "<" not in name:
        return [name]
    s = graph.shape
    group = s.n_heads // s.n_kv_heads
    node, part = name[:-3], name[-2]
    layer, head = node[1:].split(".h")
    heads = [int(head)] if part == "q" else range(int(head) * group, (int(head) + 1) * group)
    return [f"a{layer}.h{h}" for h in heads]


def location_recall(graph, scores: torch.Tensor, injected: Sequence[str],
                    minimal_k: int | None, seeds: int = 100, level: float = 0.95,
                    fractions: Sequence[float] | None = None,
                    documents: DocumentScores | None = None,
                    boot: Bootstrap | None = None) -> pl.DataFrame:
    """Recall of the injected components (node names, `Component.node`) among the nodes
    touched by the top-k edges by |score| (`circuits.ranking`), at the minimal size
    `minimal_k` (row size 'minimal'; none when None) and at each MIB fraction p of the
    edges (k = int(p E), at least 1), against `seeds` random circuits of the same k: their
    mean recall, its central `level` interval, and the share of them that reach the
    circuit's recall (a permutation p-value). With `documents` (the per-document sums
    behind `scores`) and `boot`, the circuit's recall also gets the percentile interval of
    `boot`'s resamples of those documents, each ranking its resample's mean scores
    (recall_lo, recall_hi; n_docs the documents; NaN and 0 without)."""
    from .circuits import circuit, random_ranking, ranking
    from .mib import FRACTIONS

    wanted = set(injected)
    if not wanted:
        raise ValueError("no injected components to score against")
    unknown = wanted - set(graph.sources)
    if unknown:
        raise ValueError(f"not nodes of the graph: {sorted(unknown)}")
    n_edges = int(graph.mask.sum())
    sizes = [] if minimal_k is None else [("minimal", int(minimal_k))]
    sizes += [(f"{p:g}", max(1, int(p * n_edges))) for p in (fractions or FRACTIONS)]
    order = ranking(graph, scores)
    randoms = [random_ranking(graph, seed) for seed in range(seeds)]
    n_docs = 0 if documents is None else int(documents.counts.numel())
    resampled = []  # the rankings of the attribution documents' resamples
    if documents is not None and boot is not None and n_docs:
        w = boot.indices(n_docs)
        resampled = [ranking(graph, documents.mean(w[b])) for b in range(w.shape[0])]
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)

    def recall(edges: torch.Tensor) -> tuple[float, int]:
        nodes = touched_nodes(graph, edges)
        return len(nodes & wanted) / len(wanted), len(nodes)

    rows = []
    for label, k in sizes:
        r, n = recall(circuit(graph, order, k))
        rand = torch.tensor([recall(circuit(graph, o, k))[0] for o in randoms],
                            dtype=torch.float64)
        lo, hi = torch.quantile(rand, q).tolist()
        r_lo = r_hi = float("nan")
        if resampled:
            reps = torch.tensor([recall(circuit(graph, o, k))[0] for o in resampled],
                                dtype=torch.float64)
            r_lo, r_hi = (float(x) for x in boot.interval(reps))
        rows.append({"size": label, "k": k, "touched": n, "recall": r,
                     "recall_lo": r_lo, "recall_hi": r_hi, "n_docs": n_docs,
                     "random_recall": float(rand.mean()), "random_lo": lo, "random_hi": hi,
                     "random_at_least": float((rand >= r - 1e-12).double().mean())})
    return pl.DataFrame(rows, schema=RECALL_SCHEMA)


LOCATION_SEEDS = 200  # random circuits per size: no forward pass, so many are cheap


def circuit_location(graph, by_direction: Mapping[str, torch.Tensor],
                     minimal_k: Mapping[str, int | None], injected: Sequence[str],
                     seeds: int = LOCATION_SEEDS, level: float = 0.95,
                     documents: Mapping[str, DocumentScores] | None = None,
                     boot: Bootstrap | None = None) -> pl.DataFrame:
    """`location_recall` of each direction's ranking (`by_direction`: direction -> edge
    scores) at its minimal size (`minimal_k`: None where no circuit was found) and MIB's
    sizes, with the bootstrap over `documents[direction]` where given; a row per direction
    and size, with the injected components named."""
    names = ",".join(sorted(injected))
    docs = documents or {}
    return pl.concat([
        location_recall(graph, scores, injected, minimal_k.get(d), seeds, level,
                        documents=docs.get(d), boot=boot)
        .with_columns(pl.lit(d).alias("direction"), pl.lit(names).alias("injected"))
        .select("direction", *RECALL_SCHEMA, "injected")
        for d, scores in sorted(by_direction.items())])


MASS_SCHEMA = {"direction": pl.String, "mass": pl.Float64, "mass_lo": pl.Float64,
               "mass_hi": pl.Float64, "edge_share": pl.Float64, "n_docs": pl.Int64,
               "n_pairs": pl.Int64, "replicates": pl.List(pl.Float64), "injected": pl.String}


def touching(graph, injected: Sequence[str]) -> torch.Tensor:
    """[S, D] bool: the graph's edges that touch an injected component (as `touched_nodes`
    counts it: the source is one, or the destination belongs to one)."""
    wanted = set(injected)
    src = torch.tensor([n in wanted for n in graph.sources])
    dst = torch.tensor([bool(wanted & set(_destination_nodes(graph, name)))
                        for name in graph.destinations])
    return (src[:, None] | dst[None, :]) & graph.mask


def location_mass(graph, documents: Mapping[str, DocumentScores], injected: Sequence[str],
                  boot: Bootstrap) -> pl.DataFrame:
    """Share of the ranking's attribution mass (sum of |edge score| over the graph's edges)
    on the edges that touch the injected components, per direction, with the percentile
    interval of `boot`'s resamples of the attribution documents (`replicates` kept, so two
    rankings on disjoint documents can be compared), next to those edges' share of all
    edges (the mass of scores spread evenly). A score that does not depend on a circuit
    size: where the top-k recall saturates (a small graph), this still separates
    rankings (MASS_SCHEMA; NaN mass without documents)."""
    touch = touching(graph, injected).double()
    share = float(touch.sum() / graph.mask.sum())
    names = ",".join(sorted(injected))
    nan = float("nan")

    def mass(scores: torch.Tensor) -> float:
        a = scores.abs() * graph.mask
        total = float(a.sum())
        return float((a * touch).sum()) / total if total else nan

    rows = []
    for d, docs in sorted(documents.items()):
        g = int(docs.counts.numel())
        if not g or float(docs.counts.sum()) == 0:
            rows.append({"direction": d, "mass": nan, "mass_lo": nan, "mass_hi": nan,
                         "edge_share": share, "n_docs": g, "n_pairs": 0, "replicates": [],
                         "injected": names})
            continue
        w = boot.indices(g)
        reps = torch.tensor([mass(docs.mean(w[b])) for b in range(w.shape[0])],
                            dtype=torch.float64)
        lo, hi = boot.interval(reps)
        rows.append({"direction": d, "mass": mass(docs.mean()), "mass_lo": float(lo),
                     "mass_hi": float(hi), "edge_share": share, "n_docs": g,
                     "n_pairs": int(docs.counts.sum()), "replicates": reps.tolist(),
                     "injected": names})
    return pl.DataFrame(rows, schema=MASS_SCHEMA)
