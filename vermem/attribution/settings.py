"""The settings of an attribution run (`scoring.run`, vermem.core.settings): built from the
workflow config with `from_config`; light at import (rules read `KEYS`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from vermem.core.settings import Settings


@dataclass(frozen=True)
class AttributionSettings(Settings):
    """`method` (scoring.METHODS), `steps` (IG steps), `metric` (a name of METRICS or a
    function, `pair_batch.Metric`), `batch_size` (pairs per batch), `backend` (`nnsight` or
    `hooks`), the `directions` scored and whether scores are also split by source
    `positions`. The config names the method, steps and backend; the metric is the rule's
    (a wildcard) and the batch the one that fits the GPU (`resources.attribution_batch`)."""

    KEYS: ClassVar[tuple[str, ...]] = ("attribution.method", "attribution.ig_steps",
                                       "attribution.backend", "attribution.input_edges?")
    method: str = "EAP-IG"
    steps: int = 5
    metric: str | Callable = "logit_diff"
    batch_size: int = 8
    backend: str = "nnsight"
    directions: Sequence[str] | None = None  # None: both (scoring.DIRECTIONS)
    positions: bool = True
    # EAP-IG-activations' input-group runs: "definition" (every destination's gradient) or
    # "library" (as hannamw/EAP-IG: none at layer-0 destinations fed by the embedding
    # alone; scoring.library_constant_destinations)
    input_edges: str = "definition"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AttributionSettings:
        a = config["attribution"]
        return cls(method=a["method"], steps=a["ig_steps"], backend=a["backend"],
                   input_edges=a.get("input_edges") or "definition")
