"""One loader for every model the workflow studies.

A model is named in the config and is one of
- `hub`: a Hugging Face id with a `revision` (a branch, tag, commit, or a Pythia
  `stepN` checkpoint), fetched once by the `model_record` rule into the hub cache;
- `local`: a folder holding a saved Hugging Face model and tokenizer;
- `organism`: the tiny GPT-NeoX that the workflow trains itself (`vermem.organism`).

Every rule downstream reads the model's record (`model.json`), which names the folder to
load from, so all three kinds take one code path from there on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]


class ModelError(RuntimeError):
    """A model that cannot be found or loaded; the message names it."""


def resolve(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Locate a hub or local model and describe it: the record that `load` takes."""
    source = spec["source"]
    if source == "local":
        path = Path(spec["path"]).resolve()
        if not (path / "config.json").is_file():
            raise ModelError(f"models.{name}.path: no config.json in {path}")
        rec = {"source": "local", "path": str(path), "id": None, "revision": None,
               "commit": None}
    elif source == "hub":
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(spec["id"], revision=spec.get("revision", "main"),
                                          allow_patterns=_HUB_FILES))
        except Exception as e:  # offline, unknown id or revision, gated model
            raise ModelError(
                f"models.{name}: cannot fetch {spec['id']}@{spec.get('revision', 'main')} "
                f"from the hub ({type(e).__name__}: {e}). Offline? Download it where the hub "
                f"is reachable and use source: local with its folder."
            ) from None
        rec = {"source": "hub", "path": str(path), "id": spec["id"],
               "revision": spec.get("revision", "main"), "commit": path.name}
    else:
        raise ModelError(f"models.{name}: source {source!r} is not resolved by this rule")
    rec["name"] = name
    rec["dtype"] = spec.get("dtype", "float32")
    rec.update(describe_folder(Path(rec["path"])))
    return rec


def describe_folder(path: Path) -> dict[str, Any]:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(path)
    text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    return {
        "architecture": (cfg.architectures or [type(cfg).__name__])[0],
        "model_type": cfg.model_type,
        "n_layers": text_cfg.num_hidden_layers,
        "n_heads": text_cfg.num_attention_heads,
        "n_kv_heads": getattr(text_cfg, "num_key_value_heads", None)
        or text_cfg.num_attention_heads,
        "d_model": text_cfg.hidden_size,
        "vocab_size": text_cfg.vocab_size,
    }


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} asked for, but torch sees no CUDA device")
    return torch.device(device)


def load_tokenizer(record: Mapping[str, Any]):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(record["path"])


def load(record: Mapping[str, Any], device: str = "auto"):
    """(model in eval mode on `device`, tokenizer) from a model record."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # rule logs are files, not terminals
    dev = pick_device(device)
    try:
        model = AutoModelForCausalLM.from_pretrained(record["path"],
                                                     dtype=DTYPES[record["dtype"]])
    except OSError as e:
        raise ModelError(f"model {record['name']}: cannot load {record['path']}: {e}") from None
    model.to(dev).eval()
    return model, load_tokenizer(record)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
