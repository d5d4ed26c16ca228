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
