"""The settings of the pair sets (`contrastive.build`, `contrastive.control_pairs`;
vermem.core.settings): built from the workflow config with `from_config`; light at import
(rules/contrastive.smk reads `params`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vermem.core.settings import Settings, lookup


@dataclass(frozen=True)
class PairSettings(Settings):
    """Pairs per forward (`batch_size`), the split's seed (contrastive.split_seed, else the
    run's seed), its document shares (`fractions`, contrastive.split), whether Memorization
    Decision candidates come from the sample's own subset, whether control pairs are
    built, and the Distant Context pairs' r (`distant_r`, vermem.data.context; None: no
    such pairs). The rule passes the whole contrastive section (its provenance hashes it)."""

    KEYS: ClassVar[tuple[str, ...]] = ("contrastive", "memorization.batch_size", "seed")
    batch_size: int = 16
    seed: int = 0
    fractions: Mapping[str, float] = field(default_factory=lambda: {
        "attribution": 0.25, "selection": 0.4, "evaluation": 0.35})
    same_subset: bool = True
    controls: bool = True
    distant_r: int | None = None  # the Distant Context pairs' r (None: no such pairs)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PairSettings:
        c = config["contrastive"]
        return cls(config["memorization"]["batch_size"], c.get("split_seed", config["seed"]),
                   c["split"], c["decision_same_subset"], c.get("controls", True),
                   c.get("distant_r"))


@dataclass(frozen=True)
class SampleSettings(Settings):
    """The samples of a model (`corpus.make_samples`): prefix and continuation tokens, the
    documents per subset (`per_subset`, None: all), windows per document and their stride,
    and the cap on unplanted documents per subset (None: none); `section` the slice the
    samples' provenance hashes."""

    KEYS: ClassVar[tuple[str, ...]] = (
        "memorization.prefix_tokens", "memorization.continuation_tokens",
        "corpus.samples_per_subset", "corpus.windows", "corpus.unplanted_per_subset?")
    prefix_tokens: int = 32
    continuation_tokens: int = 32
    per_subset: int | None = None
    windows: int = 1
    stride: int = 1
    unplanted: int | None = None
    section: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SampleSettings:
        mem, corpus = config["memorization"], config["corpus"]
        unplanted = lookup(config, "corpus.unplanted_per_subset?")
        return cls(mem["prefix_tokens"], mem["continuation_tokens"],
                   corpus["samples_per_subset"], corpus["windows"]["per_document"],
                   corpus["windows"]["stride"], unplanted,
                   {"prefix_tokens": mem["prefix_tokens"],
                    "continuation_tokens": mem["continuation_tokens"],
                    "windows": corpus["windows"], "unplanted_per_subset": unplanted})


@dataclass(frozen=True)
class ContextSettings(Settings):
    """The context-dependence measurement (vermem.data.context): the radii r, the greedy
    continuation's length, the bootstrap (circuits.bootstrap) and the pair settings whose
    split and seed choose the same source windows as the Distant Context pairs. Built from
    the optional config section `context_dependence` (its defaults where absent)."""

    KEYS: ClassVar[tuple[str, ...]] = (*PairSettings.KEYS, "context_dependence?",
                                       "circuits.bootstrap")
    radii: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    continuation_tokens: int = 16
    bootstrap: Mapping[str, Any] = field(default_factory=lambda: {
        "samples": 1000, "seed": 0, "level": 0.95})
    pairs: PairSettings = field(default_factory=PairSettings)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ContextSettings:
        c = lookup(config, "context_dependence?") or {}
        return cls(tuple(c.get("radii", cls.radii)),
                   c.get("continuation_tokens", cls.continuation_tokens),
                   dict(config["circuits"]["bootstrap"]), PairSettings.from_config(config))
