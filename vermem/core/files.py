"""Files passed between rules: written atomically, stamped with their provenance.

Every writer goes through `atomic_path`: the data lands under a temporary name in the
target folder and is renamed into place only once complete, so a job killed mid-write
leaves nothing that a rerun could take for a finished output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

PROVENANCE_KEY = "vermem.provenance"
_PACKAGES = ("vermem", "torch", "transformers", "tokenizers", "nnsight", "polars", "snakemake")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, (0o777 if directory else 0o666) & ~_umask())
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def package_versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def config_hash(config: Mapping[str, Any]) -> str:
    """Stable short hash of a (sub-)config: key order and YAML formatting do not matter."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def provenance(config: Mapping[str, Any] | None = None, model: str | None = None,
               revision: str | None = None, **fields: Any) -> dict[str, Any]:
    """What made an output: the model and its revision (None where no model made it, and
    for the organism, whose recipe hash is its record's `commit`), the config slice's hash,
    package versions, and any fields given."""
    rec: dict[str, Any] = {"model": model, "revision": revision, **fields}
    if config is not None:
        rec["config_hash"] = config_hash(config)
    rec["packages"] = package_versions()
    return rec


def write_parquet(df: pl.DataFrame, path: str | os.PathLike, prov: Mapping | None = None) -> None:
    meta = {PROVENANCE_KEY: json.dumps(prov, sort_keys=True)} if prov is not None else None
    with atomic_path(path) as tmp:
        # statistics off and one row group: the bytes depend on the data alone
        df.write_parquet(tmp, metadata=meta, statistics=False, row_group_size=1 << 30)


def read_provenance(path: str | os.PathLike) -> dict[str, Any]:
    meta = pl.read_parquet_metadata(path)
    return json.loads(meta[PROVENANCE_KEY]) if PROVENANCE_KEY in meta else {}


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):  # numpy / torch scalars
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
