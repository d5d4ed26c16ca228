"""End-to-end: the workflow on the tiny test config, checked by content."""

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from vermem import corpus, io

from .conftest import REPO, write_jsonl

TEST_CONFIG = REPO / ".test" / "config" / "config.yaml"
CFG = yaml.safe_load(TEST_CONFIG.read_text())
P = CFG["memorization"]["prefix_tokens"]
C = CFG["memorization"]["continuation_tokens"]


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
         "--cores", "2", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def run(workflow_run) -> Path:
    return workflow_run  # conftest.py: one local run, also compared with the SLURM run


def test_standin_shards_are_pile_format_with_three_labelled_domains(run):
    report = corpus.IngestReport()
    docs = list(corpus.iter_documents(sorted((run / "standin" / "pile").iterdir()), report))
    assert report.malformed == 0
    assert report.per_subset == {"StdLib Docstrings": 60, "StdLib Code": 60,
                                 "Python Reference": 40}
    assert all(d.meta["standin"] and d.meta["standin_for"] for d in docs)
    ingest = io.read_json(run / "corpus" / "ingest.json")
    assert ingest["documents"] == 160 and ingest["malformed_lines"] == 0


def test_samples_are_token_ids_of_the_right_lengths(run):
    s = pl.read_parquet(run / "samples" / "organism.parquet")
    assert s["prefix"].list.len().unique().to_list() == [P]
    assert s["continuation"].list.len().unique().to_list() == [C]
    assert s["dup_count"].is_not_null().all()
    assert set(s["subset"]) == set(CFG["corpus"]["subsets"])
    assert io.read_provenance(run / "samples" / "organism.parquet")["model"] == "organism"


def test_planted_duplicates_are_memorized_and_unseen_documents_are_not(run):
    lab = pl.read_parquet(run / "labels" / "organism.parquet")
    dups = pl.read_parquet(run / "models" / "organism" / "duplicates.parquet")
    planted64 = dups.filter(pl.col("dup_count") == 64)["doc_id"]
    assert planted64.len() == CFG["organism"]["duplicates"]["docs_per_count"]
    top = lab.filter(pl.col("dup_count") == 64)
    assert top.height == planted64.len()                  # every planted document is sampled
    assert top["extractable"].mean() >= 0.8
    assert (top["label"] == "memorized").mean() >= 0.8
    rare = lab.filter(pl.col("dup_count") <= 1)
    assert rare.height > 100
    assert rare["extractable"].mean() <= 0.02
    summary = io.read_json(run / "labels" / "organism.summary.json")
    assert [r["dup_count"] for r in summary["by_dup_count"]] == [0, 1, 64]


def test_model_record_describes_the_trained_organism(run):
    rec = json.loads((run / "models" / "organism" / "model.json").read_text())
    arch = CFG["organism"]["architecture"]
    assert rec["source"] == "organism" and rec["architecture"] == "GPTNeoXForCausalLM"
    assert (rec["n_layers"], rec["d_model"], rec["vocab_size"]) == (
        arch["layers"], arch["width"], CFG["organism"]["tokenizer"]["vocab_size"])
    assert rec["final_loss"] < 5.0


@pytest.fixture(scope="module")
def organism(run):
    from vermem import models

    record = io.read_json(run / "models" / "organism" / "model.json")
    record["path"] = str(run.parent / record["path"])
    return models.load(record, "cpu")[0]


def test_batched_labels_equal_one_at_a_time_decoding_on_the_organism(run, organism):
    from .test_labels import naive_greedy

    lab = pl.read_parquet(run / "labels" / "organism.parquet")
    some = pl.concat([lab.filter(pl.col("label") == "memorized").head(4), lab.tail(6)])
    for prefix, gen in some.select("prefix", "generation").iter_rows():
        assert gen == naive_greedy(organism, prefix, C)


def test_divergence_on_the_organism_equals_the_naive_definition(run, organism):
    from vermem import divergence

    div = pl.read_parquet(run / "divergence" / "organism.parquet")
    lab = pl.read_parquet(run / "labels" / "organism.parquet")
    assert div.height == (lab["label"] == "memorized").sum() > 0
    for full, d, gen in div.select("full", "d", "generation").iter_rows():
        naive = divergence.divergence_naive(organism, full, P)
        assert (d, gen) == (naive.d, naive.generation)


def test_pairs_are_well_formed_split_and_summarised(run):
    pairs = pl.read_parquet(run / "pairs" / "organism.parquet")
    lab = pl.read_parquet(run / "labels" / "organism.parquet")
    label_of = dict(zip(lab["doc_id"], lab["label"], strict=True))
    full_of = {r[0]: r[1] + r[2] for r in lab.select("doc_id", "prefix", "continuation").rows()}
    assert set(pairs["task"]) == {"branch_comparison", "memorization_decision"}
    for p in pairs.iter_rows(named=True):
        assert len(p["clean"]) == len(p["corrupt"]) and p["answer"] != p["wrong"]
        assert label_of[p["doc_id"]] == "memorized"
        full = full_of[p["doc_id"]]
        if p["task"] == "branch_comparison":
            assert p["clean"] == full[: p["d"] + 1] and p["corrupt"][:-1] == full[: p["d"]]
            assert p["corrupt"][-1] != full[p["d"]] and p["answer"] == full[p["d"] + 1]
        else:
            assert p["clean"] == full[: p["d"]] and p["wrong"] == full[p["d"]]
            assert label_of[p["corrupt_doc_id"]] == "non-memorized"
            assert full_of[p["corrupt_doc_id"]][p["d"]] == p["wrong"]
    summary = io.read_json(run / "pairs" / "organism.summary.json")
    for task in ("branch_comparison", "memorization_decision"):
        assert sum(v["pairs"] for v in summary[task].values()) == (pairs["task"] == task).sum()
    bc = pairs.filter(pl.col("task") == "branch_comparison")
    assert set(bc["split"]) == {"attribution", "evaluation"}


def test_attribution_files_per_task_subset_and_metric(run):
    from vermem import attribution

    pairs = pl.read_parquet(run / "pairs" / "organism.parquet")
    for task in CFG["attribution"]["tasks"]:
        for subset in CFG["corpus"]["subsets"]:
            slug = subset.lower().replace(" ", "-")
            n = pairs.filter((pl.col("task") == task) & (pl.col("subset") == subset)
                             & (pl.col("split") == "attribution")).height
            for metric in CFG["attribution"]["metrics"]:
                t, meta = attribution.load(run / "attribution" / "organism" / task / slug
                                           / f"{metric}.safetensors")
                assert (meta["task"], meta["subset"], meta["metric"]) == (task, subset, metric)
                assert meta["n_examples"] == n and meta["method"] == "EAP-IG"
                assert t["scores"].shape == t["mask"].shape
                assert (t["scores"][t["mask"] == 0] == 0).all()
                assert (t["scores"].abs().sum() > 0) == (n > 0)
                assert t["per_layer"].shape[0] == CFG["organism"]["architecture"]["layers"]


def test_eap_ig_agrees_with_exact_patching_on_the_organism(run, organism):
    from vermem import attribution as A
    from vermem.graph import Graph, Shape

    pairs = pl.read_parquet(run / "pairs" / "organism.parquet").filter(
        pl.col("task") == "branch_comparison")
    g = Graph(Shape.from_config(organism.config))
    b = A.Batch.make(pairs["clean"].to_list(), pairs["corrupt"].to_list(),
                     pairs["answer"].to_list(), pairs["wrong"].to_list(), "cpu")
    exact = A.exact_edge_effects(organism, g, b)
    ig = A.attribute(organism, g, b, "EAP-IG", 5)
    rho = A.spearman(ig[g.mask], exact[g.mask])
    print(f"organism: Spearman(EAP-IG, exact patching) over {g.n_edges} edges = {rho:.3f}")
    assert rho > 0.7


def test_figures_are_written(run):
    names = {"memorization_scores", "divergence_positions", "pair_counts",
             "memorization_by_duplicates",
             "attribution/branch_comparison.stdlib-docstrings.logit_diff"}
    for name in names:
        blob = (run / "figures" / "organism" / f"{name}.png").read_bytes()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 10_000


def test_finished_workflow_reruns_nothing(run):
    out = snakemake(run.parent, "--configfile", str(TEST_CONFIG), "-n")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_paper_config_builds_the_pythia_dag(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "pythia.yaml").read_text())
    write_jsonl(tmp_path / "00.jsonl.zst", [])
    cfg["corpus"]["shards"] = [str(tmp_path / "00.jsonl.zst")]
    (tmp_path / "pythia.yaml").write_text(yaml.safe_dump(cfg))
    out = snakemake(tmp_path, "--configfile", str(tmp_path / "pythia.yaml"), "-n")
    text = out.stdout
    for rule, n in {"model_record": 5, "samples": 5, "labels": 5, "divergence": 5, "pairs": 5,
                    "figures_memorization": 5, "corpus_candidates": 1,
                    "attribution": 5 * 2 * 4 * 3}.items():
        assert any(line.split() == [rule, str(n)] for line in text.splitlines()), rule
    for rule in ("standin_corpus", "train_organism", "figure_duplicates"):
        assert rule not in text


def test_slurm_profile_sends_gpu_rules_to_the_gpu_partition(tmp_path):
    """`--profile slurm` from the repository root: GPU rules ask for a GPU, CPU rules none."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "slurm", "-n", "-d", str(tmp_path),
         "--configfile", str(TEST_CONFIG)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resources, rule = {}, None
    for line in proc.stdout.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
        elif line.strip().startswith("resources:") and rule:
            resources[rule] = dict(kv.split("=", 1) for kv in line.split(":", 1)[1].split(", "))
    gpu_rules = {"train_organism", "labels", "divergence", "pairs", "attribution"}
    assert set(resources) >= gpu_rules | {"standin_corpus", "corpus_candidates", "samples"}
    for rule, res in resources.items():
        if rule in gpu_rules:
            assert res.get("gpu") == "1" and res["slurm_partition"] == "gpu", rule
        else:
            assert "gpu" not in res and res["slurm_partition"] != "gpu", rule
