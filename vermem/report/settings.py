"""The settings of the claims (`claims.claims`, vermem.core.settings): built from the
workflow config with `from_config`; light at import (rules/circuits.smk reads `KEYS`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from vermem.core.settings import Settings, lookup


@dataclass(frozen=True)
class ClaimSettings(Settings):
    """The claims' thresholds (circuits.claims: the F at which a circuit transfers, the
    margin a difference must exceed, the fewest evaluation pairs for a verdict), the
    bootstrap's level, the main mode (its placement's cells are read, its circuits' sizes
    reported) and the main subset."""

    KEYS: ClassVar[tuple[str, ...]] = ("circuits.main", "circuits.claims", "circuits.bootstrap",
                                       "corpus.main_subset")
    main_subset: str = ""
    threshold: float = 0.5
    margin: float = 0.0
    min_pairs: int = 20
    level: float = 0.95
    placement: str = "outside"
    ablation: str = "resample"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ClaimSettings:
        c = config["circuits"]
        return cls(lookup(config, "corpus.main_subset"), c["claims"]["transfer_threshold"],
                   c["claims"]["margin"], c["claims"]["min_pairs"], c["bootstrap"]["level"],
                   c["main"]["placement"], c["main"]["ablation"])
