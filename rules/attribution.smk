# Edge attribution (attribution.method: EAP-IG, EAP, EAP-IG-activations, clean-corrupted) per
# model, task, subset and metric (docs/study-a.md §7-8), on the attribution split of each pair
# set; per-layer tensors and a layer x node-type heatmap; the scores also in the EAP-IG
# library's graph JSON (vermem/attribution/eap_json.py).


rule attribution:
    input:
        model="results/models/{model}/model.json",
        pairs="results/pairs/{model}.parquet",
    output:
        scores="results/attribution/{model}/{task}/{subset}/{metric}.safetensors",
        eap="results/attribution/{model}/{task}/{subset}/{metric}.eap.json",
    log:
        "logs/attribution/{model}/{task}/{subset}/{metric}.log",
    # seconds each on the organism: run them all before the circuit jobs
    priority: 10
    retries: RETRIES
    group:
        "attribution-{model}"
    conda:
        ENV
    # many jobs per model: two 1-thread jobs at once did more than one 2-thread job on 2
    # cores (benchmarks/threads.py, benchmarks/threads.json); SLURM: the profile's set-threads
    threads: 1
    resources:
        **gpu_resources("attribution"),
    params:
        device=config["device"],
        subset=lambda wc: SUBSETS[wc.subset],
        # the whole section (AttributionSettings reads method, ig_steps, backend): the
        # scores' provenance hashes it
        config={"attribution": config["attribution"]},
    script:
        "../scripts/attribution.py"


localrules:
    figure_attribution_layers,


# One job per model draws every heatmap (a figure takes a fraction of a second, a job's
# start more than a second).
rule figure_attribution_layers:
    input:
        scores=lambda wc: [
            f"results/attribution/{wc.model}/{t}/{s}/{m}.safetensors" for t, s, m in LAYER_CELLS
        ],
    output:
        figures=[
            report(
                f"results/figures/{{model}}/attribution/{t}.{s}.{m}.png",
                caption="../report/attribution_layers.rst",
                category="Study A",
                subcategory="Attribution",
                labels={
                    "model": "{model}",
                    "figure": "attribution per layer",
                    "task": t,
                    "subset": s,
                    "metric": m,
                },
            )
            for t, s, m in LAYER_CELLS
        ],
    log:
        "logs/figures/{model}/attribution/layers.log",
    conda:
        ENV
    script:
        "../scripts/figure_attribution_layers.py"


localrules:
    figure_positions,


rule figure_positions:
    input:
        memorized=expand(
            "results/attribution/{{model}}/{task}/{{subset}}/{metric}.safetensors",
            task=BASE_TASKS,
            metric=config["circuits"]["rank_by"],
        ),
        # empty when contrastive.controls is off: the figure shows memorized pairs only
        control=expand(
            "results/attribution/{{model}}/{task}/{{subset}}/{metric}.safetensors",
            task=CONTROL_TASKS,
            metric=config["circuits"]["rank_by"],
        ),
    output:
        figure=report(
            "results/figures/{model}/attribution/positions.{subset}.png",
            caption="../report/attribution_positions.rst",
            category="Study A",
            subcategory="Attribution",
            labels={"model": "{model}", "figure": "attribution by position", "subset": "{subset}"},
        ),
    log:
        "logs/figures/{model}/attribution/positions.{subset}.log",
    conda:
        ENV
    params:
        subset=lambda wc: SUBSETS[wc.subset],
        metric=config["circuits"]["rank_by"],
    script:
        "../scripts/figure_positions.py"
