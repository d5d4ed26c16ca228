# Circuits (docs/study-a.md §9-11): faithfulness curves and minimal circuits per task and subset,
# sizes chosen on the selection split, faithfulness reported on the evaluation split, with
# bootstrap intervals over pairs; transfer across tasks and subsets, circuit
# overlap, and the paper's claims checked against this run's numbers.


rule circuit:
    input:
        model="results/models/{model}/model.json",
        pairs="results/pairs/{model}.parquet",
        scores=f"results/attribution/{{model}}/{{task}}/{{subset}}/{config['circuits']['rank_by']}.safetensors",
    output:
        # MIB's CPR and CMD of the ranking per mode (vermem.circuits.mib), with random rankings'
        # (circuits.mib). A conditional output: scripts/circuit.py scores MIB where the rule
        # has this output (checkpoint_circuit leaves it out); snakefmt puts it first
        **({"mib": "results/circuits/{model}/{task}/{subset}/mib.parquet"} if MIB else {}),
        curve="results/circuits/{model}/{task}/{subset}/curve.parquet",
        minimal="results/circuits/{model}/{task}/{subset}/minimal.json",
        # the main mode's minimal circuit per direction in the EAP-IG library's graph JSON,
        # in circuits.directions order (scripts/circuit.py pairs them up)
        eap=expand(
            "results/circuits/{{model}}/{{task}}/{{subset}}/minimal.{direction}.eap.json",
            direction=config["circuits"]["directions"],
        ),
    log:
        "logs/circuits/{model}/{task}/{subset}.log",
    priority: MAIN_PATH
    retries: RETRIES
    group:
        "circuits-{model}"
    conda:
        ENV
    # many small patched forward passes: one thread each, jobs in parallel (the SLURM
    # profile gives GPU jobs more)
    threads: 1
    resources:
        **gpu_resources("circuit"),
    params:
        device=config["device"],
        subset=lambda wc: SUBSETS[wc.subset],
        # a control task: the main mode only (its circuits are compared with the memorization
        # circuits in that mode by circuit_specificity)
        # (the keys SearchSettings reads; no selection part, the authors' 90/10 design:
        # sizes chosen on the evaluation pairs)
        config=lambda wc: (
            main_mode_circuit_config()
            if _pairs.is_control(wc.task)
            else SearchSettings.params(config)
        ),
    script:
        "../scripts/circuit.py"


rule circuit_transfer:
    input:
        model="results/models/{model}/model.json",
        pairs="results/pairs/{model}.parquet",
        minimal=circuit_files("minimal.json"),
        scores=ranking_scores(BASE_TASKS)[0],
    output:
        transfer="results/circuits/{model}/transfer.parquet",
        replicates="results/circuits/{model}/transfer.replicates.safetensors",
        matched="results/circuits/{model}/transfer_matched.parquet",
        matched_replicates="results/circuits/{model}/transfer_matched.replicates.safetensors",
        overlap="results/circuits/{model}/overlap.parquet",
    log:
        "logs/circuits/{model}/transfer.log",
    priority: MAIN_PATH
    retries: RETRIES
    conda:
        ENV
    threads: 1  # small forwards: 2 threads ran 10-30x slower here whenever the cores were shared
    resources:
        **gpu_resources("circuit_transfer"),
    params:
        device=config["device"],
        score_keys=ranking_scores(BASE_TASKS)[1],
        config=TransferSettings.params(config),
    script:
        "../scripts/circuit_transfer.py"


rule circuit_specificity:
    input:
        model="results/models/{model}/model.json",
        pairs="results/pairs/{model}.parquet",
        minimal=circuit_files("minimal.json"),
        control_minimal=circuit_files("minimal.json", CONTROL_TASKS),
        scores=ranking_scores(TASKS)[0],
    output:
        table="results/circuits/{model}/specificity.parquet",
        curves="results/circuits/{model}/specificity_curves.parquet",
        replicates="results/circuits/{model}/specificity.replicates.safetensors",
    log:
        "logs/circuits/{model}/specificity.log",
    priority: MAIN_PATH
    retries: RETRIES
    conda:
        ENV
    threads: 1
    resources:
        **gpu_resources("circuit_transfer"),
    params:
        device=config["device"],
        score_keys=ranking_scores(TASKS)[1],
        config=SpecificitySettings.params(config),
    script:
        "../scripts/circuit_specificity.py"


localrules:
    circuit_claims,
    circuit_location,
    figure_faithfulness,
    figure_circuit_view,
    figure_transfer,
    figure_specificity,


rule circuit_claims:
    input:
        unpack(claims_inputs),
        minimal=circuit_files("minimal.json"),
    output:
        table="results/circuits/{model}/claims.parquet",
        csv="results/circuits/{model}/claims.csv",
        # the same table as a page the report shows (a CSV is only a download there)
        html=report(
            "results/circuits/{model}/claims.html",
            caption="../report/claims.rst",
            category="Summary",
            labels={"model": "{model}", "table": "claims"},
        ),
    log:
        "logs/circuits/{model}/claims.log",
    conda:
        ENV
    params:
        config=ClaimSettings.params(config),
    script:
        "../scripts/circuit_claims.py"


# One job per model for each of the next two: every memorization task and subset.
rule figure_faithfulness:
    input:
        curves=circuit_files("curve.parquet"),
        minimal=circuit_files("minimal.json"),
    output:
        curves=[
            report(
                f"results/figures/{{model}}/circuits/faithfulness.{t}.{s}.png",
                caption="../report/faithfulness.rst",
                category="Study A",
                subcategory="Circuits",
                labels={
                    "model": "{model}",
                    "figure": "faithfulness curves",
                    "task": t,
                    "subset": s,
                },
            )
            for t, s in CIRCUIT_CELLS
        ],
        drawings=[
            report(
                f"results/figures/{{model}}/circuits/circuit.{t}.{s}.png",
                caption="../report/circuit_drawing.rst",
                category="Study A",
                subcategory="Circuits",
                labels={
                    "model": "{model}",
                    "figure": "circuit drawing",
                    "task": t,
                    "subset": s,
                },
            )
            for t, s in CIRCUIT_CELLS
        ],
    log:
        "logs/figures/{model}/circuits/faithfulness.log",
    conda:
        ENV
    params:
        main=config["circuits"]["main"],
    script:
        "../scripts/figure_faithfulness.py"


rule figure_circuit_view:
    # the interactive view (vermem.circuits.view): one self-contained HTML page per task and
    # subset, the top-ranked edges beyond the minimal size from the ranking scores
    input:
        curves=circuit_files("curve.parquet"),
        minimal=circuit_files("minimal.json"),
        scores=ranking_scores(BASE_TASKS)[0],
    output:
        views=[
            report(
                f"results/figures/{{model}}/circuits/view.{t}.{s}.html",
                caption="../report/circuit_view.rst",
                category="Study A",
                subcategory="Circuits",
                labels={
                    "model": "{model}",
                    "figure": "interactive circuit view",
                    "task": t,
                    "subset": s,
                },
            )
            for t, s in CIRCUIT_CELLS
        ],
    log:
        "logs/figures/{model}/circuits/views.log",
    conda:
        ENV
    params:
        main=config["circuits"]["main"],
        top=500,  # edges embedded per direction (more when a minimal circuit is larger)
    script:
        "../scripts/figure_circuit_view.py"


rule figure_transfer:
    input:
        transfer="results/circuits/{model}/transfer.parquet",
        overlap="results/circuits/{model}/overlap.parquet",
        matched="results/circuits/{model}/transfer_matched.parquet",
    output:
        matched=report(
            "results/figures/{model}/circuits/transfer_matched.png",
            caption="../report/transfer_matched.rst",
            category="Study A",
            subcategory="Controls",
            labels={"model": "{model}", "figure": "cross-task transfer at matched size"},
        ),
        transfer=report(
            "results/figures/{model}/circuits/transfer.png",
            caption="../report/transfer.rst",
            category="Study A",
            subcategory="Circuits",
            labels={"model": "{model}", "figure": "transfer heatmaps"},
        ),
        overlap=report(
            "results/figures/{model}/circuits/overlap.png",
            caption="../report/overlap.rst",
            category="Study A",
            subcategory="Circuits",
            labels={"model": "{model}", "figure": "circuit overlap"},
        ),
    log:
        "logs/figures/{model}/circuits/transfer.log",
    conda:
        ENV
    params:
        margin=config["circuits"]["claims"]["margin"],
        transfer_threshold=config["circuits"]["claims"]["transfer_threshold"],
    script:
        "../scripts/figure_transfer.py"


rule figure_specificity:
    input:
        table="results/circuits/{model}/specificity.parquet",
        curves="results/circuits/{model}/specificity_curves.parquet",
    output:
        specificity=report(
            "results/figures/{model}/circuits/specificity.png",
            caption="../report/specificity.rst",
            category="Study A",
            subcategory="Controls",
            labels={"model": "{model}", "figure": "specificity against controls"},
        ),
    log:
        "logs/figures/{model}/circuits/specificity.log",
    conda:
        ENV
    params:
        main_subset=config["corpus"]["main_subset"],
        target=config["circuits"]["target"],
    script:
        "../scripts/figure_specificity.py"


localrules:
    figure_mib,


rule figure_mib:
    input:
        mib=lambda wc: expand(
            "results/circuits/{model}/{task}/{subset}/mib.parquet",
            model=wc.model,
            task=BASE_TASKS,
            subset=SUBSETS,
        ),
    output:
        figure=report(
            "results/figures/{model}/circuits/mib.png",
            caption="../report/mib.rst",
            category="Study A",
            subcategory="Circuits",
            labels={"model": "{model}", "figure": "MIB scores"},
        ),
    log:
        "logs/figures/{model}/circuits/mib.log",
    conda:
        ENV
    params:
        main=config["circuits"]["main"],
    script:
        "../scripts/figure_mib.py"


rule method_comparison:
    # attribution methods side by side on the main subset (vermem.circuits.method_comparison): CPR / CMD, the
    # minimal size, and their agreement; off with attribution.compare_methods: []
    input:
        model="results/models/{model}/model.json",
        pairs="results/pairs/{model}.parquet",
    output:
        quality="results/circuits/{model}/methods.parquet",
        agreement="results/circuits/{model}/methods_agreement.parquet",
    log:
        "logs/circuits/{model}/methods.log",
    priority: OFF_PATH
    retries: RETRIES
    conda:
        ENV
    threads: 1
    resources:
        **gpu_resources("circuit_transfer"),
    params:
        device=config["device"],
        tasks=BASE_TASKS,
        config=ComparisonSettings.params(config),
    script:
        "../scripts/method_comparison.py"


localrules:
    figure_methods,


rule figure_methods:
    input:
        quality="results/circuits/{model}/methods.parquet",
        agreement="results/circuits/{model}/methods_agreement.parquet",
    output:
        figure=report(
            "results/figures/{model}/circuits/methods.png",
            caption="../report/methods.rst",
            category="Study A",
            subcategory="Circuits",
            labels={"model": "{model}", "figure": "attribution methods"},
        ),
    log:
        "logs/figures/{model}/circuits/methods.log",
    conda:
        ENV
    params:
        main_subset=config["corpus"]["main_subset"],
    script:
        "../scripts/figure_methods.py"


# a localized injection's circuits against the components it trained (docs/injection.md);
# the attribution pairs are attributed again per document, for the recall's interval
rule circuit_location:
    input:
        model="results/models/{model}/model.json",
        pairs="results/pairs/{model}.parquet",
        scores=f"results/attribution/{{model}}/{{task}}/{{subset}}/{config['circuits']['rank_by']}.safetensors",
        minimal="results/circuits/{model}/{task}/{subset}/minimal.json",
    output:
        table="results/circuits/{model}/{task}/{subset}/location.parquet",
        # the share of the ranking's |score| on the edges that touch them (no circuit size)
        mass="results/circuits/{model}/{task}/{subset}/location_mass.parquet",
    log:
        "logs/circuits/{model}/{task}/{subset}.location.log",
    wildcard_constraints:
        model="|".join(LOCALIZED) or "^$",
    conda:
        ENV
    threads: 1
    resources:
        **gpu_resources("attribution"),
    params:
        device=config["device"],
        subset=lambda wc: SUBSETS[wc.subset],
        config=LocationSettings.params(config),
    script:
        "../scripts/circuit_location.py"
