# Training time as an axis of Study A (docs/study-a.md §12): every checkpoint a model lists
# (hub revisions, local subfolders, the organism's snapshots) goes through the labels,
# attribution and circuit rules themselves (`use rule`), on the final model's samples and
# pairs; the final model's circuits are evaluated at each checkpoint; one rule gathers them.

wildcard_constraints:
    ckpt="[A-Za-z0-9][A-Za-z0-9._-]*",


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
    params:
        spec=record_spec,
    log:
        "logs/models/{model}/checkpoints/{ckpt}.log",
    conda:
        ENV
    script:
        "../scripts/checkpoint_record.py"


rule checkpoint_samples:
    input:
        samples="results/samples/{model}.parquet",
    output:
        samples="results/checkpoints/{model}/samples.parquet",
    params:
        per_group=config["checkpoints"]["samples_per_group"] if CKPT_MODELS else None,
        seed=config["seed"],
    log:
        "logs/checkpoints/{model}/samples.log",
    conda:
        ENV
    script:
        "../scripts/checkpoint_samples.py"


use rule labels as checkpoint_labels with:
    input:
        model="results/models/{model}/checkpoints/{ckpt}/model.json",
        samples="results/checkpoints/{model}/samples.parquet",
    output:
        table="results/checkpoints/{model}/{ckpt}/labels.parquet",
        summary="results/checkpoints/{model}/{ckpt}/labels.summary.json",
    priority: OFF_PATH  # not the priority of the rule it reuses (nor below)
    log:
        "logs/checkpoints/{model}/{ckpt}/labels.log",


use rule attribution as checkpoint_attribution with:
    input:
        model="results/models/{model}/checkpoints/{ckpt}/model.json",
        pairs="results/pairs/{model}.parquet",
    output:
        scores="results/checkpoints/{model}/{ckpt}/attribution/{task}/{subset}/{metric}.safetensors",
        eap="results/checkpoints/{model}/{ckpt}/attribution/{task}/{subset}/{metric}.eap.json",
    priority: OFF_PATH
    group:
        "ckpt-attribution-{model}-{ckpt}"
    log:
        "logs/checkpoints/{model}/{ckpt}/attribution/{task}/{subset}/{metric}.log",


use rule circuit as checkpoint_circuit with:
    input:
        model="results/models/{model}/checkpoints/{ckpt}/model.json",
        pairs="results/pairs/{model}.parquet",
        scores=f"results/checkpoints/{{model}}/{{ckpt}}/attribution/{{task}}/{{subset}}/{config['circuits']['rank_by']}.safetensors",
    output:
        curve="results/checkpoints/{model}/{ckpt}/circuits/{task}/{subset}/curve.parquet",
        minimal="results/checkpoints/{model}/{ckpt}/circuits/{task}/{subset}/minimal.json",
        eap=expand("results/checkpoints/{{model}}/{{ckpt}}/circuits/{{task}}/{{subset}}/"
                   "minimal.{direction}.eap.json", direction=config["circuits"]["directions"]),
    params:
        config=main_mode_circuit_config(),
    priority: OFF_PATH
    group:
        "ckpt-circuits-{model}-{ckpt}"
    log:
        "logs/checkpoints/{model}/{ckpt}/circuits/{task}/{subset}.log",


rule checkpoint_final_circuits:
    input:
        model=point_record,
        pairs="results/pairs/{model}.parquet",
        minimal=lambda wc: expand("results/circuits/{model}/{task}/{subset}/minimal.json",
                                  model=wc.model, task=config["attribution"]["tasks"],
                                  subset=CKPT_SUBSETS),
    output:
        table="results/checkpoints/{model}/{ckpt}/final_circuits.parquet",
    params:
        device=config["device"],
        config=FinalCircuitSettings.params(config),
    threads: 1
    retries: RETRIES
    resources:
        **gpu_resources("circuit_transfer"),
    log:
        "logs/checkpoints/{model}/{ckpt}/final_circuits.log",
    conda:
        ENV
    script:
        "../scripts/checkpoint_final_circuits.py"


rule checkpoint_tables:
    input:
        samples="results/checkpoints/{model}/samples.parquet",
        records=lambda wc: point_files(wc, "results/models/{model}/model.json",
                                       "results/models/{model}/checkpoints/{ckpt}/model.json"),
        labels=lambda wc: point_files(wc, "results/labels/{model}.parquet",
                                      "results/checkpoints/{model}/{ckpt}/labels.parquet"),
        minimal=lambda wc: point_files(
            wc, "results/circuits/{model}/{task}/{subset}/minimal.json",
            "results/checkpoints/{model}/{ckpt}/circuits/{task}/{subset}/minimal.json"),
        scores=lambda wc: point_files(
            wc, "results/attribution/{model}/{task}/{subset}/{metric}.safetensors",
            "results/checkpoints/{model}/{ckpt}/attribution/{task}/{subset}/{metric}.safetensors",
            metric=config["circuits"]["rank_by"]),
        evaluated=lambda wc: point_files(
            wc, "results/checkpoints/{model}/{ckpt}/final_circuits.parquet",
            "results/checkpoints/{model}/{ckpt}/final_circuits.parquet"),
    output:
        memorization="results/checkpoints/{model}/memorization.parquet",
        circuits="results/checkpoints/{model}/circuits.parquet",
        summary="results/checkpoints/{model}/summary.json",
    params:
        target=config["circuits"]["target"],
        min_documents=config["checkpoints"]["min_documents"] if CKPT_MODELS else None,
        bootstrap=config["circuits"]["bootstrap"],
        names=lambda wc: [*CKPTS[wc.model], FINAL],
        final_step=lambda wc: _ck.final_step(config, wc.model),
        tasks=config["attribution"]["tasks"],
        subsets=list(CKPT_SUBSETS.values()),
        main=config["circuits"]["main"],
    log:
        "logs/checkpoints/{model}/tables.log",
    conda:
        ENV
    script:
        "../scripts/checkpoint_tables.py"


rule figure_checkpoints:
    input:
        memorization="results/checkpoints/{model}/memorization.parquet",
        circuits="results/checkpoints/{model}/circuits.parquet",
    output:
        memorization=report("results/figures/{model}/checkpoints/memorization.png",
                            caption="../report/checkpoint_memorization.rst",
                            category="Study A", subcategory="Checkpoints",
                            labels={"model": "{model}", "figure": "memorization across training"}),
        circuits=report("results/figures/{model}/checkpoints/circuits.png",
                        caption="../report/checkpoint_circuits.rst", category="Study A",
                        subcategory="Checkpoints",
                        labels={"model": "{model}", "figure": "circuits across training"}),
        overlap=report("results/figures/{model}/checkpoints/overlap.png",
                       caption="../report/checkpoint_overlap.rst", category="Study A",
                       subcategory="Checkpoints",
                       labels={"model": "{model}", "figure": "overlap with the final circuit"}),
    params:
        target=config["circuits"]["target"],
    log:
        "logs/figures/{model}/checkpoints.log",
    conda:
        ENV
    script:
        "../scripts/figure_checkpoints.py"
