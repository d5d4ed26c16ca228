# Contrastive pair sets, Branch Comparison and Memorization Decision (docs/study-a.md §4-6), with
# the seeded attribution / evaluation split and the reasons every sample was dropped.


rule pairs:
    input:
        model="results/models/{model}/model.json",
        labels="results/labels/{model}.parquet",
        divergence="results/divergence/{model}.parquet",
    output:
        table="results/pairs/{model}.parquet",
        summary="results/pairs/{model}.summary.json",
    params:
        device=config["device"],
        batch_size=config["memorization"]["batch_size"],
        seed=config["seed"],
        eval_fraction=config["contrastive"]["eval_fraction"],
        same_subset=config["contrastive"]["decision_same_subset"],
        config=config["contrastive"],
    threads: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=120,
    log:
        "logs/pairs/{model}.log",
    conda:
        ENV
    script:
        "../scripts/pairs.py"
