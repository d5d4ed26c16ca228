"""A model's architecture: the types each stage supports (`SUPPORTED_MODEL_TYPES`), its
shape (`Shape`: the components the attribution graph is made of) and the one reader of
its Hugging Face config (`read_config`, `text_config`, `config_json`, `context_length`).

Standard library only at module level: the workflow reads configs at parse time
(`config_json`, for vermem.workflow.resources; rules/common.smk imports
vermem.models.loading), and parsing must not import torch or transformers. `read_config`
imports transformers when it is called.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUPPORTED_MODEL_TYPES = ("gpt_neox", "gpt_neo", "gpt2", "llama", "mistral", "qwen2", "phi",
                         "phi3", "opt")
CONFIG_FILE = "config.json"  # a saved Hugging Face model's config, in its folder


def read_config(path: str | Path, **kwargs: Any) -> Any:
    """The Hugging Face config (`transformers.AutoConfig`) of the saved model at `path`;
    `kwargs` go to `AutoConfig.from_pretrained` (e.g. `gguf_file`)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path, **kwargs)


def text_config(cfg: Any) -> Any:
    """The language model's part of a config (a multimodal config's text config)."""
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def config_json(folder: str | Path) -> dict[str, Any] | None:
    """The raw config.json of a saved model folder, None if it has none. Without
    transformers (parse time): the keys as the file spells them, no defaults or aliases."""
    path = Path(folder) / CONFIG_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def attribution_problem(cfg: Any) -> str | None:
    """Why the attribution stage (Study A) cannot read a model of this config, None if it
    can: its model_type has no adapter (vermem.attribution.adapters), or a variant of a
    supported type that the adapter does not cover."""
    t = text_config(cfg)
    kind = cfg.model_type
    if kind not in SUPPORTED_MODEL_TYPES:
        return (f"model_type {kind!r} is not supported by the attribution stage (supported: "
                f"{', '.join(sorted(SUPPORTED_MODEL_TYPES))})")
    if kind == "gpt_neox" and not getattr(t, "use_parallel_residual", True):
        return "GPT-NeoX without parallel residual is not supported by the attribution stage"
    if kind == "opt" and not getattr(t, "do_layer_norm_before", True):
        return "OPT with post-LayerNorm (OPT-350m) is not supported by the attribution stage"
    if kind == "opt" and getattr(t, "word_embed_proj_dim", t.hidden_size) != t.hidden_size:
        return ("OPT with projected embeddings (word_embed_proj_dim != hidden_size) is not "
                "supported by the attribution stage")
    return None


def context_length(cfg: Any) -> int | None:
    """Positions the model can attend over, from its config; None if unbounded."""
    cfg = text_config(cfg)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        if getattr(cfg, key, None):
            return int(getattr(cfg, key))
    return None


@dataclass(frozen=True)
class Shape:
    """The components of a model the attribution graph is made of (vermem.attribution.graph):
    layers, query and key/value heads, width, and whether attention and MLP read the same
    residual. (The memory model's view of a model, with its vocabulary and dtype, is
    vermem.workflow.resources.Size.)"""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    parallel: bool  # attention and MLP read the same residual (GPT-NeoX, GPT-J, Phi)

    @classmethod
    def from_config(cls, cfg: Any) -> Shape:
        t = text_config(cfg)
        layers = getattr(t, "num_hidden_layers", None) or t.num_layers
        heads = getattr(t, "num_attention_heads", None) or t.num_heads
        kv = getattr(t, "num_key_value_heads", None) or heads
        parallel = (bool(getattr(t, "use_parallel_residual", False))
                    or t.model_type in ("gptj", "phi"))
        return cls(layers, heads, kv, t.hidden_size, parallel)
