# Figures of the labelling and contrastive stages (seaborn), per model.


localrules:
    figures_memorization,
    figure_duplicates,


rule figures_memorization:
    input:
        labels="results/labels/{model}.parquet",
        divergence="results/divergence/{model}.parquet",
        pairs="results/pairs/{model}.parquet",
    output:
        scores=report(
            "results/figures/{model}/memorization_scores.png",
            caption="../report/memorization_scores.rst",
            category="Study A",
            subcategory="Memorization labels",
            labels={"model": "{model}", "figure": "memorization scores"},
        ),
        divergence=report(
            "results/figures/{model}/divergence_positions.png",
            caption="../report/divergence_positions.rst",
            category="Study A",
            subcategory="Memorization labels",
            labels={"model": "{model}", "figure": "divergence points"},
        ),
        pairs=report(
            "results/figures/{model}/pair_counts.png",
            caption="../report/pair_counts.rst",
            category="Study A",
            subcategory="Contrastive pairs",
            labels={"model": "{model}", "figure": "contrastive pairs"},
        ),
    log:
        "logs/figures/{model}.memorization.log",
    conda:
        ENV
    params:
        score=config["memorization"]["score"],
        prefix_tokens=config["memorization"]["prefix_tokens"],
        subsets=config["corpus"]["subsets"],
        tasks=TASKS,
    script:
        "../scripts/figures_memorization.py"


rule figure_duplicates:
    input:
        labels="results/labels/{model}.parquet",
    output:
        figure=report(
            "results/figures/{model}/memorization_by_duplicates.png",
            caption="../report/memorization_by_duplicates.rst",
            category="Study A",
            subcategory="Memorization labels",
            labels={"model": "{model}", "figure": "memorization by duplication"},
        ),
    log:
        "logs/figures/{model}.duplicates.log",
    wildcard_constraints:
        model="|".join(PLANTED) or "^$",
    conda:
        ENV
    script:
        "../scripts/figure_duplicates.py"
