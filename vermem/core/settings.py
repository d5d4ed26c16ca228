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
    """config["a"]["b"] for the key "a.b"."""
    value: Any = config
    for part in key.split("."):
        value = value[part]
    return value


class Settings:
    """Base of the settings dataclasses: `KEYS` and the slice they name."""

    KEYS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def params(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """The slice of `config` with exactly the keys `KEYS` names, nested as in it."""
        out: dict[str, Any] = {}
        for key in cls.KEYS:
            *parents, leaf = key.split(".")
            src, dst = config, out
            for part in parents:
                src, dst = src[part], dst.setdefault(part, {})
            dst[leaf] = src[leaf]
        return out
