"""One loader for every model the workflow studies.

A model is named in the config and is one of
- `hub`: a Hugging Face id with a `revision` (a branch, tag, commit, or a Pythia
  `stepN` checkpoint), fetched once by the `model_record` rule into the hub cache;
- `local`: a folder holding a saved Hugging Face model and tokenizer;
- `organism`: the tiny GPT-NeoX that the workflow trains itself (`vermem.models.organism`);
- `gguf`: a llama.cpp GGUF file (a `path`, or the file an installed `package` ships),
  converted once by the gguf_model rule into a float32 folder (`vermem.models.gguf_convert`);
- `injected`: another model (`base`) trained further on planted documents by the
  inject_model rule (`vermem.models.injection`).

Every rule downstream reads the model's record (`model.json`), which names the folder to
load from, so all kinds take one code path from there on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vermem.core.errors import VermemError, one_line
from vermem.models.architecture import (
    CONFIG_FILE,
    attribution_problem,
    context_length,
    read_config,
    text_config,
)

if TYPE_CHECKING:  # torch is imported where a model is loaded: rules/common.smk imports
    import torch  # this module to parse the workflow, which must not import torch

log = logging.getLogger(__name__)

_HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]


class ModelError(VermemError, RuntimeError):
    """A model that cannot be found or loaded; the message names it."""


# a sample every checked tokenizer must encode and decode back (up to whitespace)
ROUND_TRIP_SAMPLE = ("The quick brown fox jumps over the lazy dog.\n"
                     "def area(r):\n    return 3.14159 * r ** 2  # (0-9)\n")


def requirements(name: str, config: Mapping[str, Any]) -> tuple[int, str]:
    """(tokens of context the config asks of model `name`, what needs them)."""
    mem = config["memorization"]
    need, why = mem["prefix_tokens"] + mem["continuation_tokens"], "prefix + continuation"
    dyn = config.get("dynamics")
    if dyn and name in dyn["models"]:
        longest = max(max(dyn["grid"]["lengths"]), dyn["sequential"]["length"]) + 1
        if longest > need:
            need, why = longest, "the longest Study B string + BOS"
    return need, why


def studies_of(name: str, config: Mapping[str, Any]) -> tuple[str, ...]:
    """The studies that use model `name`: "A" (attribution) if the config runs Study A and
    the model is studied (`study`, default true), "B" if the config runs Study B on it."""
    studies = config.get("studies", ["A", "B"])
    out = []
    if "A" in studies and config["models"][name].get("study", True):
        out.append("A")
    dyn = config.get("dynamics")
    if "B" in studies and dyn and name in dyn["models"]:
        out.append("B")
    return tuple(out)


def study_b_letters(name: str, config: Mapping[str, Any]) -> int:
    """How many letters ('a', 'b', ...) Study B writes its strings for model `name` in (the
    largest alphabet of its grid and sequential strings), 0 if Study B does not use it."""
    if "B" not in studies_of(name, config):
        return 0
    dyn = config["dynamics"]
    return max(*dyn["grid"]["alphabet_sizes"], dyn["sequential"]["alphabet_size"])


def uses(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """What the studies ask of model `name` beyond its context (`requirements`): the
    `studies`, `letters` and `weights` keywords of `check_folder` (no weights for a model
    only Study B uses, from a random initialisation only: dynamics.model_inits)."""
    studies = studies_of(name, config)
    dyn = config.get("dynamics") or {}
    inits = (dyn.get("model_inits") or {}).get(name, dyn.get("inits", []))
    return {"studies": studies, "letters": study_b_letters(name, config),
            "weights": studies != ("B",) or "pretrained" in inits}


def check_models(config: Mapping[str, Any], planning: bool = False) -> None:
    """Check every local model folder before any job, and the subfolder of each checkpoint
    it lists (all but its tokenizer, which the checkpoint_record rule checks; hub models:
    in `resolve`, once fetched). Raises ModelError whose one line names the model key and
    what is wrong. `planning` (`vermem.workflow.config.planning`): a folder that is not on this
    machine is skipped (the plan assumes its shape, `vermem.workflow.resources.model_shape`)."""
    from vermem.core.naming import listed
    from vermem.models.gguf_convert import GGUFError, locate

    for name, spec in config["models"].items():
        if spec["source"] == "gguf":
            try:
                locate(name, spec)
            except GGUFError:
                if not planning:  # planning: a file or package not on this machine
                    raise
        if spec["source"] == "local":
            path, needs = Path(spec["path"]).resolve(), requirements(name, config)
            if planning and not path.exists():
                continue
            asks = uses(name, config)
            check_folder(path, f"config error at models.{name}.path", *needs, **asks)
            for checkpoint in listed(config, name):
                check_folder(path / checkpoint, checkpoint_where(name, checkpoint), *needs,
                             tokenizer=False, **asks)


def checkpoint_where(name: str, checkpoint: str) -> str:
    """Where an error of a local model's checkpoint subfolder is: its config key."""
    return f"config error at models.{name}.checkpoints ({checkpoint!r})"


def resolve(name: str, spec: Mapping[str, Any],
            needs: tuple[int, str] = (0, "prefix + continuation"),
            studies: tuple[str, ...] = ("A",), letters: int = 0,
            weights: bool = True) -> dict[str, Any]:
    """Locate a hub or local model, check it (`check_folder`, for `studies`, `letters` and
    `weights`) and describe it: the record that `load` takes."""
    source = spec["source"]
    if source == "local":
        path = Path(spec["path"]).resolve()
        where = f"config error at models.{name}.path"
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
                f"from the hub ({type(e).__name__}: {one_line(e, 200)}). Offline? Download it "
                f"where the hub is reachable and use source: local with its folder."
            ) from None
        where = f"models.{name} ({spec['id']}@{spec.get('revision', 'main')})"
        rec = {"source": "hub", "path": str(path), "id": spec["id"],
               "revision": spec.get("revision", "main"), "commit": path.name}
    else:
        raise ModelError(f"models.{name}: source {source!r} is not resolved by this rule")
    rec["name"] = name
    rec["dtype"] = spec.get("dtype", "float32")
    rec.update(check_folder(path, where, *needs, studies=studies, letters=letters,
                            weights=weights))
    return rec


def resolve_checkpoint(name: str, spec: Mapping[str, Any], final: Mapping[str, Any],
                       checkpoint: str, needs: tuple[int, str] = (0, "prefix + continuation")
                       ) -> dict[str, Any]:
    """The record of checkpoint `checkpoint` of model `name` (docs/study-a.md §12): a hub
    revision (fetched), a subfolder of a local model's folder, or a snapshot the organism
    saved (listed in its record `final`). Same keys as the model's record, plus
    `checkpoint` and `step`; checked like the model (`check_folder`)."""
    from vermem.core.naming import step_of

    source = spec["source"]
    if source == "hub":
        rec = resolve(name, {**spec, "revision": checkpoint}, needs)
        step = step_of(checkpoint)
    elif source == "local":
        path = Path(spec["path"]).resolve() / checkpoint
        rec = {"source": "local", "path": str(path), "id": None, "revision": checkpoint,
               "commit": None, "name": name, "dtype": spec.get("dtype", "float32"),
               **check_folder(path, checkpoint_where(name, checkpoint), *needs)}
        step = step_of(checkpoint)
    else:
        saved = {c["name"]: c for c in final.get("checkpoints", [])}
        if checkpoint not in saved:
            raise ModelError(f"models.{name}: its training saved no checkpoint {checkpoint!r} "
                             f"(saved: {sorted(saved)}); train it again with more checkpoints "
                             f"(organism.checkpoints, models.{name}.injection.checkpoints)")
        rec = {**final, "path": saved[checkpoint]["path"], "revision": checkpoint,
               **describe_folder(Path(saved[checkpoint]["path"]))}
        rec.pop("checkpoints", None)
        step = saved[checkpoint]["step"]
    return {**rec, "checkpoint": checkpoint, "step": step}


def check_folder(path: Path, where: str, need_context: int = 0,
                 why: str = "prefix + continuation", tokenizer: bool = True,
                 studies: tuple[str, ...] = ("A",), letters: int = 0,
                 weights: bool = True) -> dict[str, Any]:
    """Everything the studies that use a saved model (`studies`, `studies_of`) ask of it,
    without loading its weights: the folder, config.json, weights whose safetensors
    headers are whole (`safetensors_problem`), a context of `need_context` tokens, and
    (with `tokenizer`) a fast tokenizer that round-trips a sample and whose ids fit the
    embedding. Study A (attribution) also needs a model_type the attribution supports
    (`attribution_problem`); Study B needs weights it can train (not quantized) and, with
    `tokenizer`, its first `letters` letters each one token that round-trips. Raises
    ModelError '{where}: what is wrong'; returns `describe_folder`'s record. Without
    `weights` (a model built from its config only) weight files are not asked for."""
    if not path.is_dir():
        raise ModelError(f"{where}: no such folder {path}")
    if not (path / CONFIG_FILE).is_file():
        raise ModelError(f"{where}: no {CONFIG_FILE} in {path}")
    try:
        cfg = read_config(path)
    except Exception as e:  # invalid JSON, unknown model_type
        raise ModelError(f"{where}: cannot read {path / CONFIG_FILE}: "
                         f"{type(e).__name__}: {one_line(e, 200)}") from None
    text_cfg = text_config(cfg)
    problem = attribution_problem(cfg) if "A" in studies else None
    if problem:
        raise ModelError(f"{where}: Study A needs it: {problem}; to run Study B alone on it, "
                         f"set studies: [B]")
    if "B" in studies and getattr(cfg, "quantization_config", None):
        raise ModelError(f"{where}: Study B needs it: its weights are quantized and Study B "
                         f"fine-tunes every weight in float32; use unquantized weights")
    if weights and not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ModelError(f"{where}: no weights (*.safetensors or *.bin) in {path}")
    for weights in sorted(path.glob("*.safetensors")):
        problem = safetensors_problem(weights)
        if problem:
            raise ModelError(f"{where}: cannot read weight file {weights}: {problem}")
    context = context_length(text_cfg)
    if context is not None and context < need_context:
        raise ModelError(f"{where}: context of {context} tokens is shorter than {why} "
                         f"({need_context} tokens)")
    if not tokenizer:
        return describe_folder(path)
    tok = _checked_tokenizer(path, where)
    if letters:
        check_letters(tok, letters, where)
    vocab = text_cfg.vocab_size
    if len(tok) > vocab:
        raise ModelError(f"{where}: the tokenizer has {len(tok)} tokens but the embedding "
                         f"only {vocab} rows")
    return describe_folder(path)


def safetensors_problem(path: Path) -> str | None:
    """What makes `path` no safetensors file a model can load (None: nothing), from its
    header alone (8 bytes of length, then that many bytes of JSON naming every tensor's
    byte range): a truncated or corrupt file is named before any job rather than by the
    first job that loads it. (A `*.bin` file is not read: pickles have no cheap header.)"""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return f"{size} bytes, too short for a safetensors header"
        n = int.from_bytes(head, "little")
        if n > size - 8:
            return f"its header claims {n} bytes, the file has {size} (truncated?)"
        try:
            header = json.loads(fh.read(n))
            ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
            return (f"its header is not a safetensors header "
                    f"({type(e).__name__}: {one_line(e, 100)})")
    need = 8 + n + max(ends, default=0)
    if need != size:  # safetensors loads a file of exactly this size only
        why = "truncated?" if need > size else "bytes after the last tensor"
        return f"{size} bytes, its header describes {need} ({why})"
    return None


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def _checked_tokenizer(path: Path, where: str):
    from transformers import AutoTokenizer

    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ModelError(f"{where}: no tokenizer in {path} (none of {', '.join(TOKENIZER_FILES)}"
                         f"); save it there with tokenizer.save_pretrained")
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as e:  # no tokenizer files, unknown tokenizer class
        raise ModelError(f"{where}: no tokenizer loads from {path} "
                         f"({type(e).__name__}: {one_line(e, 200)})") from None
    if not getattr(tok, "is_fast", False):
        raise ModelError(f"{where}: the tokenizer in {path} is not a fast tokenizer "
                         f"(samples need its tokenizer.json)")
    ids = tok.backend_tokenizer.encode(ROUND_TRIP_SAMPLE, add_special_tokens=False).ids
    back = tok.decode(ids) if ids else ""
    if back.split() != ROUND_TRIP_SAMPLE.split():
        raise ModelError(f"{where}: the tokenizer in {path} does not round-trip a sample "
                         f"({len(ids)} tokens, decoded {one_line(repr(back), 60)})")
    return tok


def check_letters(tok, letters: int, where: str) -> None:
    """Study B writes its strings in the first `letters` lowercase letters, one token each
    (vermem.dynamics.strings.letter_tokens, which checks the same at its job)."""
    import string

    for c in string.ascii_lowercase[:letters]:
        ids = tok.encode(c, add_special_tokens=False)
        if len(ids) != 1 or tok.decode(ids) != c:
            raise ModelError(f"{where}: Study B needs it: letter {c!r} is not one token that "
                             f"round-trips (encodes to {ids}, decodes to {tok.decode(ids)!r})")


def describe_folder(path: Path) -> dict[str, Any]:
    cfg = read_config(path)
    text_cfg = text_config(cfg)
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


def cuda_problem(device: str) -> str | None:
    """Why `device` (cuda, cuda:N) cannot run on this host; None when it can, or is not
    CUDA. Imports torch only for a CUDA device."""
    if not device.startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return f"{device!r} asked for, but torch sees no CUDA device"
    index, count = int(device.partition(":")[2] or 0), torch.cuda.device_count()
    if index >= count:
        return f"{device!r} asked for, but torch sees {count} CUDA device(s)"
    return None


def check_device(config: Mapping[str, Any]) -> None:
    """The config's `device` can run on this host: the start-up check of a run whose jobs
    run here (rules/common.smk calls it only then). ModelError, one line, naming the key."""
    problem = cuda_problem(config["device"])
    if problem:
        raise ModelError(f"config error at device: {problem} on this host (a local run; "
                         f"device: auto runs on the CPU without one)")


def pick_device(device: str = "auto") -> torch.device:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    problem = cuda_problem(device)
    if problem:
        raise ModelError(f"device {problem}")
    return torch.device(device)


def _resolve_path(path: str, base: Path) -> str:
    """A record's folder `path` as an absolute path: as written when absolute; a relative
    one (the workflow writes the organism's relative to its working directory, e.g.
    results/models/organism/hf) under `base` or the nearest of its parents where it
    exists (unchanged when none has it)."""
    if Path(path).is_absolute():
        return path
    for folder in (base, *base.parents):
        if (folder / path).exists():
            return str((folder / path).resolve())
    return path


def load_record(path: str | Path) -> dict[str, Any]:
    """A model record (`model.json`, written by the model_record or train_organism rule)
    read from any directory: its relative folder paths (the model's, its checkpoints')
    resolved against the record file's location (`_resolve_path`), so that `load` finds
    the model from a notebook anywhere."""
    import json

    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read model record {path}: {one_line(e, 200)}") from None
    base = path.resolve().parent
    record["path"] = _resolve_path(record["path"], base)
    for c in record.get("checkpoints") or []:
        c["path"] = _resolve_path(c["path"], base)
    return record


def _record(record: Mapping[str, Any] | str | Path) -> Mapping[str, Any]:
    """`record`, or the record in the file it names (`load_record`); a relative folder path
    that does not exist from here is named, with the way to resolve it."""
    if not isinstance(record, Mapping):
        return load_record(record)
    if not Path(record["path"]).is_absolute() and not Path(record["path"]).exists():
        raise ModelError(f"model {record.get('name')}: folder {record['path']!r} is relative "
                         f"to the directory the record was written from; read the record "
                         f"with vermem.models.loading.load_record(path to its model.json)")
    return record


def load_tokenizer(record: Mapping[str, Any] | str | Path):
    """The tokenizer of a model record (or of the record file it names)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_record(record)["path"])


def load(record: Mapping[str, Any] | str | Path, device: str = "auto"):
    """(model in eval mode on `device`, tokenizer) from a model record, or from the path of
    a record file (`load_record`); float16 models in float32 on a CPU."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    record = _record(record)
    hf_logging.disable_progress_bar()  # rule logs are files, not terminals
    dev = pick_device(device)
    # the schema's dtypes (float32, bfloat16, float16) are torch's names; float16 is a GPU
    # format (Lasy et al. ran it there): on a CPU it runs in float32
    dtype = "float32" if dev.type == "cpu" and record["dtype"] == "float16" else record["dtype"]
    try:
        model = AutoModelForCausalLM.from_pretrained(record["path"],
                                                     dtype=getattr(torch, dtype))
    except OSError as e:
        raise ModelError(f"model {record['name']}: cannot load {record['path']}: {e}") from None
    model.to(dev).eval()
    return model, load_tokenizer(record)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
