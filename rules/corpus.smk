# Corpus: the offline stand-in shards (embedded default), one scan of the shards into a
# seeded candidate pool per subset, and per-model token-id samples (docs/study-a.md §1).


# off (no `standin`): no shard is the stand-in's, and no target asks for its summary
rule standin_corpus:
    output:
        shards=STANDIN_SHARDS,
        summary="results/standin/summary.json",
    log:
        "logs/standin_corpus.log",
    conda:
        ENV
    params:
        standin=config["standin"],
        seed=config["seed"],
    script:
        "../scripts/standin_corpus.py"


rule corpus_candidates:
    input:
        shards=[s for s in SHARDS if s not in UNREAD_SHARDS],
    output:
        table="results/corpus/candidates.parquet",
        report="results/corpus/ingest.json",
    log:
        "logs/corpus_candidates.log",
    conda:
        ENV
    params:
        subsets=config["corpus"]["subsets"],
        candidates_per_subset=candidates_per_subset(),
        seed=config["seed"],
        max_malformed_fraction=config["corpus"]["max_malformed_fraction"],
        config={k: config["corpus"][k] for k in ("subsets", "candidate_factor")},
    script:
        "../scripts/corpus_candidates.py"


rule samples:
    input:
        unpack(model_inputs),
        candidates="results/corpus/candidates.parquet",
    output:
        table="results/samples/{model}.parquet",
        summary="results/samples/{model}.summary.json",
    log:
        "logs/samples/{model}.log",
    priority: MAIN_PATH  # it starts as soon as the model exists
    conda:
        ENV
    params:
        config=SampleSettings.params(config),
    script:
        "../scripts/samples.py"
