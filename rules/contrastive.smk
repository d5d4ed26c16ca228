# Contrastive pair sets, Branch Comparison and Memorization Decision (docs/study-a.md §4-6), with
# the seeded document split into attribution / selection / evaluation parts shared by
# every task and metric (an organism's split is stratified by its duplicate counts), and
# the reasons every sample was dropped.


rule pairs:
    input:
        unpack(model_inputs),  # the organism's duplicate counts stratify its split
        labels="results/labels/{model}.parquet",
        divergence="results/divergence/{model}.parquet",
        candidates="results/corpus/candidates.parquet",
    output:
        table="results/pairs/{model}.parquet",
        summary="results/pairs/{model}.summary.json",
    log:
        "logs/pairs/{model}.log",
    priority: MAIN_PATH
    retries: RETRIES
    conda:
        ENV
    threads: 2  # one job per model on the main path: 2 threads (benchmarks/threads.json)
    resources:
        **gpu_resources("pairs"),
    params:
        device=config["device"],
        config=PairSettings.params(config),
    script:
        "../scripts/pairs.py"


# Context dependence of memorized recall (vermem.data.context): the Branch Comparison
# prompts and their controls with all but the last r prefix tokens replaced by a
# non-memorized window's (positions kept) or cut off; the curves choose the Distant Context
# task's r (contrastive.distant_r) by the rule the summary states.
rule context_dependence:
    input:
        unpack(model_inputs),
        labels="results/labels/{model}.parquet",
        pairs="results/pairs/{model}.parquet",
        candidates="results/corpus/candidates.parquet",
    output:
        table="results/context/{model}.parquet",
        curves="results/context/{model}.curves.parquet",
        summary="results/context/{model}.summary.json",
    log:
        "logs/context/{model}.log",
    retries: RETRIES
    conda:
        ENV
    threads: 1
    resources:
        **gpu_resources("pairs"),
    params:
        device=config["device"],
        config=ContextSettings.params(config),
    script:
        "../scripts/context_dependence.py"


localrules:
    figure_context_dependence,


# Its figure, from the curves alone (`make figures` redraws it without the model).
rule figure_context_dependence:
    input:
        curves="results/context/{model}.curves.parquet",
    output:
        figure=report(
            "results/figures/{model}/context_dependence.png",
            caption="../report/context_dependence.rst",
            category="Study A",
            subcategory="Contrastive pairs",
            labels={"model": "{model}", "figure": "context dependence"},
        ),
    log:
        "logs/figures/{model}.context_dependence.log",
    conda:
        ENV
    script:
        "../scripts/figure_context_dependence.py"
