# Study B: dynamics of memorizing random strings (docs/study-b.md). Strings per model (tokens
# checked), one fine-tuning job per model, init and grid cell (its seeds one after another,
# a fresh model copy per string), Q3 sequential exposure, then the tables and figures.
# Off (no `dynamics` section): the rules are here, no target asks for them (rules/common.smk).


rule dynamics_strings:
    input:
        model="results/models/{model}/model.json",
    output:
        table="results/dynamics/{model}/strings.parquet",
        summary="results/dynamics/{model}/strings.json",
    log:
        "logs/dynamics/{model}/strings.log",
    conda:
        ENV
    params:
        device=config["device"],
        config=DYN,
    script:
        "../scripts/dynamics_strings.py"


rule dynamics_train:
    input:
        model="results/models/{model}/model.json",
        strings="results/dynamics/{model}/strings.parquet",
    output:
        curves="results/dynamics/{model}/{init}/{cell}.parquet",
        q2="results/dynamics/{model}/{init}/{cell}.q2.parquet",
    log:
        "logs/dynamics/{model}/{init}/{cell}.log",
    retries: RETRIES
    group:
        "dynamics-{model}-{init}"
    conda:
        ENV
    threads: 1  # small models run faster as parallel one-thread jobs; SLURM sets more
    resources:
        **gpu_resources("dynamics_train"),
    params:
        device=config["device"],
        config=DYN,
    script:
        "../scripts/dynamics_train.py"


rule dynamics_sequential:
    input:
        model="results/models/{model}/model.json",
        strings="results/dynamics/{model}/strings.parquet",
    output:
        table="results/dynamics/{model}/{init}/sequential.parquet",
    log:
        "logs/dynamics/{model}/{init}/sequential.log",
    retries: RETRIES
    group:
        "dynamics-{model}-{init}"
    conda:
        ENV
    threads: 1  # small models run faster as parallel one-thread jobs; SLURM sets more
    resources:
        **gpu_resources("dynamics_sequential"),
    params:
        device=config["device"],
        config=DYN,
    script:
        "../scripts/dynamics_sequential.py"


localrules:
    dynamics_tables,
    figures_dynamics,
    figure_dynamics_q1,


rule dynamics_tables:
    input:
        strings=expand("results/dynamics/{model}/strings.parquet", model=DYN_MODELS),
        summaries=expand("results/dynamics/{model}/strings.json", model=DYN_MODELS),
        curves=[f"results/dynamics/{m}/{i}/{c}.parquet" for m, i in DYN_RUNS for c in CELLS],
        q2=[f"results/dynamics/{m}/{i}/{c}.q2.parquet" for m, i in DYN_RUNS for c in CELLS],
        sequential=[f"results/dynamics/{m}/{i}/sequential.parquet" for m, i in DYN_RUNS],
        records=expand("results/models/{model}/model.json", model=DYN_MODELS),
    output:
        curves="results/dynamics/curves.parquet",
        phases="results/dynamics/phases.parquet",
        q1="results/dynamics/q1.parquet",
        q2="results/dynamics/q2.parquet",
        q3="results/dynamics/q3.parquet",
        sequential="results/dynamics/sequential.parquet",
        findings="results/dynamics/findings.parquet",
        summary="results/dynamics/summary.json",
    log:
        "logs/dynamics/tables.log",
    conda:
        ENV
    params:
        config=DYN,
        seed=config["seed"],
    script:
        "../scripts/dynamics_tables.py"


rule figures_dynamics:
    input:
        curves="results/dynamics/curves.parquet",
        phases="results/dynamics/phases.parquet",
        strings="results/dynamics/{model}/strings.parquet",
        q2="results/dynamics/q2.parquet",
        sequential="results/dynamics/sequential.parquet",
        q3="results/dynamics/q3.parquet",
        examples=lambda wc: [
            f"results/dynamics/{wc.model}/{i}/{c}.parquet"
            for i in dyn_inits(wc.model)
            for c in EXAMPLE_CELLS
        ],
    output:
        curves=report(
            "results/figures/dynamics/{model}/curves.png",
            caption="../report/dynamics_curves.rst",
            category="Study B",
            subcategory="Phases",
            labels={"model": "{model}", "figure": "loss and accuracy curves"},
        ),
        grid=report(
            "results/figures/dynamics/{model}/position_grid.png",
            caption="../report/dynamics_position_grid.rst",
            category="Study B",
            subcategory="Phases",
            labels={"model": "{model}", "figure": "correct positions per epoch"},
        ),
        q2=report(
            "results/figures/dynamics/{model}/q2_context.png",
            caption="../report/dynamics_q2.rst",
            category="Study B",
            subcategory="Q2 local prefix",
            labels={"model": "{model}", "figure": "Q2: recall from the last k letters"},
        ),
        q3=report(
            "results/figures/dynamics/{model}/q3_forgetting.png",
            caption="../report/dynamics_q3.rst",
            category="Study B",
            subcategory="Q3 sequential exposure",
            labels={"model": "{model}", "figure": "Q3: sequential exposure"},
        ),
    log:
        "logs/figures/dynamics/{model}.log",
    conda:
        ENV
    params:
        inits=lambda wc: dyn_inits(wc.model),
    script:
        "../scripts/figures_dynamics.py"


rule figure_dynamics_q1:
    input:
        phases="results/dynamics/phases.parquet",
    output:
        figure=report(
            "results/figures/dynamics/q1_factors.png",
            caption="../report/dynamics_q1.rst",
            category="Study B",
            subcategory="Q1 factors",
            labels={"figure": "Q1: epochs to memorize by factor"},
        ),
    log:
        "logs/figures/dynamics/q1.log",
    conda:
        ENV
    script:
        "../scripts/figure_dynamics_q1.py"
