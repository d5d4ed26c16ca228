# Verbatim memorization in language models: from raw Pile shards to memorization labels.
# See README.md. Config: config/config.yaml (embedded, offline default), or a complete
# config of your own with --configfile (config/pythia.yaml for paper scale).
# Targets: all (default: the studies of config key `studies`, and results/summary.md),
# study_a (Study A's tables and figures), study_b (Study B's).

from snakemake.utils import min_version

min_version("9.0")


# A --configfile replaces the embedded default rather than merging into it, so that the
# paper-scale config is not polluted by the stand-in corpus or the organism.
# The default is found next to this Snakefile, so `snakemake -d elsewhere` runs it too.
if not workflow.overwrite_configfiles:

    configfile: f"{workflow.basedir}/config/config.yaml"


# With --software-deployment-method apptainer every job runs in this image, built from
# vermem.def (docs/running.md, "In a container"); other runs ignore it.
container: f"{workflow.basedir}/vermem.sif"


# The report's front page (snakemake --report): the run's summary and how to read the rest
report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/corpus.smk"
include: "rules/models.smk"
include: "rules/labels.smk"
include: "rules/divergence.smk"
include: "rules/contrastive.smk"
include: "rules/attribution.smk"
include: "rules/circuits.smk"
include: "rules/checkpoints.smk"
include: "rules/figures.smk"
include: "rules/dynamics.smk"
include: "rules/summary.smk"


wildcard_constraints:
    model="|".join(ALL_MODELS),
    subset="|".join(SUBSETS),
    task="|".join(TASKS),
    metric="logit_diff|wrong_logit|answer_logprob",


STUDY_A_TARGETS = [
    *expand("results/pairs/{model}.summary.json", model=MODELS),
    *expand("results/figures/{model}/memorization_scores.png", model=MODELS),
    *expand("results/figures/{model}/memorization_by_duplicates.png", model=[m for m in PLANTED if m in MODELS]),
    *expand(
        "results/figures/{model}/attribution/{task}.{subset}.{metric}.png",
        model=MODELS,
        task=config["attribution"]["tasks"],
        subset=SUBSETS,
        metric=config["attribution"]["metrics"],
    ),
    *expand("results/figures/{model}/attribution/positions.{subset}.png", model=MODELS,
            subset=SUBSETS),
    *expand("results/circuits/{model}/claims.csv", model=MODELS),
    *expand("results/circuits/{model}/{task}/{subset}/location.parquet",
            model=[m for m in LOCALIZED if m in MODELS], task=TASKS, subset=SUBSETS),
    *expand("results/figures/{model}/circuits/transfer.png", model=MODELS),
    *expand("results/figures/{model}/circuits/mib.png", model=MODELS if MIB else []),
    *expand("results/figures/{model}/circuits/methods.png",
            model=MODELS if config["attribution"]["compare_methods"] else []),
    *expand("results/figures/{model}/circuits/specificity.png",
            model=MODELS if CONTROL_TASKS else []),
    *expand(
        "results/figures/{model}/circuits/faithfulness.{task}.{subset}.png",
        model=MODELS,
        task=config["attribution"]["tasks"],
        subset=SUBSETS,
    ),
    *expand(
        "results/figures/{model}/circuits/view.{task}.{subset}.html",
        model=MODELS,
        task=config["attribution"]["tasks"],
        subset=SUBSETS,
    ),
    *expand("results/figures/{model}/checkpoints/{name}.png", model=CKPT_MODELS,
            name=["memorization", "circuits", "overlap"]),
]


rule all:
    input:
        STUDY_A_TARGETS if STUDY_A else [],
        DYNAMICS_TARGETS if STUDY_B else [],
        "results/summary.md",
    default_target: True


# One study alone, whatever `studies` says (no summary: `all` writes it)
rule study_a:
    input:
        STUDY_A_TARGETS,


rule study_b:
    input:
        DYNAMICS_TARGETS,
