"""Two runs of the test config, in two folders, give the same bytes under results/ (issue
35): every file but the figures (PNG and HTML, whose renderers may stamp them). Run-to-run
noise (wall times, host names, dates) belongs in the logs, never in a record or a table.

The first run is the session's (`workflow_run`); the second is made here in a fresh
folder, then offered to the other tests that compare two runs (`finished_runs["local"]`)."""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import LOCAL_CORES, REPO, TEST_CONFIG

FIGURES = {".png", ".html"}


def digests(results: Path) -> dict[str, str]:
    """sha256 of every file under `results` but the figures, by path within it."""
    return {str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(results.rglob("*")) if p.is_file() and p.suffix not in FIGURES}


@pytest.mark.slow
def test_two_runs_in_two_folders_give_the_same_bytes_under_results(workflow_run, finished_runs,
                                                                   tmp_path_factory):
    second = finished_runs.get("local")
    if second is None:
        workdir = tmp_path_factory.mktemp("second_run")
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d",
             str(workdir), "--cores", str(LOCAL_CORES), "--configfile", str(TEST_CONFIG)],
            capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        second = finished_runs["local"] = workdir / "results"
    a, b = digests(workflow_run), digests(second)
    assert len(a) > 100
    assert sorted(a) == sorted(b)
    differ = [rel for rel in a if a[rel] != b[rel]]
    print(f"{len(a)} files under results/ (figures aside) compared by sha256: "
          f"{len(a) - len(differ)} identical")
    assert not differ, differ
