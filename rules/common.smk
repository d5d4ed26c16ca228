# Shared by the other rule files. Config validation, the model list, input helpers.

import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)

# parse-time imports are light (no torch, polars, numpy): every job's Snakemake process
# parses the workflow again (benchmarks/jobstart.py; tests/workflow/test_config.py checks it)
from vermem.core.errors import VermemError
from vermem.core.naming import example_cell, grid_cells, init_runs, slugify
from vermem.core import naming as _ck  # the checkpoint axis's names (listed, subsets, ...)
from vermem.core import vocabulary as _pairs  # task names: control_task, is_control
from vermem.models import gguf_convert as _gguf  # where a gguf model's file is
from vermem.models.loading import check_device, check_models
from vermem.workflow.config import check, expand_shards, load_schema, planning, standin_shards
from vermem.workflow.config import PLANNING_ENV, unread_shards
from vermem.workflow.eta import finish as finish_eta, watch as watch_eta
from vermem.workflow.interrupts import JOB_SHELL_PREFIX, stop_on_interrupt
from vermem.workflow.startup import check_models_at_start

# the settings each computation reads (their KEYS are the rules' `params.config`)
from vermem.circuits.settings import (
    ComparisonSettings,
    FinalCircuitSettings,
    LocationSettings,
    SearchSettings,
    SpecificitySettings,
    TransferSettings,
)
from vermem.data.settings import ContextSettings, PairSettings, SampleSettings
from vermem.report.settings import ClaimSettings

# jobs ignore the terminal's Ctrl-C; the run's own handler stops them (onstart)
shell.prefix(JOB_SHELL_PREFIX)

# parsed for `vermem.workflow.plan` only (its dry run sets VERMEM_PLAN=1): shards and local model
# folders that are not on this machine are billed as declared, unread
PLANNING = planning()

try:
    # the JSON schema (shapes, types, unknown keys) plus cross-key checks, then every local
    # model folder (hub models: model_record, once fetched); one-line errors
    check(config, load_schema(Path(workflow.basedir) / "config" / "schema.yaml"), PLANNING)
    check_models(config, PLANNING)
except VermemError as e:
    raise WorkflowError(str(e))


# optional keys (config/schema.yaml): their defaults, so that every rule reads one value
config["circuits"].setdefault("criterion", "band")
config["circuits"].setdefault("search", "band")
config["attribution"].setdefault("compare_methods", [])
config.setdefault("studies", ["A", "B"])

# the studies `all` runs and the summary reports (Study B also needs its `dynamics` section;
# the study_a and study_b targets run one study whatever `studies` says)
STUDY_A = "A" in config["studies"]
MIB = config["circuits"].get("mib", True)  # MIB CPR/CMD tables (circuits.mib)
STUDY_B = "B" in config["studies"] and bool(config.get("dynamics"))
# Study B's section (rules/dynamics.smk): its rules are defined without it, and then asked for
# by no target
DYN = config.get("dynamics") or {}
DYN_MODELS = DYN.get("models", [])
DYN_INITS = DYN.get("inits", [])


def dyn_inits(model):
    """Study B's training runs of `model`: its inits (dynamics.model_inits, else
    dynamics.inits), `random` once per dynamics.init_seed ("random-{seed}")."""
    inits = (DYN.get("model_inits") or {}).get(model, DYN_INITS)
    return init_runs(inits, DYN.get("init_seed", 0))


DYN_RUNS = [(m, i) for m in DYN_MODELS for i in dyn_inits(m)]  # (model, init) trained
CELLS = grid_cells(DYN["grid"]) if DYN else []
EXAMPLE_CELLS = [example_cell(DYN["grid"])] if DYN else []  # drawn in the position grid


onstart:
    if PLANNING:  # a run, not a dry run: the data it skipped checking are needed now
        raise WorkflowError(
            f"{PLANNING_ENV}=1 is for vermem.workflow.plan's dry runs only; unset it "
            f"to run the workflow"
        )
    # model files read before any job: a GGUF file's header, an injection's components in
    # its base, Study B letters in a local tokenizer (vermem.workflow.startup)
    if not workflow.touch:
        try:
            check_models_at_start(config)
        except VermemError as e:
            raise WorkflowError(str(e))
    # `device: cuda` on a host without a GPU (or cuda:N without an N-th), before any job,
    # when the jobs run on this host: the local executor (`workflow.local_exec`; not
    # --touch, not a job's own Snakemake process). A SLURM run submits from a host that may
    # have no GPU, and its jobs run on GPU nodes: not checked here (a job on a node without
    # one fails at its start, `pick_device`). The executor is known only once the workflow
    # runs, not at parse time, hence onstart (which a dry run skips); torch is imported for
    # a CUDA device only.
    if workflow.local_exec and not (workflow.touch or workflow.remote_exec):
        try:
            check_device(config)
        except VermemError as e:
            raise WorkflowError(str(e))
        # Ctrl-C stops the running jobs and the run (vermem.workflow.interrupts)
        stop_on_interrupt(workflow)
        # the whole run's ETA from the plan's time model, as jobs finish: the terminal and
        # logs/eta.log (vermem.workflow.eta)
        watch_eta(workflow, config, emit=logger.info)


onsuccess:
    finish_eta()  # the run ETA's last line (nothing unless onstart started its watcher)


ALL_MODELS = list(config["models"])  # every model entry; MODELS: those studied
MODELS = [m for m in ALL_MODELS if config["models"][m].get("study", True)]
_SOURCE = {m: spec["source"] for m, spec in config["models"].items()}
ORGANISMS = [m for m in ALL_MODELS if _SOURCE[m] == "organism"]
GGUFS = [m for m in ALL_MODELS if _SOURCE[m] == "gguf"]  # converted by gguf_model
INJECTED = [m for m in ALL_MODELS if _SOURCE[m] == "injected"]  # trained by inject_model
# injected with only some components trainable: circuits scored against them
LOCALIZED = [m for m in INJECTED if config["models"][m]["injection"].get("trainable")]
PLANTED = ORGANISMS + INJECTED  # with a duplicate table: the ground truth of the labels
EXTERNAL = [m for m in ALL_MODELS if _SOURCE[m] in ("hub", "local")]  # model_record
SHARDS = expand_shards(config, PLANNING)
UNREAD_SHARDS = unread_shards(config, SHARDS) if PLANNING else []  # planning: not here
STANDIN_SHARDS = standin_shards(config)  # written by the stand-in rule; the rest are the user's
# file-name-safe subset names: "Wikipedia (en)" -> "wikipedia-en"
SUBSETS = {slugify(s): s for s in config["corpus"]["subsets"]}
ENV = "../envs/vermem.yaml"
# scheduling on a few cores: attribution first (priority 10, rules/attribution.smk), then the
# main path of Study A; Study B and the checkpoint jobs (OFF_PATH) fill the free cores
MAIN_PATH = 5
OFF_PATH = 0


def memo(*keys):
    """A slice of config['memorization'] (params that trigger reruns when changed)."""
    return {k: config["memorization"][k] for k in keys}


def model_inputs(wildcards):
    """The model record, plus the duplicate table when the model has planted documents
    (the organism, an injected model)."""
    inputs = {"model": f"results/models/{wildcards.model}/model.json"}
    if wildcards.model in PLANTED:
        inputs["duplicates"] = f"results/models/{wildcards.model}/duplicates.parquet"
    return inputs


def candidates_per_subset():
    """Size of each subset's candidate pool: all documents when every one is sampled."""
    n = config["corpus"]["samples_per_subset"]
    return None if n is None else int(n * config["corpus"]["candidate_factor"])


# the tasks of the pair sets: the memorization tasks, then (contrastive.controls) each one's
# control, the same construction on non-memorized text (vermem.data.contrastive.control_task)
BASE_TASKS = list(config["attribution"]["tasks"])
CONTROL_TASKS = (
    [_pairs.control_task(t) for t in BASE_TASKS]
    if config["contrastive"].get("controls", True)
    else []
)
TASKS = BASE_TASKS + CONTROL_TASKS
# the per-model figure jobs draw one figure per cell: attribution (task, subset, metric),
# circuits (task, subset), the memorization tasks only
LAYER_CELLS = [
    (t, s, m) for t in BASE_TASKS for s in SUBSETS for m in config["attribution"]["metrics"]
]
CIRCUIT_CELLS = [(t, s) for t in BASE_TASKS for s in SUBSETS]


def circuit_files(name, tasks=None):
    """One file per task (default: the memorization tasks) and subset of a model's circuits
    (an input function)."""

    def files(wildcards):
        return expand(
            "results/circuits/{model}/{task}/{subset}/{name}",
            model=wildcards.model,
            task=BASE_TASKS if tasks is None else tasks,
            subset=SUBSETS,
            name=name,
        )

    return files


def ranking_scores(tasks):
    """(input function, params) of the ranking attribution of `tasks` x every subset."""
    keys = [(t, s) for t in tasks for s in SUBSETS]

    def files(wc):
        return [
            f"results/attribution/{wc.model}/{t}/{s}/{config['circuits']['rank_by']}.safetensors"
            for t, s in keys
        ]

    return files, [{"task": t, "subset": SUBSETS[s]} for t, s in keys]


def claims_inputs(wc):
    """The transfer tables with their replicates, the minimal circuits, and the controls'
    specificity table when the controls are on."""
    base = f"results/circuits/{wc.model}"
    out = {
        "transfer": f"{base}/transfer.parquet",
        "transfer_replicates": f"{base}/transfer.replicates.safetensors",
        "matched": f"{base}/transfer_matched.parquet",
        "matched_replicates": f"{base}/transfer_matched.replicates.safetensors",
    }
    if CONTROL_TASKS:
        out["specificity"] = f"{base}/specificity.parquet"
    return out


def summary_inputs(wc):
    """Every table the summary reads, named by kind and model (rules/summary.smk)."""
    out = {}
    for m in MODELS if STUDY_A else []:
        out[f"labels.{m}"] = f"results/labels/{m}.summary.json"
        out[f"pairs.{m}"] = f"results/pairs/{m}.summary.json"
        out[f"claims.{m}"] = f"results/circuits/{m}/claims.parquet"
        out[f"minimal.{m}"] = expand(
            "results/circuits/{model}/{task}/{subset}/minimal.json",
            model=m,
            task=BASE_TASKS,
            subset=SUBSETS,
        )
        if MIB:
            out[f"mib.{m}"] = expand(
                "results/circuits/{model}/{task}/{subset}/mib.parquet",
                model=m,
                task=BASE_TASKS,
                subset=SUBSETS,
            )
        if config["attribution"]["compare_methods"]:
            out[f"methods.{m}"] = f"results/circuits/{m}/methods.parquet"
            out[f"methods_agreement.{m}"] = f"results/circuits/{m}/methods_agreement.parquet"
        if CONTROL_TASKS:
            out[f"specificity.{m}"] = f"results/circuits/{m}/specificity.parquet"
        if CKPTS[m]:
            out[f"checkpoints.{m}"] = f"results/checkpoints/{m}/summary.json"
        if m in LOCALIZED:
            out[f"location.{m}"] = expand(
                "results/circuits/{model}/{task}/{subset}/location.parquet",
                model=m,
                task=TASKS,
                subset=SUBSETS,
            )  # with the controls: the contrast
            out[f"location_mass.{m}"] = expand(
                "results/circuits/{model}/{task}/{subset}/location_mass.parquet",
                model=m,
                task=TASKS,
                subset=SUBSETS,
            )
    if STUDY_B:
        out["dynamics"] = "results/dynamics/summary.json"
        out["dynamics_findings"] = "results/dynamics/findings.parquet"
    return out


# -- the checkpoint axis (rules/checkpoints.smk, docs/study-a.md §12)
CKPTS = {m: _ck.listed(config, m) for m in MODELS}
CKPT_MODELS = [m for m in MODELS if CKPTS[m]]
CKPT_SUBSETS = _ck.subsets(config)  # slug -> name: attribution and circuits at checkpoints
FINAL = _ck.FINAL


def gguf_file(wc):
    """The GGUF file of a gguf model, as an input where it is on this machine (a plan's
    dry run, `PLANNING`, does without it)."""
    try:
        return [str(_gguf.locate(wc.model, config["models"][wc.model]))]
    except VermemError:
        return []


def gguf_mem_mb(wc, attempt):
    files = gguf_file(wc)
    return attempt * _res.convert_mb(Path(files[0]).stat().st_size if files else 2**30)


def injection_base(wc):
    """The record of an injected model's base model."""
    return f"results/models/{config['models'][wc.model]['base']}/model.json"


def record_spec(wc):
    """The params of the rules that make a model's records (`_ck.record_spec`)."""
    return _ck.record_spec(config["models"][wc.model])


def point_record(wc):
    """The record of a point of the axis: a checkpoint's, or the final model's own."""
    if wc.ckpt == FINAL:
        return f"results/models/{wc.model}/model.json"
    return f"results/models/{wc.model}/checkpoints/{wc.ckpt}/model.json"


def main_mode_circuit_config():
    """The circuit rule's config at checkpoints and for control tasks: the main mode only
    (both directions), random circuits at the minimal size only."""
    return SearchSettings.main_mode_params(config)


def point_files(wc, final_pattern, ckpt_pattern, **fmt):
    """One file per point of the model's axis (its checkpoints in config order, then the
    final model), per task and subset at checkpoints when the patterns name them."""
    out = []
    for ckpt in [*CKPTS[wc.model], FINAL]:
        pattern = final_pattern if ckpt == FINAL else ckpt_pattern
        per_set = {"task": config["attribution"]["tasks"], "subset": list(CKPT_SUBSETS)}
        out += expand(
            pattern, model=wc.model, ckpt=ckpt, **fmt, **(per_set if "{task}" in pattern else {})
        )
    return out


# -- the targets (Snakefile): what `all`, `study_a` and `study_b` ask for, from the config;
# every rule is defined whatever the config, and those it switches off are asked for by none


def all_targets(study=None):
    """The files of a target: one study's ("A", "B"), whatever config key `studies` says,
    or (None) the `all` target: the studies of `studies`, and results/summary.md."""
    if study is None:
        return [
            *(all_targets("A") if STUDY_A else []),
            *(all_targets("B") if STUDY_B else []),
            "results/summary.md",
        ]
    if study == "B":
        if not DYN:
            return []
        return [
            "results/dynamics/summary.json",
            "results/figures/dynamics/q1_factors.png",
            *expand(
                "results/figures/dynamics/{model}/{name}.png",
                model=DYN_MODELS,
                name=["curves", "position_grid", "q2_context", "q3_forgetting"],
            ),
        ]
    assert study == "A", study
    tasks = config["attribution"]["tasks"]
    return [
        *expand("results/pairs/{model}.summary.json", model=MODELS),
        *expand("results/figures/{model}/memorization_scores.png", model=MODELS),
        *expand(
            "results/figures/{model}/memorization_by_duplicates.png",
            model=[m for m in PLANTED if m in MODELS],
        ),
        *expand(
            "results/figures/{model}/attribution/{task}.{subset}.{metric}.png",
            model=MODELS,
            task=tasks,
            subset=SUBSETS,
            metric=config["attribution"]["metrics"],
        ),
        *expand(
            "results/figures/{model}/attribution/positions.{subset}.png",
            model=MODELS,
            subset=SUBSETS,
        ),
        *expand("results/circuits/{model}/claims.csv", model=MODELS),
        *expand("results/figures/{model}/context_dependence.png", model=MODELS),
        *expand(
            "results/circuits/{model}/{task}/{subset}/location.parquet",
            model=[m for m in LOCALIZED if m in MODELS],
            task=TASKS,
            subset=SUBSETS,
        ),
        *expand("results/figures/{model}/circuits/transfer.png", model=MODELS),
        *expand("results/figures/{model}/circuits/mib.png", model=MODELS if MIB else []),
        *expand(
            "results/figures/{model}/circuits/methods.png",
            model=MODELS if config["attribution"]["compare_methods"] else [],
        ),
        *expand(
            "results/figures/{model}/circuits/specificity.png",
            model=MODELS if CONTROL_TASKS else [],
        ),
        *expand(
            "results/figures/{model}/circuits/faithfulness.{task}.{subset}.png",
            model=MODELS,
            task=tasks,
            subset=SUBSETS,
        ),
        *expand(
            "results/figures/{model}/circuits/view.{task}.{subset}.html",
            model=MODELS,
            task=tasks,
            subset=SUBSETS,
        ),
        *expand(
            "results/figures/{model}/checkpoints/{name}.png",
            model=CKPT_MODELS,
            name=["memorization", "circuits", "overlap"],
        ),
    ]


wildcard_constraints:
    model="|".join(ALL_MODELS),
    subset="|".join(SUBSETS),
    task="|".join(TASKS),
    metric="logit_diff|wrong_logit|answer_logprob",
    ckpt="[A-Za-z0-9][A-Za-z0-9._-]*",  # a checkpoint's name (rules/checkpoints.smk)
    init=r"pretrained|random-\d+",  # Study B's training runs (vermem.core.naming.init_runs)
    cell=r"l\d+-h[0-9.e+-]+-n\d+",  # a Study B grid cell (vermem.core.naming.string_id)


# -- resources per job (vermem.workflow.resources): SLURM requests grow with the model and the work
from vermem.workflow import resources as _res

RETRIES = 2  # a job killed at its time or memory limit comes back with attempt x more


def gpu_resources(rule_name):
    """`resources:` of a GPU rule: gpu=1, and per job mem_mb, runtime (both x attempt) and
    gpu_mem_mb (peak GPU memory of the memory model) from the model's record when it
    exists, else its known shape, and the rule's work (pairs, strings, IG steps, lengths)."""
    cache = {}

    def request(wc):
        key = tuple(sorted(wc.items()))
        if key not in cache:
            record = f"results/models/{wc.model}/model.json" if "model" in wc.keys() else None
            cache[key] = _res.job(rule_name, config, dict(wc.items()), record)
        return cache[key]

    return {
        "gpu": 1,
        "mem_mb": lambda wc, attempt: request(wc).mem_mb * attempt,
        "runtime": lambda wc, attempt: request(wc).runtime * attempt,
        "gpu_mem_mb": lambda wc: request(wc).gpu_mem_mb,
    }
