"""The settings of the circuit computations (vermem.core.settings): a circuit search
(`search.sweep`), a MIB score (`mib.score`), a transfer (`transfer.transfer`,
`transfer.matched_transfer`), a specificity run (`specificity.evaluate`) and a method
comparison (`method_comparison.compare`), each built from the workflow config with
`from_config`. Light at import (rules/circuits.smk reads `KEYS` and `params`); the
Bootstrap and Mode values are made only when an object is built."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

from vermem.core.settings import Settings, lookup

if TYPE_CHECKING:
    from vermem.circuits.evaluation import Mode
    from vermem.core.stats import Bootstrap, Resampler

MAIN = {"placement": "outside", "ablation": "resample"}  # config circuits.main's default


def _boot(config: Mapping[str, Any]) -> Bootstrap:
    from vermem.core.stats import Bootstrap

    return Bootstrap(**lookup(config, "circuits.bootstrap"))


def _default_boot() -> Bootstrap:
    from vermem.core.stats import Bootstrap

    return Bootstrap()


def _random_modes(config: Mapping[str, Any]) -> tuple[Mode, ...]:
    """The modes of circuits.directions x placements x ablations that circuits.random_modes
    names, in that order."""
    from vermem.circuits.evaluation import modes

    c = config["circuits"]
    return tuple(m for m in modes(c["directions"], c["placements"], c["ablations"])
                 if {"placement": m.placement, "ablation": m.ablation} in c["random_modes"])


@dataclass(frozen=True)
class MibSettings(Settings):
    """MIB's CPR and CMD (`mib.score`): the metric M, the bootstrap, circuits per forward,
    the random rankings' seeds and the modes that get them (None: every mode)."""

    KEYS: ClassVar[tuple[str, ...]] = (
        "circuits.metric", "circuits.bootstrap", "circuits.circuits_per_forward",
        "circuits.random_seeds", "circuits.directions", "circuits.placements",
        "circuits.ablations", "circuits.random_modes")
    metric: Any = "logit_diff"
    boot: Bootstrap = field(default_factory=_default_boot)
    per_forward: int = 16
    seeds: Sequence[int] = ()
    random_modes: Sequence[Mode] | None = None
    resampler: Resampler | None = None  # the run's shared draws (None: the set's own)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MibSettings:
        c = config["circuits"]
        return cls(c["metric"], _boot(config), c["circuits_per_forward"],
                   range(c["random_seeds"]), _random_modes(config))


@dataclass(frozen=True)
class SearchSettings(Settings):
    """A circuit search (`search.sweep`) and the record of its minimal circuits
    (`search.minimal_record`): the target and its criterion, the search, the curve's sizes
    (`sizes`, else about `curve_points` log-spaced ones), random circuits (seeds, the modes
    that get them at every curve size, about `random_points` sizes), the metric M, the
    bootstrap, circuits per forward and sizes per search round; `modes` the config's modes.
    The rest is what the rule's record names: the ranking metric, the main mode, the pair
    caps and seed of the split, whether sizes are chosen on the evaluation pairs, and
    `section`, the config's circuits slice (its hash is the outputs' provenance)."""

    KEYS: ClassVar[tuple[str, ...]] = (
        *(f"circuits.{k}" for k in (
            "rank_by", "metric", "target", "criterion", "search", "curve_points",
            "directions", "placements", "ablations", "random_seeds", "random_modes",
            "random_points", "batch_size", "circuits_per_forward", "search_width",
            "bootstrap", "max_pairs", "main")),
        "seed", "contrastive.split.selection")
    target: float = 0.85
    metric: Any = "logit_diff"
    curve_points: int = 16
    sizes: Sequence[int] | None = None
    seeds: Sequence[int] = ()
    random_modes: Sequence[Mode] = ()
    random_points: int | None = None
    criterion: str = "band"
    search: str = "band"
    boot: Bootstrap = field(default_factory=_default_boot)
    per_forward: int = 16
    search_width: int = 8
    modes: Sequence[Mode] = ()
    rank_by: str = "logit_diff"
    main: Mapping[str, str] = field(default_factory=lambda: dict(MAIN))
    max_pairs: Mapping[str, int | None] | None = None
    seed: int = 0
    select_on_evaluation: bool = False
    section: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # the run's shared bootstrap draws of the evaluation pairs (`with_resampler`): the same
    # F then carries the same interval here and in the specificity and transfer tables
    resampler: Resampler | None = field(default=None, compare=False, repr=False)

    def with_resampler(self, pairs) -> SearchSettings:
        """The same with the run's shared bootstrap over every evaluation set of `pairs`
        (`evaluation.resampler`, with this search's pair caps and seed)."""
        from vermem.circuits.evaluation import resampler

        return replace(self, resampler=resampler(pairs, self.boot, self.max_pairs, self.seed))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SearchSettings:
        from vermem.circuits.evaluation import modes

        c = config["circuits"]
        return cls(
            target=c["target"], metric=c["metric"], curve_points=c["curve_points"],
            seeds=range(c["random_seeds"]), random_modes=_random_modes(config),
            random_points=c["random_points"], criterion=c["criterion"], search=c["search"],
            boot=_boot(config), per_forward=c["circuits_per_forward"],
            search_width=c["search_width"],
            modes=tuple(modes(c["directions"], c["placements"], c["ablations"])),
            rank_by=c["rank_by"], main=c["main"], max_pairs=c["max_pairs"],
            seed=config["seed"],
            select_on_evaluation=lookup(config, "contrastive.split.selection") == 0,
            section=cls.params(config)["circuits"])

    @classmethod
    def main_mode_params(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """`params` of the search at checkpoints and for control tasks: the main mode only
        (both directions), random circuits at the minimal size only."""
        out = cls.params(config)
        main = out["circuits"]["main"]
        out["circuits"] = {**out["circuits"], "placements": [main["placement"]],
                           "ablations": [main["ablation"]], "random_modes": []}
        return out

    def mib(self) -> MibSettings:
        """The MIB scores of the same run (the random rankings in `random_modes`)."""
        return MibSettings(self.metric, self.boot, self.per_forward, self.seeds,
                           self.random_modes, self.resampler)


@dataclass(frozen=True)
class TransferSettings(Settings):
    """A transfer (`transfer.transfer`, `transfer.matched_transfer`): the metric M, the
    bootstrap (`resampler`: the run's shared draws, `with_resampler`), circuits per
    forward, the random circuits' seeds and the placements that get them (None: all), the
    main mode's placement and ablation, the curve's points (the matched sizes) and the
    pair caps and seed of the split."""

    KEYS: ClassVar[tuple[str, ...]] = (
        *(f"circuits.{k}" for k in ("metric", "main", "random_seeds", "batch_size",
                                    "curve_points", "circuits_per_forward", "bootstrap",
                                    "max_pairs")),
        "seed")
    metric: Any = "logit_diff"
    boot: Bootstrap = field(default_factory=_default_boot)
    per_forward: int = 16
    seeds: Sequence[int] = ()
    random_placements: Sequence[str] | None = None
    placement: str = "outside"
    ablation: str = "resample"
    resampler: Resampler | None = None
    curve_points: int = 16
    max_pairs: Mapping[str, int | None] | None = None
    seed: int = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TransferSettings:
        c = config["circuits"]
        return cls(c["metric"], _boot(config), c["circuits_per_forward"],
                   range(c["random_seeds"]), [c["main"]["placement"]],
                   c["main"]["placement"], c["main"]["ablation"], None, c["curve_points"],
                   c["max_pairs"], config["seed"])

    def with_resampler(self, pairs) -> TransferSettings:
        """The same with the run's shared bootstrap over every evaluation set of `pairs`
        (`transfer.resampler`)."""
        from vermem.circuits.evaluation import resampler

        return replace(self, resampler=resampler(pairs, self.boot, self.max_pairs, self.seed))


@dataclass(frozen=True)
class SpecificitySettings(TransferSettings):
    """A specificity run (`specificity.evaluate`): a transfer's settings (the run's shared
    bootstrap, random circuits of every seed) and the main subset, whose circuits get the
    whole curve (`sizes`: explicit sizes instead of about `curve_points`)."""

    KEYS: ClassVar[tuple[str, ...]] = (
        *(f"circuits.{k}" for k in ("metric", "main", "curve_points", "random_seeds",
                                    "batch_size", "circuits_per_forward", "bootstrap",
                                    "max_pairs")),
        "seed", "corpus.main_subset")
    main_subset: str | None = None
    sizes: Sequence[int] | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SpecificitySettings:
        return cls(**{**TransferSettings.from_config(config).__dict__,
                      "random_placements": None,
                      "main_subset": lookup(config, "corpus.main_subset")})


@dataclass(frozen=True)
class ComparisonSettings(Settings):
    """A method comparison (`method_comparison.compare`): the attribution methods and their
    IG steps, the metric M, the main mode, the target (the minimal size's band), the
    curve's points, the bootstrap, circuits per forward and sizes per search round; the
    main subset and the split's pair caps, seed and selection part."""

    KEYS: ClassVar[tuple[str, ...]] = (
        *(f"circuits.{k}" for k in ("metric", "main", "target", "curve_points", "batch_size",
                                    "circuits_per_forward", "search_width", "bootstrap",
                                    "max_pairs")),
        "attribution.compare_methods", "attribution.ig_steps", "attribution.input_edges?",
        "corpus.main_subset", "contrastive.split.selection", "seed")
    methods: Sequence[str] = ()
    steps: int = 5
    metric: Any = "logit_diff"
    main: Mapping[str, str] = field(default_factory=lambda: dict(MAIN))
    target: float = 0.85
    curve_points: int = 16
    boot: Bootstrap = field(default_factory=_default_boot)
    per_forward: int = 16
    search_width: int = 8
    main_subset: str | None = None
    max_pairs: Mapping[str, int | None] | None = None
    seed: int = 0
    select_on_evaluation: bool = False
    resampler: Resampler | None = field(default=None, compare=False, repr=False)  # shared draws
    input_edges: str = "definition"  # AttributionSettings.input_edges, for every method

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ComparisonSettings:
        c, a = config["circuits"], config["attribution"]
        return cls(a["compare_methods"], a["ig_steps"], c["metric"], c["main"], c["target"],
                   c["curve_points"], _boot(config), c["circuits_per_forward"],
                   c["search_width"], lookup(config, "corpus.main_subset"), c["max_pairs"],
                   config["seed"], lookup(config, "contrastive.split.selection") == 0,
                   input_edges=a.get("input_edges") or "definition")


@dataclass(frozen=True)
class FinalCircuitSettings(TransferSettings):
    """The final model's circuits at a checkpoint (`checkpoints.final_circuits`): a
    transfer's settings (random circuits for every placement, each pair set its own
    bootstrap) and the directions of the table's rows."""

    KEYS: ClassVar[tuple[str, ...]] = (
        *(f"circuits.{k}" for k in ("metric", "main", "directions", "random_seeds",
                                    "batch_size", "circuits_per_forward", "bootstrap",
                                    "max_pairs")),
        "seed")
    directions: Sequence[str] = ("noising", "denoising")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FinalCircuitSettings:
        c = config["circuits"]
        return cls(c["metric"], _boot(config), c["circuits_per_forward"],
                   range(c["random_seeds"]), None, c["main"]["placement"],
                   c["main"]["ablation"], max_pairs=c["max_pairs"], seed=config["seed"],
                   directions=c["directions"])


@dataclass(frozen=True)
class LocationSettings(Settings):
    """A localized injection's circuits against its trained components (`location.locate`):
    the attribution run of each document's pairs (the ranking metric circuits.rank_by, the
    config's method, steps and backend, circuits.directions), the main mode and the
    bootstrap over documents; `section` the slice the outputs' provenance hashes."""

    KEYS: ClassVar[tuple[str, ...]] = (
        "circuits.directions", "circuits.main", "circuits.bootstrap", "circuits.rank_by",
        "attribution.method", "attribution.ig_steps", "attribution.backend")
    attribution: Any = None  # attribution.settings.AttributionSettings
    main: Mapping[str, str] = field(default_factory=lambda: dict(MAIN))
    boot: Bootstrap = field(default_factory=_default_boot)
    section: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LocationSettings:
        from vermem.attribution.settings import AttributionSettings

        c = config["circuits"]
        attribution = replace(AttributionSettings.from_config(config), metric=c["rank_by"],
                              directions=c["directions"])
        return cls(attribution, c["main"], _boot(config),
                   {"main": c["main"], "bootstrap": c["bootstrap"]})
