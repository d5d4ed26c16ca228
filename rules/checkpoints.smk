# Training time as an axis of Study A (docs/study-a.md §12): every checkpoint a model lists
# (hub revisions, local subfolders, the organism's snapshots) goes through the labels,
# attribution and circuit rules themselves (`use rule`), on the final model's samples and
# pairs; the final model's circuits are evaluated at each checkpoint; one rule gathers them.


localrules:
    checkpoint_record,
    checkpoint_samples,
    checkpoint_tables,
    figure_checkpoints,


rule checkpoint_record:
    input:
        final="results/models/{model}/model.json",
    output:
        record="results/models/{model}/checkpoints/{ckpt}/model.json",
    log:
        "logs/models/{model}/checkpoints/{ckpt}.log",
    conda:
        ENV
    params:
        spec=record_spec,
    script:
        "../scripts/checkpoint_record.py"


rule checkpoint_samples:
    input:
        samples="results/samples/{model}.parquet",
    output:
        samples="results/checkpoints/{model}/samples.parquet",
    log:
        "logs/checkpoints/{model}/samples.log",
    conda:
        ENV
    params:
        per_group=config["checkpoints"]["samples_per_group"] if CKPT_MODELS else None,
        seed=config["seed"],
    script:
        "../scripts/checkpoint_samples.py"


use rule labels as checkpoint_labels with:
    input:
        model="results/models/{model}/checkpoints/{ckpt}/model.json",
        samples="results/checkpoints/{model}/samples.parquet",
    output:
        table="results/checkpoints/{model}/{ckpt}/labels.parquet",
        summary="results/checkpoints/{model}/{ckpt}/labels.summary.json",
    log:
        "logs/checkpoints/{model}/{ckpt}/labels.log",
    priority: OFF_PATH  # not the priority of the rule it reuses (nor below)


use rule attribution as checkpoint_attribution with:
    input:
        model="results/models/{model}/checkpoints/{ckpt}/model.json",
        pairs="results/pairs/{model}.parquet",
    output:
        scores="results/checkpoints/{model}/{ckpt}/attribution/{task}/{subset}/{metric}.safetensors",
        eap="results/checkpoints/{model}/{ckpt}/attribution/{task}/{subset}/{metric}.eap.json",
    log:
        "logs/checkpoints/{model}/{ckpt}/attribution/{task}/{subset}/{metric}.log",
    priority: OFF_PATH
    group:
        "ckpt-attribution-{model}-{ckpt}"


use rule circuit as checkpoint_circuit with:
    input:
        model="results/models/{model}/checkpoints/{ckpt}/model.json",
        pairs="results/pairs/{model}.parquet",
        scores=f"results/checkpoints/{{model}}/{{ckpt}}/attribution/{{task}}/{{subset}}/{config['circuits']['rank_by']}.safetensors",
    output:
        curve="results/checkpoints/{model}/{ckpt}/circuits/{task}/{subset}/curve.parquet",
        minimal="results/checkpoints/{model}/{ckpt}/circuits/{task}/{subset}/minimal.json",
        eap=expand(
            "results/checkpoints/{{model}}/{{ckpt}}/circuits/{{task}}/{{subset}}/"
            "minimal.{direction}.eap.json",
            direction=config["circuits"]["directions"],
        ),
    log:
        "logs/checkpoints/{model}/{ckpt}/circuits/{task}/{subset}.log",
    priority: OFF_PATH
    group:
        "ckpt-circuits-{model}-{ckpt}"
    params:
        config=main_mode_circuit_config(),


rule checkpoint_final_circuits:
    input:
        model=point_record,
        pairs="results/pairs/{model}.parquet",
        minimal=lambda wc: expand(
            "results/circuits/{model}/{task}/{subset}/minimal.json",
            model=wc.model,
            task=config["attribution"]["tasks"],
            subset=CKPT_SUBSETS,
        ),
    output:
        table="results/checkpoints/{model}/{ckpt}/final_circuits.parquet",
    log:
        "logs/checkpoints/{model}/{ckpt}/final_circuits.log",
    retries: RETRIES
    conda:
        ENV
    threads: 1
    resources:
        **gpu_resources("circuit_transfer"),
    params:
        device=config["device"],
        config=FinalCircuitSettings.params(config),
    script:
        "../scripts/checkpoint_final_circuits.py"


rule checkpoint_tables:
    input:
        samples="results/checkpoints/{model}/samples.parquet",
        records=lambda wc: point_files(
            wc,
            "results/models/{model}/model.json",
            "results/models/{model}/checkpoints/{ckpt}/model.json",
        ),
        labels=lambda wc: point_files(
            wc,
            "results/labels/{model}.parquet",
            "results/checkpoints/{model}/{ckpt}/labels.parquet",
        ),
        minimal=lambda wc: point_files(
            wc,
            "results/circuits/{model}/{task}/{subset}/minimal.json",
            "results/checkpoints/{model}/{ckpt}/circuits/{task}/{subset}/minimal.json",
        ),
        scores=lambda wc: point_files(
            wc,
            "results/attribution/{model}/{task}/{subset}/{metric}.safetensors",
            "results/checkpoints/{model}/{ckpt}/attribution/{task}/{subset}/{metric}.safetensors",
            metric=config["circuits"]["rank_by"],
        ),
        evaluated=lambda wc: point_files(
            wc,
            "results/checkpoints/{model}/{ckpt}/final_circuits.parquet",
            "results/checkpoints/{model}/{ckpt}/final_circuits.parquet",
        ),
    output:
        memorization="results/checkpoints/{model}/memorization.parquet",
        circuits="results/checkpoints/{model}/circuits.parquet",
        summary="results/checkpoints/{model}/summary.json",
    log:
        "logs/checkpoints/{model}/tables.log",
    conda:
        ENV
    params:
        target=config["circuits"]["target"],
        min_documents=config["checkpoints"]["min_documents"] if CKPT_MODELS else None,
        bootstrap=config["circuits"]["bootstrap"],
        names=lambda wc: [*CKPTS[wc.model], FINAL],
        final_step=lambda wc: _ck.final_step(config, wc.model),
        tasks=config["attribution"]["tasks"],
        subsets=list(CKPT_SUBSETS.values()),
        main=config["circuits"]["main"],
    script:
        "../scripts/checkpoint_tables.py"


rule figure_checkpoints:
    input:
        memorization="results/checkpoints/{model}/memorization.parquet",
        circuits="results/checkpoints/{model}/circuits.parquet",
    output:
        memorization=report(
            "results/figures/{model}/checkpoints/memorization.png",
            caption="../report/checkpoint_memorization.rst",
            category="Study A",
            subcategory="Checkpoints",
            labels={"model": "{model}", "figure": "memorization across training"},
        ),
        circuits=report(
            "results/figures/{model}/checkpoints/circuits.png",
            caption="../report/checkpoint_circuits.rst",
            category="Study A",
            subcategory="Checkpoints",
            labels={"model": "{model}", "figure": "circuits across training"},
        ),
        overlap=report(
            "results/figures/{model}/checkpoints/overlap.png",
            caption="../report/checkpoint_overlap.rst",
            category="Study A",
            subcategory="Checkpoints",
            labels={"model": "{model}", "figure": "overlap with the final circuit"},
        ),
    log:
        "logs/figures/{model}/checkpoints.log",
    conda:
        ENV
    params:
        target=config["circuits"]["target"],
    script:
        "../scripts/figure_checkpoints.py"
