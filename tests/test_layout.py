"""The house rules of the code (docs/README.md, "Layout"): no public function of the
package takes more than 8 parameters (a settings object carries the rest), and every
rule script is at most 40 lines (the science lives in the package)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_PARAMS = 8
MAX_SCRIPT_LINES = 40


def n_params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    names = [x.arg for x in (*a.posonlyargs, *a.args)]
    n = len(names) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)
    return n - (bool(names) and names[0] in ("self", "cls"))


def public_functions(tree: ast.Module):
    """Module-level functions and methods of module-level classes, without a leading _."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            yield from ((f"{node.name}.{f.name}", f) for f in node.body
                        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                        and not f.name.startswith("_"))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) \
                and not node.name.startswith("_"):
            yield node.name, node


def long_signatures(root: Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        for name, fn in public_functions(ast.parse(path.read_text())):
            if n_params(fn) > MAX_PARAMS:
                out.append(f"{path.relative_to(REPO)}:{fn.lineno} {name} ({n_params(fn)})")
    return out


def test_no_public_function_takes_more_than_eight_parameters():
    assert long_signatures(REPO / "vermem") == []


def test_the_signature_check_sees_a_long_one(tmp_path):
    (tmp_path / "m.py").write_text(
        "def f(a, b, c, d, e, f, g, h, *, i=0):\n    pass\n\n"
        "class C:\n    def ok(self, a, b, c, d, e, f, g, h):\n        pass\n\n"
        "def _private(a, b, c, d, e, f, g, h, i, j):\n    pass\n")
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        assert long_signatures(tmp_path) == ["m.py:1 f (9)"]
    finally:
        REPO = saved


def test_every_rule_script_is_thin():
    long = {p.name: n for p in sorted((REPO / "scripts").glob("*.py"))
            if not p.name.startswith("_")
            and (n := len(p.read_text().splitlines())) > MAX_SCRIPT_LINES}
    assert long == {}
