# What the run concludes, written by the run (vermem/report/summary.py): results/summary.md from the
# tables alone; README.md and docs/ link it instead of quoting numbers that could go stale.


localrules:
    summary,


rule summary:
    input:
        unpack(summary_inputs),
    output:
        summary="results/summary.md",
        # the same as HTML: the report's front page includes it (report/workflow.rst) and
        # lists it first, under Summary
        html=report(
            "results/summary.html",
            caption="../report/summary.rst",
            category="Summary",
            labels={"page": "what this run gives"},
        ),
    log:
        "logs/summary.log",
    conda:
        ENV
    params:
        models=MODELS if STUDY_A else [],
        main=config["circuits"]["main"],
    script:
        "../scripts/summary.py"
