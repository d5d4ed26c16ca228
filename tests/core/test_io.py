import os
import stat

import polars as pl
import pytest

from vermem.core import files


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError), files.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_whole_folder(tmp_path):
    target = tmp_path / "model"
    with files.atomic_path(target, directory=True) as tmp:
        (tmp / "a").write_text("1")
    with files.atomic_path(target, directory=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_written_files_are_world_readable(tmp_path):
    old = os.umask(0o022)
    try:
        files.write_json({"a": 1}, tmp_path / "x.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644


def test_parquet_provenance_round_trip_and_stable_bytes(tmp_path):
    df = pl.DataFrame({"a": [1, 2], "b": [[1, 2], [3]]})
    prov = files.provenance({"x": 1, "y": [2]}, model="m", revision="r")
    files.write_parquet(df, tmp_path / "t1.parquet", prov)
    files.write_parquet(df, tmp_path / "t2.parquet", prov)
    assert files.read_provenance(tmp_path / "t1.parquet") == prov
    assert prov["config_hash"] == files.config_hash({"y": [2], "x": 1})
    assert prov["config_hash"] != files.config_hash({"x": 2, "y": [2]})
    assert (tmp_path / "t1.parquet").read_bytes() == (tmp_path / "t2.parquet").read_bytes()
