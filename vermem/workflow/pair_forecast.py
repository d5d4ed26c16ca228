"""Power before GPU-hours: how many memorized samples, pairs and documents a configuration
will yield per model, task and subset, from stated rates, and which cells will end as
"insufficient evidence" before any GPU time is spent on them (`make plan` prints it after
the bill).

Per cell (model, task, subset), with the config's own numbers and the rates of its `plan`
section (config/schema.yaml):

    samples    = corpus.samples_per_subset x corpus.windows.per_document
                 (plan.samples[subset] when samples_per_subset is null)
    memorized  = samples x plan.memorized[model][subset]
    pairs      = memorized x plan.pairs_per_memorized[task]
    pairs[p]   = pairs x contrastive.split[p]                 (p: attribution, selection,
                                                               evaluation)
    docs[p]    = min(pairs[p], memorized x documents_per_memorized x split[p])
                 (documents_per_memorized = 1 with one window per document: the Pile)
    circuit[p] = min(pairs[p], circuits.max_pairs[p]) for the selection and evaluation
                 parts the circuits stage reads; its documents min(docs[p], circuit[p])

Every count is an expectation, shown and compared rounded down. A cell is flagged, one
reason per part, when the run's claims (vermem.report.claims) will call it insufficient evidence:
fewer than `circuits.claims.min_pairs` circuit pairs in the selection or evaluation part
(the size claims read the selection pairs, every other claim the evaluation pairs; with
no selection part, contrastive.split.selection = 0, sizes are chosen on the evaluation
pairs, so the selection counts are the evaluation's and only those are checked), or
fewer than `MIN_DOCUMENTS` documents there (the cluster bootstrap resamples documents: an
interval over fewer is not trusted; this is the plan's own rule, stricter than the claims'),
or no attribution pair (no circuit at all). A control task's documents are counted like
its memorized task's; its pairs come from non-memorized documents, which are more, so the
documents column understates them.

Rates not stated are assumed (`resources.MEMORIZED_FRACTION` memorized, one pair per
memorized sample, 1 / windows documents per memorized sample: the fewest) and the table
says so. Pure: no data, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vermem.core.errors import VermemError
from vermem.core.vocabulary import PARTS, control_task
from vermem.workflow import resources

BOOTSTRAPPED = ("selection", "evaluation")   # the parts whose intervals the claims read
MIN_DOCUMENTS = 10   # documents (bootstrap clusters) a bootstrapped part needs


class PlanRatesError(VermemError, ValueError):
    """A `plan` section that names a model, subset or task the config does not have."""


@dataclass(frozen=True)
class Rates:
    """What one cell's prediction rests on."""
    memorized: float                # share of samples memorized
    pairs_per_memorized: float      # pairs of the task per memorized sample
    documents_per_memorized: float  # memorized documents per memorized sample (<= 1)


@dataclass(frozen=True)
class Cell:
    model: str
    task: str
    subset: str
    samples: float
    memorized: float
    pairs: float
    parts: dict[str, float]            # pairs per part
    documents: dict[str, float]        # documents with pairs, per part
    circuit: dict[str, float]          # selection / evaluation pairs after max_pairs
    circuit_documents: dict[str, float]
    flags: tuple[str, ...] = field(default=())


def _n(x: float) -> int:
    """A predicted count as shown and compared: the expectation rounded down (a tolerance
    keeps 0.3 x 100 from becoming 29)."""
    return int(math.floor(x + 1e-9))


@dataclass(frozen=True)
class ForecastSettings:
    """What a cell's forecast reads from the config: the split's document shares
    (contrastive.split), the circuits stage's pair caps (circuits.max_pairs), the fewest
    pairs a verdict needs (circuits.claims.min_pairs) and the fewest documents for the
    cluster bootstrap."""

    fractions: Mapping[str, float]
    max_pairs: Mapping[str, int | None] = field(default_factory=dict)
    min_pairs: int = 20
    min_documents: int = MIN_DOCUMENTS

    @property
    def select_on_evaluation(self) -> bool:
        """No selection part (contrastive.split.selection = 0, the authors' design): the
        circuits stage chooses sizes on the evaluation pairs (circuits.SearchSettings)."""
        return float(self.fractions.get("selection", 0.0) or 0.0) == 0.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ForecastSettings:
        circ = config["circuits"]
        return cls(config["contrastive"]["split"], circ.get("max_pairs") or {},
                   int(circ["claims"]["min_pairs"]))


def predict(model: str, task: str, subset: str, samples: float, rates: Rates,
            settings: ForecastSettings) -> Cell:
    """One cell's counts and its flags (see the module docstring for the formulas)."""
    fractions, max_pairs = settings.fractions, settings.max_pairs
    min_pairs, min_documents = settings.min_pairs, settings.min_documents
    memorized = samples * rates.memorized
    pairs = memorized * rates.pairs_per_memorized
    parts = {p: pairs * float(fractions.get(p, 0.0)) for p in PARTS}
    docs = {p: min(parts[p], memorized * rates.documents_per_memorized
                   * float(fractions.get(p, 0.0))) for p in PARTS}
    circuit, circuit_docs, flags = {}, {}, []
    if _n(parts["attribution"]) < 1:
        flags.append("attribution: no predicted pair, no circuit")
    for p in BOOTSTRAPPED:
        if p == "selection" and settings.select_on_evaluation:
            continue  # sizes chosen on the evaluation pairs: set, and flagged, below
        cap = max_pairs.get(p)
        circuit[p] = parts[p] if cap is None else min(parts[p], float(cap))
        circuit_docs[p] = min(docs[p], circuit[p])
        if _n(circuit[p]) < min_pairs:
            why = (f"max_pairs {cap} of {_n(parts[p])} predicted"
                   if cap is not None and cap < _n(parts[p]) else "predicted")
            flags.append(f"{p}: {_n(circuit[p])} pairs ({why}) < min_pairs {min_pairs}")
        if _n(circuit_docs[p]) < min_documents:
            flags.append(f"{p}: {_n(circuit_docs[p])} documents < {min_documents} for the "
                         f"cluster bootstrap")
    if settings.select_on_evaluation:  # the selection reads the evaluation pairs themselves
        circuit["selection"] = circuit["evaluation"]
        circuit_docs["selection"] = circuit_docs["evaluation"]
    return Cell(model, task, subset, samples, memorized, pairs, parts, docs, circuit,
                circuit_docs, tuple(flags))


# --------------------------------------------------------------------- from a config


def tasks(config: Mapping[str, Any]) -> list[str]:
    """The pair sets' tasks: attribution.tasks, then their controls (contrastive.controls)."""
    base = list(config["attribution"]["tasks"])
    controls = [control_task(t) for t in base] if config["contrastive"].get(
        "controls", True) else []
    return base + controls


def _section(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return config.get("plan") or {}


def check(config: Mapping[str, Any]) -> None:
    """Names in the `plan` section that the config does not have: one-line errors."""
    plan = _section(config)
    subsets, models = list(config["corpus"]["subsets"]), list(config["models"])
    for s in plan.get("samples") or {}:
        if s not in subsets:
            raise PlanRatesError(f"config error at plan.samples.{s}: not one of "
                                 f"corpus.subsets {subsets}")
    for m, rate in (plan.get("memorized") or {}).items():
        if m != "default" and m not in models:
            raise PlanRatesError(f"config error at plan.memorized.{m}: not a model of "
                                 f"models {models} (nor default)")
        for s in rate if isinstance(rate, Mapping) else ():
            if s != "default" and s not in subsets:
                raise PlanRatesError(f"config error at plan.memorized.{m}.{s}: not one of "
                                     f"corpus.subsets {subsets} (nor default)")
    known = tasks(config)
    for t in plan.get("pairs_per_memorized") or {}:
        if t not in known:
            raise PlanRatesError(f"config error at plan.pairs_per_memorized.{t}: not one of "
                                 f"the tasks {known}")


def _windows(config: Mapping[str, Any]) -> int:
    return int((config["corpus"].get("windows") or {}).get("per_document", 1))


def samples(config: Mapping[str, Any], subset: str) -> tuple[float, str | None]:
    """Samples of a subset and, when assumed rather than configured, the assumption."""
    if config["corpus"]["samples_per_subset"] is not None:
        return float(resources.samples_per_subset(config)), None
    stated = (_section(config).get("samples") or {}).get(subset)
    if stated is not None:
        return float(stated), None
    return float(resources.samples_per_subset(config)), (
        f"samples of {subset}: {resources.samples_per_subset(config):,} (corpus.samples_per_"
        f"subset and plan.samples are null: {resources.DEFAULT_SAMPLES:,} documents x "
        f"{_windows(config)} windows)")


def rates(config: Mapping[str, Any], model: str, task: str, subset: str
          ) -> tuple[Rates, list[str]]:
    """The cell's rates from the `plan` section, and the ones assumed for want of it."""
    plan, assumed = _section(config), []
    rate = resources.stated_memorized(config, model, subset)
    if rate is None:
        rate = resources.MEMORIZED_FRACTION
        assumed.append(f"memorized share of {model}: {rate:g} (plan.memorized has none)")
    per = (plan.get("pairs_per_memorized") or {}).get(task)
    if per is None:
        per = 1.0
        assumed.append(f"pairs per memorized sample of {task}: 1 "
                       "(plan.pairs_per_memorized has none)")
    windows = _windows(config)
    docs = 1.0 if windows == 1 else plan.get("documents_per_memorized")
    if docs is None:
        docs = 1.0 / windows
        assumed.append(f"documents per memorized sample: 1/{windows} (one document per "
                       f"{windows} windows; plan.documents_per_memorized is null)")
    return Rates(float(rate), float(per), float(docs)), assumed


def cells(config: Mapping[str, Any]) -> tuple[list[Cell], list[str]]:
    """Every (model, task, subset) cell of the config's Study A, and the assumptions made."""
    settings = ForecastSettings.from_config(config)
    out, assumed = [], []
    for model in config["models"]:
        for task in tasks(config):
            for subset in config["corpus"]["subsets"]:
                n, why = samples(config, subset)
                r, more = rates(config, model, task, subset)
                for a in ([why] if why else []) + more:
                    if a not in assumed:
                        assumed.append(a)
                out.append(predict(model, task, subset, n, r, settings))
    return out, assumed


def render(config: Mapping[str, Any], cs: Sequence[Cell] | None = None,
           assumed: Sequence[str] | None = None) -> str:
    """The power table: one line per cell, its flags (or ok) at the end."""
    if cs is None:
        cs, assumed = cells(config)
    circ = config["circuits"]
    head = (f"{'model':<20} {'task':<30} {'subset':<18} {'samples':>8} {'memo':>6} "
            f"{'pairs':>6} {'attr':>5} {'sel':>5} {'eval':>5} {'docs a/s/e':>12} "
            f"{'circ s/e':>9}  verdict")
    out = [
        "power (vermem.workflow.pair_forecast): predicted per model, task and subset from the plan "
        "section's rates",
        head,
    ]
    for c in cs:
        d = "/".join(str(_n(c.documents[p])) for p in PARTS)
        k = "/".join(str(_n(c.circuit[p])) for p in BOOTSTRAPPED)
        verdict = "insufficient evidence: " + "; ".join(c.flags) if c.flags else "ok"
        out.append(f"{c.model:<20} {c.task:<30} {c.subset:<18} {_n(c.samples):>8} "
                   f"{_n(c.memorized):>6} {_n(c.pairs):>6} {_n(c.parts['attribution']):>5} "
                   f"{_n(c.parts['selection']):>5} {_n(c.parts['evaluation']):>5} {d:>12} "
                   f"{k:>9}  {verdict}")
    flagged = sum(bool(c.flags) for c in cs)
    out.append(f"flagged: {flagged} of {len(cs)} cells (min_pairs "
               f"{circ['claims']['min_pairs']}, >= {MIN_DOCUMENTS} documents per "
               f"bootstrapped part, max_pairs {dict(circ.get('max_pairs') or {})}); counts are "
               f"expectations rounded down")
    if ForecastSettings.from_config(config).select_on_evaluation:
        out.append("no selection part (contrastive.split.selection = 0): sizes are chosen on "
                   "the evaluation pairs, so 'circ s/e' shows the evaluation pairs twice")
    out += [f"assumed: {a}" for a in assumed or ()]
    return "\n".join(out)
