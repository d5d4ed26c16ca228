# Models: a record for each hub or local model (fetched once, on the submit host where the
# hub is reachable), the model organism trained from the stand-in corpus, GGUF files
# converted into Hugging Face folders, and pretrained models injected with planted documents.


localrules:
    model_record,


rule model_record:
    output:
        record="results/models/{model}/model.json",
    log:
        "logs/models/{model}.log",
    wildcard_constraints:
        model="|".join(EXTERNAL) or "^$",
    conda:
        ENV
    params:
        spec=record_spec,
    script:
        "../scripts/model_record.py"


rule train_organism:
    input:
        shards=STANDIN_SHARDS,
    output:
        folder=directory("results/models/{model}/hf"),
        record="results/models/{model}/model.json",
        duplicates="results/models/{model}/duplicates.parquet",
        train_log="results/models/{model}/train_log.parquet",
    log:
        "logs/models/{model}.log",
    wildcard_constraints:
        model="|".join(ORGANISMS) or "^$",
    priority: 10  # the critical path: every Study A job waits for it, so it starts first
    retries: RETRIES
    conda:
        ENV
    threads: 2  # one job per model on the main path: 2 threads (benchmarks/threads.json)
    resources:
        **gpu_resources("train_organism"),
    params:
        organism=config["organism"],
        sample_tokens=config["memorization"]["prefix_tokens"]
        + config["memorization"]["continuation_tokens"],
    script:
        "../scripts/train_organism.py"


rule gguf_model:
    input:
        gguf=gguf_file,
    output:
        folder=directory("results/models/{model}/hf"),
        record="results/models/{model}/model.json",
    log:
        "logs/models/{model}.log",
    wildcard_constraints:
        model="|".join(GGUFS) or "^$",
    retries: RETRIES
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=gguf_mem_mb,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        spec=record_spec,
    script:
        "../scripts/gguf_model.py"


rule inject_model:
    input:
        base=injection_base,
        shards=STANDIN_SHARDS,
    output:
        folder=directory("results/models/{model}/hf"),
        record="results/models/{model}/model.json",
        duplicates="results/models/{model}/duplicates.parquet",
        train_log="results/models/{model}/train_log.parquet",
    log:
        "logs/models/{model}.log",
    wildcard_constraints:
        model="|".join(INJECTED) or "^$",
    retries: RETRIES
    conda:
        ENV
    threads: 2
    resources:
        **gpu_resources("inject_model"),
    params:
        spec=record_spec,
        device=config["device"],
        sample_tokens=config["memorization"]["prefix_tokens"]
        + config["memorization"]["continuation_tokens"],
    script:
        "../scripts/inject_model.py"
