import polars as pl
import pytest

from vermem.data import corpus
from vermem.data.settings import SampleSettings as S

from ..conftest import doc, write_jsonl

WIKI, CODE = "Wikipedia (en)", "Github"


@pytest.fixture
def shards(tmp_path):
    a = write_jsonl(tmp_path / "00.jsonl.zst",
                    [doc(f"wiki article number {i} " * 20, WIKI) for i in range(30)]
                    + [doc(f"def f{i}(): return {i}\n" * 10, CODE) for i in range(20)]
                    + [doc("short", WIKI), doc("an email", "Enron Emails")],
                    raw_lines={3: '{"text": "unterminated', 7: "[1, 2]",
                               9: '{"text": "x", "meta": {}}', 11: ""})
    b = write_jsonl(tmp_path / "01.jsonl", [doc(f"more wiki {i} " * 20, WIKI) for i in range(10)])
    return [a, b]


def test_reads_both_formats_and_reports_malformed_lines_with_file_and_line(shards):
    report = corpus.IngestReport()
    docs = list(corpus.iter_documents(shards, report))
    assert len(docs) == 62 and report.documents == 62
    assert report.per_subset == {WIKI: 41, CODE: 20, "Enron Emails": 1}
    assert report.blank == 1
    assert report.malformed == 3
    assert report.malformed_examples == [
        f"{shards[0]}:4: invalid JSON: Unterminated string starting at (column 10)",
        f"{shards[0]}:8: not a JSON object",
        f"{shards[0]}:10: missing 'meta.pile_set_name'",
    ]
    assert docs[0].doc_id == "00.jsonl.zst:1"
    assert {d.doc_id for d in docs} >= {"01.jsonl:1", "01.jsonl:10"}


def test_too_many_malformed_lines_fail_naming_the_first(shards):
    with pytest.raises(corpus.CorpusError, match=r"3 of 66 lines malformed .*00.jsonl.zst:4"):
        corpus.scan_candidates(shards, [WIKI], None, seed=0, max_malformed_fraction=0.01)


def test_truncated_zstd_shard_is_an_error_naming_the_file(tmp_path, shards):
    bad = tmp_path / "02.jsonl.zst"
    bad.write_bytes(shards[0].read_bytes()[:-40])
    with pytest.raises(corpus.CorpusError, match="02.jsonl.zst"):
        list(corpus.iter_documents([bad], corpus.IngestReport()))


def test_candidates_are_a_seeded_sample_independent_of_shard_order(shards):
    a, _ = corpus.scan_candidates(shards, [WIKI, CODE], 5, seed=1, max_malformed_fraction=1)
    b, _ = corpus.scan_candidates(shards[::-1], [WIKI, CODE], 5, seed=1, max_malformed_fraction=1)
    c, _ = corpus.scan_candidates(shards, [WIKI, CODE], 5, seed=2, max_malformed_fraction=1)
    assert a.equals(b)
    assert a.group_by("subset").len().sort("subset")["len"].to_list() == [5, 5]
    assert set(a["doc_id"]) != set(c["doc_id"])
    # the sample is the bottom-k of the seeded keys over the whole subset
    every, _ = corpus.scan_candidates(shards, [WIKI], None, seed=1, max_malformed_fraction=1)
    assert every.height == 41
    assert a.filter(pl.col("subset") == WIKI)["doc_id"].to_list() == every["doc_id"][:5].to_list()


def test_missing_subset_is_an_error_listing_what_is_there(shards):
    with pytest.raises(corpus.CorpusError, match=r"\['Pile-CC'\].*'Enron Emails', 'Github'"):
        corpus.scan_candidates(shards, [WIKI, "Pile-CC"], 5, seed=0, max_malformed_fraction=1)


def test_samples_drop_short_documents_and_split_prefix_continuation(shards, tokenizer):
    cands, _ = corpus.scan_candidates(shards, [WIKI, CODE], None, seed=0, max_malformed_fraction=1)
    df, summary = corpus.make_samples(cands, tokenizer, S(8, 4, per_subset=25))
    assert summary[WIKI] == {"candidates": 41, "too_short": 1, "kept": 25, "samples": 25}
    assert summary[CODE] == {"candidates": 20, "too_short": 0, "kept": 20, "samples": 20}
    assert df["offset"].unique().to_list() == [0]
    short = cands.filter(pl.col("text") == "short")["doc_id"].item()
    assert short not in df["doc_id"].to_list()
    assert set(df["prefix"].list.len()) == {8} and set(df["continuation"].list.len()) == {4}
    row = df.row(0, named=True)
    text = cands.filter(pl.col("doc_id") == row["doc_id"])["text"][0]
    assert row["prefix"] + row["continuation"] == tokenizer(text)["input_ids"][:12]
    assert df["dup_count"].is_null().all()


def test_samples_join_duplicate_counts(shards, tokenizer):
    cands, _ = corpus.scan_candidates(shards, [CODE], None, seed=0, max_malformed_fraction=1)
    dups = pl.DataFrame({"doc_id": cands["doc_id"], "dup_count": list(range(cands.height))},
                        schema_overrides={"dup_count": pl.Int32})
    df, _ = corpus.make_samples(cands, tokenizer, S(4, 4), dups)
    assert df.join(dups, on="doc_id")["dup_count"].equals(df["dup_count"])


def test_unplanted_cap_keeps_every_planted_document(shards, tokenizer):
    cands, _ = corpus.scan_candidates(shards, [WIKI], None, seed=0, max_malformed_fraction=1)
    order = cands.sort("key")["doc_id"].to_list()
    planted = order[-6:]  # the last in candidate order: a plain cap would drop them all
    dups = pl.DataFrame({"doc_id": order, "dup_count": [16 if d in planted else i % 2
                                                        for i, d in enumerate(order)]},
                        schema_overrides={"dup_count": pl.Int32})
    df, summary = corpus.make_samples(cands, tokenizer, S(8, 4, unplanted=5), dups)
    got = df["doc_id"].to_list()
    assert set(planted) <= set(got)
    ordinary = [d for d in got if d not in planted]
    assert ordinary == [d for d in order if d not in planted][:len(ordinary)]
    assert len(ordinary) == 5 and summary[WIKI]["kept"] == 11
    # without a duplicate table the cap means nothing: every document, as before
    every, _ = corpus.make_samples(cands, tokenizer, S(8, 4, unplanted=5))
    assert every.height == 40


def test_windows_are_the_documents_tokens_at_stride_offsets(shards, tokenizer):
    cands, _ = corpus.scan_candidates(shards, [WIKI, CODE], None, seed=0, max_malformed_fraction=1)
    one, _ = corpus.make_samples(cands, tokenizer, S(8, 4, per_subset=25))
    df, summary = corpus.make_samples(cands, tokenizer, S(8, 4, 25, windows=3, stride=5))
    # the same documents; each gives the windows at 0, 5, 10 that fit in it
    assert df["doc_id"].unique().sort().equals(one["doc_id"].unique().sort())
    assert df.filter(pl.col("offset") == 0).drop("offset").equals(one.drop("offset"))
    assert df.select("doc_id", "offset").is_unique().all()
    text_of = dict(cands.select("doc_id", "text").iter_rows())
    for doc_id, offsets in df.group_by("doc_id").agg("offset").iter_rows():
        ids = tokenizer(text_of[doc_id])["input_ids"]
        assert sorted(offsets) == [o for o in (0, 5, 10) if o + 12 <= len(ids)]
    for r in df.iter_rows(named=True):
        ids = tokenizer(text_of[r["doc_id"]])["input_ids"]
        assert r["prefix"] + r["continuation"] == ids[r["offset"]: r["offset"] + 12]
    assert summary[WIKI]["kept"] == 25 and summary[WIKI]["samples"] == (
        df.filter(pl.col("subset") == WIKI).height) > 25
    assert corpus.window_offsets(30, 12, 4, 8) == [0, 8, 16]
    assert corpus.window_offsets(11, 12, 4, 8) == []


def test_first_tokens_of_a_cut_equal_the_whole_texts_tokens(real_tokenizer):
    """Long documents are tokenized from a cut: the first n ids must not change."""
    texts = [
        "Lorem ipsum dolor sit amet, " * 400,
        "x" * 5000 + " tail",                     # one huge pre-token across the cut
        "def f(x):\n" + "    y = x ** 2  # ünïcödé\n" * 300,
        "a" + " " * 4000 + "b",                    # whitespace run across the cut
    ]
    for text in texts:
        for n in (16, 64, 100):
            full = real_tokenizer(text, add_special_tokens=False)["input_ids"]
            assert corpus.first_tokens(real_tokenizer, text, n) == (
                full[:n] if len(full) >= n else None)


def test_real_tokenizer_prefix_is_pythia_tokenization(real_tokenizer):
    ids = corpus.first_tokens(real_tokenizer, "Hello world, this is the Pile. " * 10, 5)
    assert ids == [12092, 1533, 13, 436, 310]


# -- the shard reader on arbitrary input (property-based) --------------------------------

import json  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
texts = st.text(st.characters(blacklist_categories=["Cs"]), max_size=200)
records = st.lists(st.tuples(texts, st.sampled_from(["A", "B", "Ünï €"])), max_size=12)


def _read(path):
    report = corpus.IngestReport()
    docs = list(corpus.iter_documents([path], report))
    return docs, report


def _shard(tmp_path, name, blob: bytes):
    if name.endswith(".zst"):
        import zstandard

        blob = zstandard.ZstdCompressor().compress(blob)
    path = tmp_path / name
    path.write_bytes(blob)
    return path


@PROPERTY
@given(blob=st.binary(max_size=2000), zst=st.booleans())
def test_random_bytes_are_documents_malformed_lines_or_one_corpus_error(tmp_path, blob, zst):
    path = _shard(tmp_path, "r.jsonl.zst" if zst else "r.jsonl", blob)
    try:
        docs, report = _read(path)
    except corpus.CorpusError as e:  # not UTF-8: named by file and line, one line
        assert str(path) in str(e) and "\n" not in str(e)
        return
    assert report.lines == (report.documents + report.blank + report.malformed + report.empty
                            + report.whitespace)
    assert len(docs) == report.documents
    assert all(isinstance(d.text, str) for d in docs)


@PROPERTY
@given(recs=records, crlf=st.booleans(), bom=st.booleans(), blanks=st.integers(0, 3),
       zst=st.booleans())
def test_any_unicode_crlf_bom_and_empty_lines_read_back_exactly(tmp_path, recs, crlf, bom,
                                                              blanks, zst):
    eol = "\r\n" if crlf else "\n"
    lines = []
    for text, subset in recs:
        lines += [json.dumps({"text": text, "meta": {"pile_set_name": subset}},
                             ensure_ascii=False)] + [""] * blanks
    blob = (("\ufeff" if bom else "") + (eol.join(lines) + eol if lines else "")).encode()
    docs, report = _read(_shard(tmp_path, "u.jsonl.zst" if zst else "u.jsonl", blob))
    # documents whose text is empty or whitespace only are counted, not read (issue 35)
    assert [(d.text, d.subset) for d in docs] == [(t, s) for t, s in recs if t.strip()]
    assert report.empty + report.whitespace == sum(not t.strip() for t, _ in recs)
    assert report.malformed == 0
    assert report.blank == blanks * len(recs)
    # doc ids are file:line, counting the empty lines
    assert [int(d.doc_id.rsplit(":", 1)[1]) for d in docs] == [
        1 + i * (blanks + 1) for i, (t, _) in enumerate(recs) if t.strip()]


@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(1 << 20, 3 << 20), char=st.sampled_from(["a", "é", "€", "𝄞"]))
def test_lines_longer_than_a_read_chunk_survive_whole(tmp_path, size, char):
    text = char * (size // len(char.encode()))  # multi-byte characters cut across chunks
    path = write_jsonl(tmp_path / "long.jsonl.zst", [doc(text, "A"), doc("short", "B")])
    docs, report = _read(path)
    assert [d.text for d in docs] == [text, "short"]
    assert report.lines == 2


def test_bom_shard_loses_no_document(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(doc("first", "A")).encode() + b"\r\n")
    docs, report = _read(path)
    assert [d.text for d in docs] == ["first"] and report.malformed == 0
