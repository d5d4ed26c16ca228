"""Start-up checks of the model files, before any job (rules/common.smk, `onstart`; a dry
run skips them): what the parse-time config check (vermem.workflow.config) leaves to the
jobs because it needs a file read, each one line naming the config key and the file.

- a `source: gguf` model's file: GGUF, and whole (its header, tensor count and the data
  its tensors need, `gguf_convert.read_header`; the weights are not read);
- the components of a localized injection (`injection.trainable`) exist in its base
  model: the organism's shape from the config, a local model's from its config.json, a
  GGUF model's from its header (a hub model's is known once fetched: `inject_model`);

(A Study B model's letters are checked at parse time, `vermem.models.loading.check_letters`.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vermem.core.errors import VermemError
from vermem.workflow.config import ConfigError


def check_models_at_start(config: Mapping[str, Any]) -> None:
    """The checks of the module's docstring. Raises ConfigError (one line)."""
    from vermem.models import gguf_convert

    shapes: dict[str, tuple[int, int] | None] = {}
    for name, spec in config["models"].items():
        if spec["source"] == "gguf":
            path = gguf_convert.locate(name, spec)  # (its errors name the key)
            try:
                header = gguf_convert.read_header(path)
            except VermemError as e:
                key = "path" if spec.get("path") is not None else "package"
                raise ConfigError(f"config error at models.{name}.{key}: {e}") from None
            shapes[name] = gguf_shape(header["metadata"])
        elif spec["source"] == "local":
            shapes[name] = config_shape(Path(spec["path"]) / "config.json")
        elif spec["source"] == "organism" and config.get("organism"):
            arch = config["organism"]["architecture"]
            shapes[name] = (arch["layers"], arch["heads"])
    for name, spec in config["models"].items():
        if spec["source"] == "injected" and spec["injection"].get("trainable"):
            check_trainable(name, spec, shapes.get(spec["base"]), config["models"])


def gguf_shape(meta: Mapping[str, Any]) -> tuple[int, int] | None:
    """(layers, heads) from a GGUF header's metadata; None where it does not say."""
    arch = meta.get("general.architecture")
    layers, heads = meta.get(f"{arch}.block_count"), meta.get(f"{arch}.attention.head_count")
    return (int(layers), int(heads)) if isinstance(layers, int) and isinstance(heads, int) \
        else None


def config_shape(path: Path) -> tuple[int, int] | None:
    """(layers, heads) from a Hugging Face config.json (its text config, for a model that
    nests one); None where it does not say."""
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):  # the folder check (check_models) names what is wrong
        return None
    cfg = cfg.get("text_config") or cfg
    layers, heads = cfg.get("num_hidden_layers"), cfg.get("num_attention_heads")
    return (layers, heads) if isinstance(layers, int) and isinstance(heads, int) else None


def check_trainable(name: str, spec: Mapping[str, Any], shape: tuple[int, int] | None,
                    models: Mapping[str, Any]) -> None:
    """Every component of models.`name`.injection.trainable is in its base model of
    `shape` (layers, heads); nothing is checked where the shape is unknown (a hub base)."""
    from vermem.models.injection import InjectionError, components

    where = f"config error at models.{name}.injection.trainable"
    try:
        comps = components(spec["injection"]["trainable"])
    except InjectionError as e:
        raise ConfigError(f"{where}: {str(e).split(': ', 1)[-1]}") from None
    if shape is None:
        return
    layers, heads = shape
    base = spec["base"]
    source = models[base]["source"]
    whence = {"organism": "organism.architecture", "local": f"{models[base].get('path')}/"
              "config.json", "gguf": "its GGUF header"}.get(source, source)
    for c in comps:
        if not 0 <= c.layer < layers or (c.head is not None and not 0 <= c.head < heads):
            raise ConfigError(f"{where}: {c.node} is not in the base model {base} ({layers} "
                              f"layers of {heads} heads, from {whence})")
