# Memorization labels: batched greedy decoding with a KV cache (docs/study-a.md §2).


rule labels:
    input:
        model="results/models/{model}/model.json",
        samples="results/samples/{model}.parquet",
    output:
        table="results/labels/{model}.parquet",
        summary="results/labels/{model}.summary.json",
    log:
        "logs/labels/{model}.log",
    priority: MAIN_PATH
    retries: RETRIES
    conda:
        ENV
    threads: 2  # one job per model on the main path: 2 threads (benchmarks/threads.json)
    resources:
        **gpu_resources("labels"),
    params:
        device=config["device"],
        score=config["memorization"]["score"],
        thresholds=config["memorization"]["thresholds"],
        continuation_tokens=config["memorization"]["continuation_tokens"],
        batch_size=config["memorization"]["batch_size"],
        subsets=config["corpus"]["subsets"],
        config=memo("continuation_tokens", "score", "thresholds"),
    script:
        "../scripts/labels.py"
