# Circuits (docs/study-a.md §9-11): faithfulness curves and minimal circuits per task and subset,
# evaluated on the held-out split only; transfer across tasks and subsets, circuit
# overlap, and the paper's claims checked against this run's numbers.


rule circuit:
    input:
        model="results/models/{model}/model.json",
        pairs="results/pairs/{model}.parquet",
        scores=f"results/attribution/{{model}}/{{task}}/{{subset}}/{config['circuits']['rank_by']}.safetensors",
    output:
        curve="results/circuits/{model}/{task}/{subset}/curve.parquet",
        minimal="results/circuits/{model}/{task}/{subset}/minimal.json",
    params:
        device=config["device"],
        subset=lambda wc: SUBSETS[wc.subset],
        config=circuits_keys("rank_by", "metric", "target", "curve_points", "directions",
                             "placements", "ablations", "random_seeds", "batch_size"),
    # many small patched forward passes: one thread each, jobs in parallel (the SLURM
    # profile gives GPU jobs more)
    threads: 1
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=240,
    log:
        "logs/circuits/{model}/{task}/{subset}.log",
    conda:
        ENV
    script:
        "../scripts/circuit.py"


rule circuit_transfer:
    input:
        model="results/models/{model}/model.json",
        pairs="results/pairs/{model}.parquet",
        minimal=circuit_files("minimal.json"),
    output:
        transfer="results/circuits/{model}/transfer.parquet",
        overlap="results/circuits/{model}/overlap.parquet",
    params:
        device=config["device"],
        config=circuits_keys("metric", "main", "random_seeds", "batch_size"),
    threads: 2
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=240,
    log:
        "logs/circuits/{model}/transfer.log",
    conda:
        ENV
    script:
        "../scripts/circuit_transfer.py"


rule circuit_claims:
    input:
        transfer="results/circuits/{model}/transfer.parquet",
        minimal=circuit_files("minimal.json"),
    output:
        table="results/circuits/{model}/claims.parquet",
        csv=report("results/circuits/{model}/claims.csv", caption="../report/claims.rst",
                   category="Study A", subcategory="Circuits"),
    params:
        main_subset=config["corpus"]["main_subset"],
        config=circuits_keys("main", "claims"),
    log:
        "logs/circuits/{model}/claims.log",
    conda:
        ENV
    script:
        "../scripts/circuit_claims.py"


rule figure_faithfulness:
    input:
        curve="results/circuits/{model}/{task}/{subset}/curve.parquet",
        minimal="results/circuits/{model}/{task}/{subset}/minimal.json",
    output:
        curves=report("results/figures/{model}/circuits/faithfulness.{task}.{subset}.png",
                      caption="../report/faithfulness.rst", category="Study A",
                      subcategory="Circuits"),
        drawing=report("results/figures/{model}/circuits/circuit.{task}.{subset}.png",
                       caption="../report/circuit_drawing.rst", category="Study A",
                       subcategory="Circuits"),
    params:
        main=config["circuits"]["main"],
    log:
        "logs/figures/{model}/circuits/{task}.{subset}.log",
    conda:
        ENV
    script:
        "../scripts/figure_circuits.py"


rule figure_transfer:
    input:
        transfer="results/circuits/{model}/transfer.parquet",
        overlap="results/circuits/{model}/overlap.parquet",
    output:
        transfer=report("results/figures/{model}/circuits/transfer.png",
                        caption="../report/transfer.rst", category="Study A",
                        subcategory="Circuits"),
        overlap=report("results/figures/{model}/circuits/overlap.png",
                       caption="../report/overlap.rst", category="Study A",
                       subcategory="Circuits"),
    log:
        "logs/figures/{model}/circuits/transfer.log",
    conda:
        ENV
    script:
        "../scripts/figure_transfer.py"
