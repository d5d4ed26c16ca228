"""README.md and docs/: short, linked, generated where they can be, quoting no result.

- every property of config/schema.yaml has a description, and docs/config-reference.md is
  exactly what `vermem.workflow.config_reference.render` makes of the schema;
- README.md fits on a screen (at most 150 lines);
- README.md and docs/*.md quote no number a run produces (estimates with intervals,
  result tables, "as of commit" snapshots, run times): those live in the generated
  results/summary.md (and docs/runs/, verbatim generated summaries, which are exempt);
- every relative link resolves to a file (and a heading, where it names one).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vermem.workflow import config_reference

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
REFERENCE = REPO / "docs" / "config-reference.md"
# what a person wrote: README and docs/*.md, not the generated reference, not docs/runs/
WRITTEN = [README, *sorted(p for p in (REPO / "docs").glob("*.md") if p != REFERENCE)]

NUM = r"-?\d+(?:\.\d+)?"
DEC = r"-?\d*\.\d+"
# (name, pattern) of what only a run produces
RESULT_PATTERNS = [
    # an estimate with its interval: 0.87 [0.85, 0.99], 45% [30%, 60%], 12 [8, 20] edges
    ("estimate with interval", re.compile(rf"{NUM}%? \[{NUM}%?, {NUM}%?\]")),
    # an estimate with a +- error: 0.87 +- 0.03, 0.87 ± 0.03
    ("estimate with error", re.compile(rf"{DEC} ?(?:\+-|±|\+/-) ?{DEC}")),
    # a snapshot of a run pinned to a commit
    ("as of commit", re.compile(r"\bas of commit\b", re.IGNORECASE)),
    # a range of run estimates: -0.156 .. -0.051
    ("range of estimates", re.compile(rf"{DEC} ?(?:\.\.|to) ?{DEC}\b(?! ?\))")),
    # verdict counts over runs: 0 / 7 / 2, "in 6 of 9 runs"
    ("verdict counts", re.compile(r"\b\d+ / \d+ / \d+\b")),
    ("runs counted", re.compile(r"\b\d+ of \d+ (?:runs|seeds)\b")),
    # a faithfulness or MIB score quoted as found: F = 0.93, CPR of 0.41
    ("score quoted", re.compile(rf"\b(?:F|CPR|CMD|Jaccard|AUC)(?:\([^)]*\))? (?:=|of|was) {DEC}")),
    # a run time quoted as a result: took 3.0 minutes, took 14.3 and 13.0 min
    ("run time", re.compile(r"\btook (?:about )?\d+(?:\.\d+)? (?:and \d+(?:\.\d+)? )?"
                            r"(?:to \d+(?:\.\d+)? )?(?:s|sec|seconds|min|minutes|h|hours)\b")),
    # a memorized share quoted as found: 12% of ... memorized, memorized 12.5%
    ("share memorized", re.compile(r"\bmemori[sz]ed (?:\w+ ){0,3}\d+(?:\.\d+)?%"
                                   r"|\d+(?:\.\d+)?% (?:of (?:the )?\w+ )?"
                                   r"(?:were |are )?memori[sz]ed")),
]


def result_rows(text: str) -> list[str]:
    """Markdown table rows that hold two or more decimal results (cells such as 0.812 or
    -0.05), as a table of a run's estimates does; settings tables name keys instead."""
    rows = []
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        decimals = [c for c in cells if re.fullmatch(r"[-+]?\d*\.\d{2,}", c)]
        if len(decimals) >= 2 and not any("`" in c for c in cells):
            rows.append(line)
    return rows


def quoted_results(text: str) -> list[str]:
    found = [f"{name}: {m.group(0)!r}" for name, pat in RESULT_PATTERNS
             for m in pat.finditer(text)]
    return found + [f"result table row: {row!r}" for row in result_rows(text)]


@pytest.fixture(scope="module")
def schema():
    return config_reference.load()


def test_every_schema_property_is_described(schema):
    paths = [p for p, _, _ in config_reference.walk(schema, schema)]
    assert len(paths) > 150  # nested objects, items and named entries are walked
    missing = config_reference.undescribed(schema)
    assert not missing, f"config/schema.yaml: no description for {missing}"


def test_walk_reaches_nested_items_and_named_entries(schema):
    paths = {p for p, _, _ in config_reference.walk(schema, schema)}
    for p in ["corpus.windows.stride", "models.<name>.injection.trainable[].head",
              "memorization.thresholds.per_subset.<name>.high", "circuits.random_modes[].ablation",
              "plan.memorized.<name>.<name>", "dynamics.sequential.relearn"]:
        assert p in paths


def test_an_undescribed_property_is_found():
    schema = {"type": "object", "properties": {
        "a": {"type": "object", "description": "x",
              "properties": {"b": {"type": "integer"}}},
        "c": {"type": "array", "description": "y",
              "items": {"type": "object", "properties": {"d": {"$ref": "#/$defs/e"}}}},
        "m": {"type": "object", "description": "z", "additionalProperties": {"type": "number"}}},
        "$defs": {"e": {"type": "string", "description": "  "}}}
    assert config_reference.undescribed(schema) == ["a.b", "c[].d", "m.<name>"]


def test_config_reference_is_generated_from_the_schema(schema):
    assert REFERENCE.read_text() == config_reference.render(schema), (
        "docs/config-reference.md is stale: "
        "python -m vermem.workflow.config_reference > docs/config-reference.md")


def test_readme_fits_on_a_screen():
    n = len(README.read_text().splitlines())
    assert n <= 150, f"README.md has {n} lines (at most 150)"


def test_readme_says_where_the_answer_is():
    text = README.read_text()
    for needle in ["make run", "make test", "results/summary.md",
                   "results/robustness/summary.md", "docs/config-reference.md"]:
        assert needle in text


@pytest.mark.parametrize("text", [
    "| claim | prevention | 0 / 7 / 2 | -0.156 .. -0.051 |",
    "F = 0.87 [0.85, 0.99] on 30 pairs",
    "the share memorized was 45% [30%, 60%]",
    "from a run as of commit `5ef4153`",
    "| Branch Comparison | 0.812 | 0.922 |",
    "The 9 passes took 3.0 to 4.0 minutes each",
    "refuted in 7 of 9 runs",
    "the organism memorized 12% of its planted documents",
    "a CPR of 0.41",
])
def test_drift_patterns_catch_results(text):
    assert quoted_results(text)


@pytest.mark.parametrize("text", [
    "default 0.25 / 0.4 / 0.35",
    "|1 - F| <= 1 - target, the band [0.85, 1.15] by default",
    "| `circuits.target` | 0.85 | 0.8 |",
    "F(C) = (M(C) - M(empty)) / (M(full) - M(empty))",
    "a seeded 95% bootstrap interval over documents",
    "budgeted at 15 minutes on 2 CPU cores",
    "Pythia-160M and -410M at step1000 ... step143000",
])
def test_drift_patterns_pass_settings(text):
    assert not quoted_results(text)


@pytest.mark.parametrize("path", WRITTEN, ids=lambda p: str(p.relative_to(REPO)))
def test_no_run_result_is_quoted(path):
    found = quoted_results(path.read_text())
    assert not found, (f"{path.relative_to(REPO)} quotes what a run produces {found[:3]}: "
                       "link results/summary.md (or a generated summary under docs/runs/)")


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[`*_]", lambda m: "_" if m.group(0) == "_" else "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.MULTILINE)}


@pytest.mark.parametrize("path", [*WRITTEN, REFERENCE], ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path):
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    bad = []
    for m in LINK.finditer(text):
        target = m.group(1) or m.group(2)
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if dest.relative_to(REPO.resolve()).parts[:1] == ("results",):
            continue  # written by a run
        if not dest.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target} (no such heading)")
    assert not bad, f"{path.relative_to(REPO)}: broken links {bad}"


OUTSIDE = re.compile(r"\.\./shared\b|\bSPEC\.md\b")


def test_nothing_points_at_files_outside_the_repository():
    for path in WRITTEN:
        assert not OUTSIDE.search(path.read_text()), path
