"""An offline stand-in for the Pile, built from text every Python install carries.

Three domains, each written with its own `pile_set_name` and marked as a stand-in in
`meta` (`standin: true`, `standin_for: <Pile subset>`):

- code: top-level functions and classes of the standard library's sources (for "Github");
- docstrings: module, class and function docstrings, prose about code (for "Wikipedia (en)");
- reference: the language reference topics shipped in `pydoc_data` (for "Pile-CC").

Exact and near duplicates (same first `dedup_chars` characters after whitespace
normalisation, with string literals and numbers blanked) are removed, so that the only
repeated documents in a model organism's training data are the ones it plants on purpose
and their duplicate counts are ground truth.
"""

from __future__ import annotations

import ast
import inspect
import json
import random
import re
import sys
import sysconfig
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from vermem.core.files import atomic_path

# tests, vendored or generated code (encodings/: one template per codec)
SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "ensurepip", "encodings",
             "site-packages", "dist-packages", "__pycache__", "pydoc_data", "tkinter"}
KINDS = ("code", "docstrings", "reference")


def stdlib_files(root: Path | None = None) -> list[Path]:
    root = Path(root or sysconfig.get_paths()["stdlib"])
    files = [p for p in root.rglob("*.py")
             if not SKIP_DIRS.intersection(p.relative_to(root).parts[:-1])]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _cut(text: str, max_chars: int) -> str:
    """At most `max_chars`, cut at the last line break inside the limit."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    nl = head.rfind("\n")
    return head[:nl] if nl > max_chars // 2 else head


def _parse(path: Path) -> ast.Module | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return None


def stdlib_documents(root: Path | None = None) -> dict[str, list[tuple[str, str]]]:
    """(source, text) per kind, from one parse of each standard-library file:
    'code', each top-level function or class; 'docstrings', each module, class and
    function docstring."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    out: dict[str, list[tuple[str, str]]] = {"code": [], "docstrings": []}
    defs = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    for path in stdlib_files(root):
        tree = _parse(path)
        if tree is None:
            continue
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        rel = path.relative_to(root).as_posix()
        for node in tree.body:  # top level: starts at column 0, ends at a line's end
            if isinstance(node, defs) and node.end_lineno:
                seg = "".join(lines[node.lineno - 1: node.end_lineno]).rstrip("\n")
                out["code"].append((f"{rel}:{node.lineno}", seg))
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | defs) and (doc := ast.get_docstring(node)):
                out["docstrings"].append((f"{rel}:{getattr(node, 'lineno', 0)}", doc))
    return out


def reference_documents() -> Iterator[tuple[str, str]]:
    """(source, text) for runs of paragraphs of the language reference topics."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        paras = [p.strip("\n") for p in re.split(r"\n\s*\n", inspect.cleandoc(topics[name]))]
        chunk: list[str] = []
        start = 0
        for i, p in enumerate(paras):
            chunk.append(p)
            if sum(len(c) for c in chunk) >= 300:
                yield f"{name}#{start}", "\n\n".join(chunk)
                chunk, start = [], i + 1
        if chunk:
            yield f"{name}#{start}", "\n\n".join(chunk)


_LITERAL = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"|\d+")


def _norm_head(text: str, n: int) -> str:
    """Dedup key: the first n characters, whitespace collapsed, literals and numbers
    blanked (templated code differs only in those)."""
    return _LITERAL.sub("_", " ".join(text.split()))[:n]


def select(
    docs: Iterator[tuple[str, str]],
    min_chars: int,
    max_chars: int,
    max_docs: int,
    seed: int,
    seen_heads: set[str],
    dedup_chars: int,
) -> list[tuple[str, str]]:
    """Cut, filter and de-duplicate, then a seeded choice of at most `max_docs`."""
    pool = []
    for source, text in docs:
        text = _cut(text, max_chars)
        if len(text) < min_chars:
            continue
        head = _norm_head(text, dedup_chars)
        if head in seen_heads:
            continue
        seen_heads.add(head)
        pool.append((source, text))
    random.Random(seed).shuffle(pool)
    return pool[:max_docs]


def build(domains: Mapping[str, Mapping[str, Any]], min_chars: int, max_chars: int,
          dedup_chars: int, seed: int, stdlib_root: Path | None = None,
          ) -> list[dict[str, Any]]:
    """Pile-format records of every configured domain, in a seeded shuffled order."""
    sources = stdlib_documents(stdlib_root)
    sources["reference"] = list(reference_documents())
    seen: set[str] = set()
    records = []
    for kind in KINDS:
        if kind not in domains:
            continue
        d = domains[kind]
        chosen = select(iter(sources[kind]), min_chars, max_chars, d["max_docs"], seed, seen,
                        dedup_chars)
        for source, text in chosen:
            records.append({"text": text, "meta": {
                "pile_set_name": d["pile_set_name"], "standin": True,
                "standin_for": d["standin_for"], "source": source,
                "python": sys.version.split()[0]}})
    random.Random(seed + 1).shuffle(records)
    return records


def write_shards(records: Sequence[Mapping[str, Any]], paths: Sequence[str | Path]) -> None:
    """Round-robin the records over Pile-format shards (`.jsonl.zst` or `.jsonl`)."""
    import zstandard

    for i, path in enumerate(paths):
        blob = "".join(json.dumps(r, ensure_ascii=False) + "\n"
                       for r in records[i::len(paths)]).encode()
        with atomic_path(path) as tmp:
            if str(path).endswith(".zst"):
                blob = zstandard.ZstdCompressor(level=10).compress(blob)
            tmp.write_bytes(blob)


def summary(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    chars: dict[str, int] = {}
    for r in records:
        name = r["meta"]["pile_set_name"]
        counts[name] = counts.get(name, 0) + 1
        chars[name] = chars.get(name, 0) + len(r["text"])
    return {"python": sys.version.split()[0], "documents": counts, "characters": chars}
