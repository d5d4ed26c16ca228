"""The config key reference, generated from config/schema.yaml's descriptions.

`render(schema)` turns the schema into docs/config-reference.md: one table per top-level
key, one row per property (nested objects, array items and named entries included), with
its type, whether it is required, its default and its description. `undescribed(schema)`
lists the properties without a description (tests/test_docs.py requires none).

    python -m vermem.workflow.config_reference > docs/config-reference.md
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

SCHEMA = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"

HEADER = """\
# Config key reference

Generated from `config/schema.yaml` by `python -m vermem.workflow.config_reference`
(`vermem.workflow.config_reference.render`); do not edit by hand, edit the schema's
descriptions and regenerate. How configs work: [configuration.md](configuration.md).

A path names a key inside its section: `a.b` is key `b` of object `a`, `a.<name>` any
key of a map such as `models`, `a[]` an item of a list. *required* keys must be present;
the others take the default shown (or are off when absent).
"""


def load(path: str | Path = SCHEMA) -> dict[str, Any]:
    with open(path) as f:
        return yaml.safe_load(f)


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """The node with a local `$ref` followed; the node's own keys win over the target's."""
    ref = node.get("$ref")
    if not ref:
        return node
    target: Any = root
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    target = _resolve(target, root)
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def _branches(node: Mapping[str, Any], root: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The node and its oneOf / anyOf alternatives (resolved), where keys may live."""
    out = [node]
    for key in ("oneOf", "anyOf"):
        for alt in node.get(key, []):
            out.append(_resolve(alt, root))
    return out


def _type(node: Mapping[str, Any], root: Mapping[str, Any]) -> str:
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return "one of " + ", ".join(f"`{v if isinstance(v, str) else json.dumps(v)}`"
                                     for v in node["enum"])
    parts = []
    types = node.get("type")
    for t in types if isinstance(types, list) else [types] if types else []:
        if t == "array" and "items" in node:
            item = _resolve(node["items"], root)
            parts.append(f"list of {_type(item, root)}" if item.get("type") != "object"
                         else "list of objects")
        elif t == "object" and isinstance(node.get("additionalProperties"), Mapping) \
                and not node.get("properties"):
            parts.append("map")
        else:
            parts.append(str(t))
    for key in ("oneOf", "anyOf"):
        for alt in node.get(key, []):
            parts.append(_type(_resolve(alt, root), root))
    return " or ".join(dict.fromkeys(p for p in parts if p)) or "any"


def _text(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def walk(node: Mapping[str, Any], root: Mapping[str, Any], path: str = "",
         required: bool = True) -> Iterator[tuple[str, Mapping[str, Any], bool]]:
    """(path, resolved schema, required) of every property below node, depth first."""
    node = _resolve(node, root)
    for branch in _branches(node, root):
        req = set(branch.get("required", []))
        for name, child in branch.get("properties", {}).items():
            sub = f"{path}.{name}" if path else name
            resolved = _resolve(child, root)
            yield sub, resolved, name in req
            yield from walk(resolved, root, sub)
        extra = branch.get("additionalProperties")
        if isinstance(extra, Mapping):
            sub = f"{path}.<name>"
            resolved = _resolve(extra, root)
            yield sub, resolved, False
            yield from walk(resolved, root, sub)
        items = branch.get("items")
        if isinstance(items, Mapping):
            yield from walk(_resolve(items, root), root, f"{path}[]")


def undescribed(schema: Mapping[str, Any]) -> list[str]:
    """Paths of the properties that have no non-empty description."""
    return [path for path, node, _ in walk(schema, schema)
            if not str(node.get("description", "")).strip()]


def _row(path: str, node: Mapping[str, Any], req: bool, root: Mapping[str, Any]) -> str:
    default = f"`{_text(json.dumps(node['default']))}`" if "default" in node else ""
    return (f"| `{path}` | {_text(_type(node, root))} | {'required' if req else ''} | "
            f"{default} | {_text(node.get('description', ''))} |")


TABLE = ["| key | type | required | default | description |", "|---|---|---|---|---|"]


def render(schema: Mapping[str, Any]) -> str:
    """docs/config-reference.md from the schema: the top-level scalars, then one section
    per top-level key that holds keys of its own."""
    required = set(schema.get("required", []))
    scalars, sections = [], []
    for name, child in schema["properties"].items():
        node = _resolve(child, schema)
        rows = list(walk(node, schema, name))
        (sections if rows else scalars).append((name, node, rows))
    lines = [HEADER, "## Top level", "", *TABLE]
    lines += [_row(name, node, name in required, schema) for name, node, _ in scalars]
    for name, node, rows in sections:
        lines += ["", f"## `{name}`", "", *TABLE, _row(name, node, name in required, schema)]
        lines += [_row(path, sub, req, schema) for path, sub, req in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    sys.stdout.write(render(load()))


if __name__ == "__main__":
    main()
