"""Degenerate shards (issue 35): documents whose text is whitespace only or empty are counted
per file in the ingest report and never sampled; a shard without documents is named, in
the report and in the error when nothing is left; a non-UTF-8 line is named by its number."""

import json

import pytest

from vermem.data import corpus

from ..conftest import doc, write_jsonl

SUBSET = "Wikipedia (en)"


def _scan(paths):
    return corpus.scan_candidates(paths, [SUBSET], None, seed=0)


def test_whitespace_and_empty_documents_are_counted_per_file_and_never_candidates(tmp_path):
    real = write_jsonl(tmp_path / "real.jsonl", [doc(f"text number {i}", SUBSET)
                                                 for i in range(5)])
    blank = write_jsonl(tmp_path / "blank.jsonl.zst", [doc(" \n\t ", SUBSET)] * 3
                        + [doc("", SUBSET)] * 2)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    df, report = _scan([real, blank, empty])
    assert df.height == 5 and all(t.strip() for t in df["text"])
    d = json.loads(json.dumps(report.as_dict()))  # as written to ingest.json
    print(json.dumps({k: d[k] for k in ("per_file", "shards_without_documents")}, indent=1))
    assert d["documents"] == 5
    assert d["whitespace_documents"] == 3 and d["empty_documents"] == 2
    assert d["per_file"][str(blank)] == {"lines": 5, "blank_lines": 0, "documents": 0,
                                         "empty_documents": 2, "whitespace_documents": 3,
                                         "malformed_lines": 0}
    assert d["per_file"][str(empty)]["lines"] == 0
    assert d["per_file"][str(real)]["documents"] == 5
    assert d["shards_without_documents"] == [str(blank), str(empty)]


def test_an_empty_shard_alone_is_named_in_its_error(tmp_path):
    empty = tmp_path / "00.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(corpus.CorpusError) as e:
        _scan([empty])
    assert str(empty) in str(e.value) and "without any document" in str(e.value)
    assert "\n" not in str(e.value)


def test_a_non_utf8_line_is_named_by_its_number(tmp_path):
    lines = [json.dumps(doc(f"line {i}", SUBSET)).encode() for i in range(5)]
    lines[3] = b'{"text": "caf\xe9", "meta": {"pile_set_name": "x"}}'
    for name in ("bad.jsonl", "bad.jsonl.zst"):
        blob = b"\n".join(lines) + b"\n"
        if name.endswith(".zst"):
            import zstandard

            blob = zstandard.ZstdCompressor().compress(blob)
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(corpus.CorpusError, match=rf"{path}:4: not UTF-8"):
            _scan([path])
