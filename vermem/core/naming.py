"""Names derived from a config: file-safe subset names, the organism's and an injection's
checkpoints, the training axis of a model, and Study B's string cells.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def slugify(name: str) -> str:
    """A file-name-safe form of a subset name: 'Wikipedia (en)' -> 'wikipedia-en'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# -- Study B's grid: the names of its cells (vermem.dynamics.strings trains them) ---------------

def string_id(l: int, fraction: float, n: int) -> str:
    """File-name-safe id of a grid cell: l4-h0.5-n64 (h is the entropy fraction)."""
    return f"l{l}-h{fraction:g}-n{n}"


def grid_cells(grid: Mapping[str, Any]) -> list[str]:
    """Ids of the grid cells (alphabet size x entropy fraction x length)."""
    return [string_id(l, f, n) for l in grid["alphabet_sizes"]
            for f in grid["entropy_fractions"] for n in grid["lengths"]]


def example_cell(grid: Mapping[str, Any]) -> str:
    """The cell drawn in the position x epoch grid: largest alphabet, entropy and length."""
    return string_id(max(grid["alphabet_sizes"]), max(grid["entropy_fractions"]),
                     max(grid["lengths"]))


def init_seeds(init_seed: int | list[int]) -> list[int]:
    """dynamics.init_seed as a list: one random initialisation (training run) per seed."""
    return [init_seed] if isinstance(init_seed, int) else list(init_seed)


def init_runs(inits: list[str], init_seed: int | list[int]) -> list[str]:
    """Study B's training runs of one model: 'pretrained' (the model's own weights, one
    fixed object) and one 'random-{seed}' per seed of `init_seed` (a random initialisation
    of its architecture each)."""
    return [r for i in inits for r in (
        [f"random-{s}" for s in init_seeds(init_seed)] if i == "random" else [i])]


def parse_run(run: str, init_seed: int = 0) -> tuple[str, int]:
    """(init, seed) of a run name: 'random-3' -> ('random', 3); 'pretrained' or a bare
    'random' -> (that init, `init_seed`)."""
    init, _, seed = run.partition("-")
    return init, int(seed) if seed else init_seed


def init_arm(run: str) -> str:
    """The arm a run belongs to: 'pretrained' or 'random' (any of its seeds)."""
    return parse_run(run)[0]


# -- the checkpoint axis: names, steps, what a config studies (vermem.circuits.checkpoints runs it)
# -

FINAL = "final"  # the path name of the final model's point on the axis
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def organism_names(n: int) -> list[str]:
    """Names of the organism's n saved snapshots at k/n of training (k < n: the untrained
    initialization t0, then n - 1 points; the final model is the last point):
    't{round(100 k / n)}'. None when n = 1 (the final model alone)."""
    return [f"t{round(100 * k / n)}" for k in range(n)] if n > 1 else []


def injection_names(n: int) -> list[str]:
    """Checkpoints of an injected model (vermem.models.injection): t0, the base model before
    injection, then the snapshots at k/n of its steps (`organism_names`, which starts at
    t0 itself when n > 1)."""
    return organism_names(n) or ["t0"]


def organism_steps(total: int, n: int) -> list[int]:
    """Training steps (completed) of those snapshots, evenly spaced over `total` steps, from
    0 (before the first step)."""
    return [round(k * total / n) for k in range(n)] if n > 1 else []


def step_of(name: str | None) -> int | None:
    """The training step a revision or folder name carries: its last integer
    ('step1000' -> 1000); None without one."""
    found = re.findall(r"\d+", name or "")
    return int(found[-1]) if found else None


def final_step(config: Mapping[str, Any], model: str) -> int | None:
    """The final model's training step when the config tells it (the organism's is in its
    record): `final_step`, else the step in its revision."""
    spec = config["models"][model]
    return spec.get("final_step", step_of(spec.get("revision")))


def listed(config: Mapping[str, Any], model: str) -> list[str]:
    """The checkpoints studied for `model` ([] when the axis is off or it lists none). The
    organism studies all its snapshots unless it lists some of them."""
    if not config.get("checkpoints"):
        return []
    spec = config["models"][model]
    if spec["source"] == "organism" and "checkpoints" not in spec:
        return organism_names(config["organism"]["checkpoints"])
    if spec["source"] == "injected" and "checkpoints" not in spec:
        return injection_names(spec["injection"]["checkpoints"])
    return list(spec.get("checkpoints") or [])


AXIS_KEYS = ("checkpoints", "final_step")  # a model's training axis: read where it is used


def record_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A model's config entry without its training axis (`AXIS_KEYS`): what its records,
    the final model's and each checkpoint's, are made from. Listing one more checkpoint, or
    correcting `final_step`, then rewrites no record and reruns only the jobs that read
    them."""
    return {k: v for k, v in spec.items() if k not in AXIS_KEYS}


def subsets(config: Mapping[str, Any]) -> dict[str, str]:
    """slug -> subset name of the subsets with attribution and circuits at every checkpoint."""
    names = (config.get("checkpoints") or {}).get("subsets") or config["corpus"]["subsets"]
    return {slugify(s): s for s in names}
