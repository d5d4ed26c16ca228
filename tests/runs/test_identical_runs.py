"""Two runs of the test config, in two folders, give the same bytes under results/ (issue
35): every file the second run makes but the figures (PNG and HTML, whose renderers may
stamp them). Run-to-run noise (wall times, host names, dates) belongs in the logs, never in
a record or a table.

The first run is the session's (`workflow_run`); the second (`second_run`, conftest.py)
makes from nothing one chain through every stage that trains or draws random numbers."""

import hashlib
from pathlib import Path

import pytest

FIGURES = {".png", ".html"}
# every stage folder the second run must reach
STAGES = {"standin", "corpus", "models", "samples", "labels", "divergence", "pairs",
          "attribution", "circuits", "context", "dynamics", "checkpoints"}


def digests(results: Path) -> dict[str, str]:
    """sha256 of every file under `results` but the figures, by path within it."""
    return {str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(results.rglob("*")) if p.is_file() and p.suffix not in FIGURES}


@pytest.mark.slow
def test_two_runs_in_two_folders_give_the_same_bytes_under_results(workflow_run, second_run):
    a, b = digests(workflow_run), digests(second_run)
    assert len(b) > 50
    assert {rel.split("/")[0] for rel in b} == STAGES
    assert set(b) <= set(a), sorted(set(b) - set(a))
    differ = [rel for rel in b if a[rel] != b[rel]]
    print(f"{len(b)} files under results/ (figures aside) made by both runs, compared by "
          f"sha256: {len(b) - len(differ)} identical")
    assert not differ, differ
