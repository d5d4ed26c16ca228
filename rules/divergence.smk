# Divergence points of memorized samples (docs/study-a.md §3), batched over prefix lengths.


rule divergence:
    input:
        model="results/models/{model}/model.json",
        labels="results/labels/{model}.parquet",
    output:
        table="results/divergence/{model}.parquet",
    log:
        "logs/divergence/{model}.log",
    priority: MAIN_PATH
    retries: RETRIES
    conda:
        ENV
    threads: 2  # one job per model on the main path: 2 threads (benchmarks/threads.json)
    resources:
        **gpu_resources("divergence"),
    params:
        device=config["device"],
        prefix_tokens=config["memorization"]["prefix_tokens"],
        batch_size=config["memorization"]["batch_size"],
        drop=config["divergence"]["bleu_drop"],
        epsilon=config["divergence"]["bleu_epsilon"],
        config=config["divergence"],
    script:
        "../scripts/divergence.py"
