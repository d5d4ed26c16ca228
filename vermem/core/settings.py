"""Settings objects: what one computation reads from the workflow config, as one value.

A settings class lists the config keys it reads (`KEYS`: dotted paths into the workflow
config, config/schema.yaml) once. `params(config)` is that slice of the config, nested as
in the config: what its rule passes as `params.config` (a rule reruns when one of them
changes), so no key list is written twice. `from_config(config)` builds the object from
the workflow config or from that slice. The settings modules are light (no torch, no
polars at import): rules/*.smk import them at parse time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


def lookup(config: Mapping[str, Any], key: str) -> Any:
    """config["a"]["b"] for the key "a.b"; an optional key ("a.b?") absent: None."""
    value: Any = config
    for part in key.rstrip("?").split("."):
        if key.endswith("?") and part not in value:
            return None
        value = value[part]
    return value


class Settings:
    """Base of the settings dataclasses: `KEYS` and the slice they name."""

    KEYS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def params(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """The slice of `config` with exactly the keys `KEYS` names, nested as in it (an
        optional key, "a.b?", None where the config has none)."""
        out: dict[str, Any] = {}
        for key in cls.KEYS:
            *parents, leaf = key.rstrip("?").split(".")
            dst = out
            for part in parents:
                dst = dst.setdefault(part, {})
            dst[leaf] = lookup(config, key)
        return out
