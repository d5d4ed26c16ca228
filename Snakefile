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


# the targets' files come from the config: all_targets (rules/common.smk)
rule all:
    default_target: True
    input:
        all_targets(),


# One study alone, whatever `studies` says (no summary: `all` writes it)
rule study_a:
    input:
        all_targets("A"),


rule study_b:
    input:
        all_targets("B"),
