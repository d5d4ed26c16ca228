"""vermem: verbatim memorization in language models, as a workflow and a package.

The Snakemake workflow (Snakefile, rules/) runs two studies: Study A finds the circuits
that carry memorized text, by edge attribution and exact patching; Study B measures how
random strings are memorized over training. Every stage is a function of this package;
the rule scripts only read files and call them. The subpackages follow the pipeline:
`core`, `data`, `models`, `attribution`, `circuits`, `dynamics`, `report`, `workflow`.

The nouns: a model *record* (`model.json`: where a model loads from); a *pair* (clean
and corrupt prompt as token ids, the answer and the wrong token); the *graph* of a
model's edges (sources: input, heads, MLPs; destinations: the heads' q/k/v inputs, MLPs,
logits); edge *scores* ([sources, destinations] tensors); a *circuit* (a boolean edge
mask) and its *faithfulness* F = (M(C) - M(empty)) / (M(full) - M(empty)).

From a notebook (docs/api.md)::

    import vermem

    model, tok = vermem.load_model("results/models/organism/model.json", "cpu")
    g = vermem.Graph.of_model(model)
    scores = vermem.attribute(model, g, clean, corrupt, answer, wrong)
    edges = vermem.top_edges(g, scores["scores"], 50)
    print(vermem.evaluate_circuit(model, g, edges, clean, corrupt, answer, wrong))
    best = vermem.minimal_circuit(model, g, scores, clean, corrupt, answer, wrong)
    vermem.draw_circuit(g, best["circuit"], scores["scores"]).savefig("circuit.png")

From a shell: `vermem --help` (vermem.workflow.cli).

`import vermem` is light: the names below load their modules (and torch) on first use.
"""

from __future__ import annotations

import importlib as _importlib

# public name -> (home module, name there)
_HOMES: dict[str, tuple[str, str]] = {
    "load_model": ("vermem.models.loading", "load"),
    "load_record": ("vermem.models.loading", "load_record"),
    "Graph": ("vermem.attribution.graph", "Graph"),
    "attribute": ("vermem.attribution.scoring", "attribute_pairs"),
    "top_edges": ("vermem.circuits.evaluation", "top_edges"),
    "evaluate_circuit": ("vermem.circuits.evaluation", "evaluate_circuit"),
    "minimal_circuit": ("vermem.circuits.search", "minimal_circuit"),
    "draw_circuit": ("vermem.report.figures.circuit_drawing", "circuit"),
}

__all__ = ["__version__", *_HOMES]
_SUBPACKAGES = ("attribution", "circuits", "core", "data", "dynamics", "models", "report",
                "workflow")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vermem")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "0.1.0"  # pyproject.toml's


def __getattr__(name: str) -> object:
    if name == "__version__":
        value = _version()
    elif name in _HOMES:
        module, attr = _HOMES[name]
        value = getattr(_importlib.import_module(module), attr)
    else:
        raise AttributeError(f"module 'vermem' has no attribute {name!r}")
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    """The public names and the subpackages (`vermem.attribution`, ...)."""
    return sorted({*__all__, *_SUBPACKAGES})
