"""Pile shards in, token-id samples out (docs/study-a.md §1).

Two steps, so that the expensive scan of the shards happens once however many models are
studied:

1. `scan_candidates`: stream every shard (`.jsonl` or `.jsonl.zst`), keep the configured
   `pile_set_name` subsets, and keep per subset the `k` documents with the smallest seeded
   hash key (a uniform sample without replacement that does not depend on shard order).
   Malformed lines are counted with file and line number.
2. `make_samples`: per model, walk each subset's candidates in key order, tokenize, drop
   documents shorter than prefix + continuation tokens, keep the first `n`; each kept
   document gives the window at its start and, when asked, windows at further offsets.
"""

from __future__ import annotations

import codecs
import hashlib
import heapq
import io
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from vermem.core.errors import VermemError
from vermem.data.settings import SampleSettings

log = logging.getLogger(__name__)

MAX_REPORTED_MALFORMED = 100


@dataclass(frozen=True)
class Document:
    doc_id: str  # "<shard file name>:<line number>", stable across runs and machines
    subset: str
    text: str
    meta: dict[str, Any]


@dataclass
class IngestReport:
    """What the scan of the shards read: lines, blank lines, documents, documents whose
    text is empty or whitespace only (counted, never sampled), malformed lines; in total
    and per file (`per_file`, by path as configured; a shard without documents is named in
    `shards_without_documents`)."""

    lines: int = 0
    blank: int = 0
    documents: int = 0
    empty: int = 0  # documents whose text is "" (skipped)
    whitespace: int = 0  # documents whose text is whitespace only (skipped)
    per_subset: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    malformed_examples: list[str] = field(default_factory=list)  # "file:line: reason"
    per_file: dict[str, dict[str, int]] = field(default_factory=dict)

    def add_malformed(self, path: Path, lineno: int, reason: str) -> None:
        self.malformed += 1
        where = f"{path}:{lineno}: {reason}"
        log.warning("malformed line %s", where)
        if len(self.malformed_examples) < MAX_REPORTED_MALFORMED:
            self.malformed_examples.append(where)

    def file(self, path: Path) -> dict[str, int]:
        """The counts of one file, started at zero when it is first read."""
        return self.per_file.setdefault(str(path), dict.fromkeys(FILE_COUNTS, 0))

    def without_documents(self) -> list[str]:
        return [p for p, c in self.per_file.items() if not c["documents"]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "blank_lines": self.blank,
            "documents": self.documents,
            "documents_per_subset": dict(sorted(self.per_subset.items())),
            "empty_documents": self.empty,
            "whitespace_documents": self.whitespace,
            "malformed_lines": self.malformed,
            "malformed_examples": self.malformed_examples,
            "per_file": self.per_file,
            "shards_without_documents": self.without_documents(),
        }


# the counts of `IngestReport.per_file`, per file
FILE_COUNTS = ("lines", "blank_lines", "documents", "empty_documents", "whitespace_documents",
               "malformed_lines")


class CorpusError(VermemError, ValueError):
    """Bad corpus input; the message names the file (and line) at fault."""


def _zst_chunks(fh: io.BufferedReader, size: int = 1 << 20) -> Iterator[bytes]:
    """Decompressed bytes of a (multi-frame) zstd stream; a truncated frame is an error."""
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    obj, pending = dctx.decompressobj(), False
    while data := fh.read(size):
        while data:
            pending = True
            yield obj.decompress(data)
            if obj.eof:
                data, obj, pending = obj.unused_data, dctx.decompressobj(), False
            else:
                data = b""
    if pending:
        raise OSError("truncated zstd stream (incomplete last frame)")


def open_lines(path: str | Path) -> Iterator[str]:
    """Lines (split at \\n only; a UTF-8 byte-order mark at the start is dropped) of a
    `.jsonl` or `.jsonl.zst` shard, as a stream. A line that is not UTF-8 is a CorpusError
    naming the file and the line (split first, decoded line by line: \\n is never part of
    a multi-byte UTF-8 character)."""
    path = Path(path)
    with path.open("rb") as fh:
        chunks = _zst_chunks(fh) if path.suffix == ".zst" else iter(lambda: fh.read(1 << 20), b"")
        rest, lineno = b"", 0
        for chunk in chunks:
            *lines, rest = (rest + chunk).split(b"\n")
            for raw in lines:
                lineno += 1
                yield _decode(raw, path, lineno)
        if rest and not (lineno == 0 and rest == codecs.BOM_UTF8):  # (a BOM alone: no line)
            yield _decode(rest, path, lineno + 1)


def _decode(raw: bytes, path: Path, lineno: int) -> str:
    if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start + 1} "
                          f"of the line)") from None


def parse_line(line: str) -> tuple[str, str, dict[str, Any]]:
    """(text, pile_set_name, meta) of one Pile line; ValueError says what is wrong."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    text, meta = rec.get("text"), rec.get("meta")
    if not isinstance(text, str):
        raise ValueError("missing or non-string 'text'")
    if not isinstance(meta, dict) or not isinstance(meta.get("pile_set_name"), str):
        raise ValueError("missing 'meta.pile_set_name'")
    return text, meta["pile_set_name"], meta


def iter_documents(paths: Iterable[str | Path], report: IngestReport) -> Iterator[Document]:
    """The documents of the shards in order, counted in `report`. Documents whose text is
    empty or whitespace only are counted there and skipped (nothing to sample)."""
    for path in map(Path, paths):
        lineno = 0
        counts = report.file(path)
        try:
            for lineno, line in enumerate(open_lines(path), start=1):
                report.lines += 1
                counts["lines"] += 1
                if not line.strip():
                    report.blank += 1
                    counts["blank_lines"] += 1
                    continue
                try:
                    text, subset, meta = parse_line(line)
                except ValueError as e:
                    report.add_malformed(path, lineno, str(e))
                    counts["malformed_lines"] += 1
                    continue
                if not text.strip():
                    kind = "whitespace" if text else "empty"
                    setattr(report, kind, getattr(report, kind) + 1)
                    counts[f"{kind}_documents"] += 1
                    continue
                report.documents += 1
                counts["documents"] += 1
                report.per_subset[subset] = report.per_subset.get(subset, 0) + 1
                yield Document(f"{path.name}:{lineno}", subset, text, meta)
        except OSError as e:  # truncated or corrupt zstd frame, unreadable file
            raise CorpusError(f"{path}: cannot read after line {lineno}: {e}") from None
        if not counts["documents"]:
            log.warning("shard %s holds no documents (%s)", path, counts)


def sample_key(seed: int, doc_id: str) -> int:
    h = hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") >> 1  # fits a signed 64-bit column


def scan_candidates(
    paths: Sequence[str | Path],
    subsets: Sequence[str],
    per_subset: int | None,
    seed: int,
    max_malformed_fraction: float = 0.0,
) -> tuple[pl.DataFrame, IngestReport]:
    """The `per_subset` lowest-key documents of each wanted subset (all if None)."""
    wanted = set(subsets)
    heaps: dict[str, list[tuple[int, str, str, str]]] = {s: [] for s in subsets}
    report = IngestReport()
    for doc in iter_documents(paths, report):
        if doc.subset not in wanted:
            continue
        item = (-sample_key(seed, doc.doc_id), doc.doc_id, doc.text, json.dumps(doc.meta))
        heap = heaps[doc.subset]
        if per_subset is None or len(heap) < per_subset:
            heapq.heappush(heap, item)
        elif item[0] > heap[0][0]:
            heapq.heapreplace(heap, item)
    if report.lines and report.malformed / report.lines > max_malformed_fraction:
        raise CorpusError(
            f"{report.malformed} of {report.lines} lines malformed "
            f"(allowed fraction {max_malformed_fraction}); first: {report.malformed_examples[0]}"
        )
    missing = [s for s in subsets if not heaps[s]]
    if missing:
        empty = report.without_documents()
        raise CorpusError(
            f"no documents of subset(s) {missing} in {len(paths)} shard(s) "
            f"{[str(p) for p in paths]}; subsets present: {sorted(report.per_subset)}"
            + (f"; without any document: {empty}" if empty else "")
        )
    rows = [
        {"subset": s, "key": -k, "doc_id": d, "text": t, "meta": m}
        for s, heap in heaps.items()
        for k, d, t, m in heap
    ]
    df = pl.DataFrame(
        rows,
        schema={"subset": pl.String, "key": pl.Int64, "doc_id": pl.String,
                "text": pl.String, "meta": pl.String},
    ).sort("subset", "key")
    return df, report


def first_tokens(tokenizer: Any, text: str, n: int, at_least: int | None = None,
                 ) -> list[int] | None:
    """The first `n` token ids of `text` as the tokenizer splits the whole text, or None.

    With `at_least`, a text of fewer than `n` (but at least `at_least`) tokens gives all
    its tokens. Long documents are tokenized from a cut. BPE merges never cross a pre-token
    boundary, so tokens that end before the cut text's last two pre-tokens are the whole
    text's tokens; otherwise (or without a pre-tokenizer) the whole text is tokenized.
    """
    bt = tokenizer.backend_tokenizer if hasattr(tokenizer, "backend_tokenizer") else tokenizer
    cut_at = 32 * n
    if len(text) > cut_at and bt.pre_tokenizer is not None:
        cut = text[:cut_at]
        enc = bt.encode(cut, add_special_tokens=False)
        if len(enc.ids) > n:
            norm = bt.normalizer.normalize_str(cut) if bt.normalizer is not None else cut
            pre = bt.pre_tokenizer.pre_tokenize_str(norm)
            safe_end = pre[-2][1][0] if len(pre) >= 2 else 0
            if enc.offsets[n - 1][1] <= safe_end:
                return list(enc.ids[:n])
    ids = bt.encode(text, add_special_tokens=False).ids
    return list(ids[:n]) if len(ids) >= (n if at_least is None else at_least) else None


def window_offsets(n_tokens: int, width: int, windows: int, stride: int) -> list[int]:
    """Token offsets of the (at most `windows`) samples of a document of `n_tokens`
    tokens: 0, stride, 2 * stride, ... while a whole window of `width` tokens fits."""
    return [k * stride for k in range(windows) if k * stride + width <= n_tokens]


def make_samples(
    candidates: pl.DataFrame,
    tokenizer: Any,
    settings: SampleSettings,
    dup_counts: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, dict[str, dict[str, int]]]:
    """Samples of P + C tokens, split into prefix and continuation: per document, the
    window at token offset 0 (the paper's one sample per document) and, with `windows` > 1,
    the windows at offsets stride, 2 * stride, ... that fit in the document. `per_subset`
    counts documents. A sample is (doc_id, offset). With a duplicate table, `unplanted`
    caps the documents per subset that were not planted (count <= 1: unseen or seen once,
    in candidate order) while every planted document is sampled: the ground truth whole,
    the ordinary text at a chosen cost. `settings` (SampleSettings): P, C, `per_subset`,
    `windows`, `stride` and `unplanted`."""
    prefix_tokens, continuation_tokens = settings.prefix_tokens, settings.continuation_tokens
    per_subset, windows, stride = settings.per_subset, settings.windows, settings.stride
    unplanted = settings.unplanted
    n = prefix_tokens + continuation_tokens
    if dup_counts is None:
        unplanted = None  # no ground truth: nothing is planted, the cap does not apply
    planted = (set() if unplanted is None else
               set(dup_counts.filter(pl.col("dup_count") > 1)["doc_id"].to_list()))
    rows, summary = [], {}
    for subset, group in candidates.sort("subset", "key").group_by("subset", maintain_order=True):
        kept = short = n_windows = ordinary = 0
        for doc_id, text in group.select("doc_id", "text").iter_rows():
            if per_subset is not None and kept >= per_subset:
                break
            if unplanted is not None and doc_id not in planted and ordinary >= unplanted:
                continue
            ids = first_tokens(tokenizer, text, n + (windows - 1) * stride, at_least=n)
            if ids is None:
                short += 1
                continue
            kept += 1
            ordinary += doc_id not in planted
            for off in window_offsets(len(ids), n, windows, stride):
                w = ids[off: off + n]
                rows.append({"doc_id": doc_id, "offset": off, "subset": subset[0],
                             "prefix": w[:prefix_tokens], "continuation": w[prefix_tokens:]})
                n_windows += 1
        summary[subset[0]] = {"candidates": group.height, "too_short": short, "kept": kept,
                              "samples": n_windows}
        if kept == 0:  # degenerate, not an error: its tables downstream say n = 0
            log.warning("subset %r: no samples (n = 0): all %d candidates are shorter than "
                        "prefix + continuation (%d tokens)", subset[0], group.height, n)
        elif per_subset is not None and kept < per_subset:
            log.warning("subset %r: only %d of %d wanted samples (%d candidates too short)",
                        subset[0], kept, per_subset, short)
    df = pl.DataFrame(rows, schema={"doc_id": pl.String, "offset": pl.Int32,
                                    "subset": pl.String, "prefix": pl.List(pl.Int32),
                                    "continuation": pl.List(pl.Int32)})
    if dup_counts is not None:
        df = df.join(dup_counts.select("doc_id", "dup_count"), on="doc_id", how="left")
    else:
        df = df.with_columns(pl.lit(None, dtype=pl.Int32).alias("dup_count"))
    return df, summary
