"""Config validation at start-up: one line that names the key or file at fault.

The JSON schema (config/schema.yaml) checks shapes and types; `check` then checks what a
schema cannot: that shard files exist (or are written by the stand-in rule), that names
refer to each other consistently, that the organism's samples fit its planted documents.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from vermem.core.errors import VermemError
from vermem.core.naming import (
    FINAL,
    NAME,
    final_step,
    injection_names,
    organism_names,
    slugify,
    step_of,
)
from vermem.workflow import pair_forecast


class ConfigError(VermemError, ValueError):
    """Invalid configuration; str() is one line naming the key or file."""


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _one_line(err: jsonschema.ValidationError) -> str:
    where = _where(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = set(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - allowed)
        return f"{where}: unknown key(s) {', '.join(map(repr, extra))}" + (
            f" (allowed: {', '.join(sorted(allowed))})" if allowed else "")
    if err.validator == "required":
        return f"{where}: {err.message}"
    if err.validator == "propertyNames":
        return f"{where}: bad name {err.instance!r}: {err.message}"
    return f"{where}: {err.message}"


def load_schema(path: str | Path) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def validate_schema(config: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    err = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if err is not None:
        raise ConfigError(f"config error at {_one_line(err)}")


STANDIN_DIR = "results/standin"  # where the stand-in rule writes its shards


def _is_standin(path: str) -> bool:
    return Path(os.path.normpath(path)).parts[:2] == tuple(Path(STANDIN_DIR).parts)


def standin_shards(config: Mapping[str, Any]) -> list[str]:
    """Shards the stand-in rule writes: the configured ones under results/standin/, when a
    stand-in is set. Every other entry is a shard of the user's own."""
    if not config.get("standin"):
        return []
    return [p for p in config["corpus"]["shards"] if _is_standin(p)]


# Planning: `vermem.workflow.plan` sets this environment variable to 1 around its dry run, so that
# a config can be billed on a machine without its data (the Pile, a cluster's model
# folders). Shards and local model folders that are not here are then taken as declared,
# unread; a run (not a dry run) with it set is refused (rules/common.smk, onstart).
PLANNING_ENV = "VERMEM_PLAN"


def planning() -> bool:
    """Whether the workflow is parsed for `vermem.workflow.plan` only (`PLANNING_ENV` is 1)."""
    return os.environ.get(PLANNING_ENV) == "1"


def expand_shards(config: Mapping[str, Any], planning: bool = False) -> list[str]:
    """Shard paths with glob patterns expanded (stand-in shards as configured, as the
    stand-in rule writes them); a pattern matching nothing, or a missing file, is an
    error, except when `planning`: then it is kept as declared (`unread_shards`)."""
    written = set(standin_shards(config))
    out: list[str] = []
    for pattern in config["corpus"]["shards"]:
        if pattern in written:
            out.append(pattern)
        elif glob.has_magic(pattern):
            hits = sorted(glob.glob(pattern))
            if not hits and not planning:
                raise ConfigError(f"config error at corpus.shards: pattern {pattern!r} "
                                  f"matches no file")
            out.extend(hits or [pattern])
        elif not Path(pattern).is_file() and not planning:
            raise ConfigError(f"config error at corpus.shards: shard file not found: {pattern}")
        else:
            out.append(pattern)
    names = [Path(p).name for p in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"config error at corpus.shards: shard file names must be unique "
                          f"(they name documents): {dup}")
    return out


def unread_shards(config: Mapping[str, Any], shards: list[str]) -> list[str]:
    """The shards of `expand_shards(config, planning=True)` that are not on this machine
    (nor written by the stand-in rule): billed as declared, never read."""
    written = set(standin_shards(config))
    return [p for p in shards if p not in written and not Path(p).is_file()]


def check(config: MutableMapping[str, Any], schema: Mapping[str, Any],
          planning: bool = False) -> None:
    """Validate `config` in place of a long job failing later. Raises ConfigError.
    `planning`: shards need not exist (`expand_shards`)."""
    validate_schema(config, schema)
    corpus, mem = config["corpus"], config["memorization"]
    subsets = corpus["subsets"]
    if corpus["main_subset"] not in subsets:
        raise ConfigError(f"config error at corpus.main_subset: {corpus['main_subset']!r} "
                          f"is not one of corpus.subsets {subsets}")
    for name, t in {"default": mem["thresholds"]["default"],
                    **mem["thresholds"].get("per_subset", {})}.items():
        if name != "default" and name not in subsets:
            raise ConfigError(f"config error at memorization.thresholds.per_subset.{name}: "
                              f"not one of corpus.subsets {subsets}")
        if t["low"] > t["high"]:
            raise ConfigError(f"config error at memorization.thresholds: {name}: "
                              f"low {t['low']} > high {t['high']}")
    fractions = config["contrastive"]["split"]
    if abs(sum(fractions.values()) - 1) > 1e-6:
        raise ConfigError(f"config error at contrastive.split: fractions {dict(fractions)} "
                          f"sum to {sum(fractions.values()):g}, not 1")
    if fractions["attribution"] <= 0:  # refused: no pair would rank the edges (issue 35);
        # evaluation > 0 is the schema's; selection may be 0 (the authors' design)
        raise ConfigError("config error at contrastive.split.attribution: 0 leaves the "
                          "attribution part empty, and every circuit needs its pairs to rank "
                          "the edges; give it a share (only selection may be 0)")
    if ("distant_context" in config["attribution"]["tasks"]
            and config["contrastive"].get("distant_r") is None):
        raise ConfigError("config error at attribution.tasks: distant_context needs "
                          "contrastive.distant_r (the radius beyond which its corrupt prompt "
                          "differs; docs/study-a.md, Stage 10c)")
    if config.get("standin"):
        if not standin_shards(config):
            raise ConfigError(f"config error at corpus.shards: standin is set but no shard is "
                              f"under {STANDIN_DIR}/, where the stand-in corpus is written")
        names = {d["pile_set_name"] for d in config["standin"]["domains"].values()}
        unknown = [s for s in subsets if s not in names]
        own = len(standin_shards(config)) < len(corpus["shards"])
        # with shards of the user's own, the corpus_candidates scan checks every subset in
        # all shards (a shard's subsets are unknown until it is read)
        if unknown and not own:
            raise ConfigError(f"config error at corpus.subsets: {unknown} not written by the "
                              f"stand-in corpus (its subsets: {sorted(names)}) and no other "
                              f"shard is configured")
        if config["standin"]["min_chars"] > config["standin"]["max_chars"]:
            raise ConfigError("config error at standin.min_chars: larger than max_chars")
    slugs = [slugify(s) for s in subsets]
    if len(set(slugs)) != len(slugs) or not all(slugs):
        raise ConfigError(f"config error at corpus.subsets: names must stay distinct and "
                          f"non-empty as file names: {dict(zip(subsets, slugs, strict=True))}")
    circ, attr = config["circuits"], config["attribution"]
    if circ["rank_by"] not in attr["metrics"]:
        raise ConfigError(f"config error at circuits.rank_by: {circ['rank_by']!r} is not one "
                          f"of attribution.metrics {attr['metrics']}")
    for key, allowed in (("placement", "placements"), ("ablation", "ablations")):
        if circ["main"][key] not in circ[allowed]:
            raise ConfigError(f"config error at circuits.main.{key}: {circ['main'][key]!r} is "
                              f"not one of circuits.{allowed} {circ[allowed]}")
    expand_shards(config, planning)
    by_case: dict[str, list[str]] = {}
    for name in config["models"]:
        by_case.setdefault(name.casefold(), []).append(name)
    clash = next((names for names in by_case.values() if len(names) > 1), None)
    if clash:
        raise ConfigError(f"config error at models: names {' and '.join(map(repr, clash))} "
                          f"differ only in case; their result files would collide on a "
                          f"case-insensitive file system")
    organisms = [n for n, m in config["models"].items() if m["source"] == "organism"]
    if len(organisms) > 1:
        raise ConfigError(f"config error at models: more than one organism model {organisms}")
    if organisms and not config.get("organism"):
        raise ConfigError(f"config error at organism: models.{organisms[0]} has source "
                          f"organism but the organism section is null")
    if organisms and not config.get("standin"):
        raise ConfigError(f"config error at standin: models.{organisms[0]} is an organism, "
                          f"which trains on the stand-in corpus; standin is null")
    if organisms:
        org = config["organism"]
        need = check_planting(config, org["duplicates"], "organism.duplicates")
        if org["architecture"]["context"] < need:
            raise ConfigError(f"config error at organism.architecture.context: "
                              f"{org['architecture']['context']} < prefix + continuation "
                              f"tokens ({need})")
        if org["architecture"]["width"] % org["architecture"]["heads"]:
            raise ConfigError("config error at organism.architecture.heads: "
                              "does not divide width")
    check_injections(config)
    if config.get("studies") == ["B"] and not config.get("dynamics"):
        raise ConfigError("config error at studies: Study B alone is asked for, but the "
                          "dynamics section is null")
    if config.get("dynamics"):
        check_dynamics(config)
    check_checkpoints(config)
    pair_forecast.check(config)  # the plan section's names


def check_planting(config: Mapping[str, Any], dup: Mapping[str, Any], key: str) -> int:
    """The planted documents of an organism or injection (`dup`, config key `key`) can be
    samples and have a number per count. Returns prefix + continuation tokens."""
    mem = config["memorization"]
    need = mem["prefix_tokens"] + mem["continuation_tokens"]
    if dup["max_tokens"] < need:
        raise ConfigError(f"config error at {key}.max_tokens: {dup['max_tokens']} < prefix + "
                          f"continuation tokens ({need}): no planted document could be a sample")
    per = dup["docs_per_count"]
    if isinstance(per, list) and len(per) != len(dup["counts"]):
        raise ConfigError(f"config error at {key}.docs_per_count: {len(per)} numbers for "
                          f"{len(dup['counts'])} counts")
    return need


def check_injections(config: Mapping[str, Any]) -> None:
    """Injected models (vermem.models.injection): a base among the models that is not injected
    itself, a stand-in corpus to plant from, documents long enough to be samples. And at
    least one model is studied (`study`)."""
    for name, spec in config["models"].items():
        if spec["source"] != "injected":
            continue
        where, base = f"config error at models.{name}", spec["base"]
        if base not in config["models"] or base == name:
            raise ConfigError(f"{where}.base: {base!r} is not another of models "
                              f"{list(config['models'])}")
        if config["models"][base]["source"] == "injected":
            raise ConfigError(f"{where}.base: {base!r} is injected itself; inject into its "
                              f"base with more documents instead")
        if not config.get("standin"):
            raise ConfigError(f"config error at standin: models.{name} plants documents of "
                              f"the stand-in corpus; standin is null")
        check_planting(config, spec["injection"]["duplicates"],
                       f"models.{name}.injection.duplicates")
    if not any(spec.get("study", True) for spec in config["models"].values()):
        raise ConfigError("config error at models: every model has study: false")


def check_dynamics(config: Mapping[str, Any]) -> None:
    """Study B: its models exist, its strings fit the organism's context, its Q2 epochs are
    trained. (A hub model's context is checked by the dynamics_strings rule.)"""
    dyn = config["dynamics"]
    for name in dyn["models"]:
        if name not in config["models"]:
            raise ConfigError(f"config error at dynamics.models: {name!r} is not one of "
                              f"models {list(config['models'])}")
    for key in ("families", "model_inits"):
        for name in dyn.get(key) or {}:
            if name not in dyn["models"]:
                raise ConfigError(f"config error at dynamics.{key}: {name!r} is not one of "
                                  f"dynamics.models {dyn['models']}")
    longest = max(max(dyn["grid"]["lengths"]), dyn["sequential"]["length"])
    for name in dyn["models"]:
        if config["models"][name]["source"] == "organism" and config.get("organism"):
            context = config["organism"]["architecture"]["context"]
            if longest + 1 > context:
                raise ConfigError(f"config error at dynamics.grid.lengths: {longest} letters "
                                  f"+ BOS exceed the context of {name} ({context})")
    late = [e for e in dyn["q2"]["epochs"] if e > dyn["training"]["epochs"]]
    if late:
        raise ConfigError(f"config error at dynamics.q2.epochs: {late} after the last "
                          f"epoch (dynamics.training.epochs = {dyn['training']['epochs']})")


def check_checkpoints(config: Mapping[str, Any]) -> None:
    """Cross-key checks of the checkpoint axis. Raises ConfigError naming the key."""
    ck = config.get("checkpoints")
    for model, spec in config["models"].items():
        where = f"config error at models.{model}.checkpoints"
        names = spec.get("checkpoints")
        if names is None:
            continue
        if not ck:
            raise ConfigError(f"{where}: listed, but the top-level checkpoints section is null "
                              f"(set it to study them)")
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}: {names} lists a checkpoint twice")
        for name in names:
            if name == FINAL or not NAME.match(name):
                raise ConfigError(f"{where}: bad name {name!r} (a revision or folder name of "
                                  f"letters, digits, '.', '_', '-'; not {FINAL!r})")
        if spec["source"] in ("organism", "injected"):  # a selection of its snapshots
            if spec["source"] == "organism":
                who, key, n = "the organism", "organism.checkpoints", \
                    config["organism"]["checkpoints"]
                saved = organism_names(n)
            else:
                who, key = "the injection", f"models.{model}.injection.checkpoints"
                n = spec["injection"]["checkpoints"]
                saved = injection_names(n)
            unknown = [c for c in names if c not in saved]
            if unknown:
                raise ConfigError(f"{where}: {unknown} are not saved by {who} ({key} = {n} "
                                  f"saves {saved})")
            continue
        if spec.get("revision") in names:
            raise ConfigError(f"{where}: {spec['revision']!r} is the model's own revision, the "
                              f"final point of the axis; list only earlier checkpoints")
        unnumbered = [n for n in names if step_of(n) is None]
        if unnumbered:
            raise ConfigError(f"{where}: {unnumbered} carry no training step (a checkpoint is "
                              f"named by its step, e.g. step1000)")
        last = final_step(config, model)
        if last is None:
            raise ConfigError(f"config error at models.{model}.final_step: the final model's "
                              f"training step is needed to place it after its checkpoints "
                              f"(its revision {spec.get('revision', 'main')!r} names none)")
        late = [n for n in names if step_of(n) >= last]
        if late:
            raise ConfigError(f"{where}: {late} are not before the final model's step {last}")
    if ck and ck.get("subsets"):
        unknown = [s for s in ck["subsets"] if s not in config["corpus"]["subsets"]]
        if unknown:
            raise ConfigError(f"config error at checkpoints.subsets: {unknown} are not in "
                              f"corpus.subsets {config['corpus']['subsets']}")
