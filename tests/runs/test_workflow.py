"""End-to-end: the workflow on the tiny test config, checked by content.

One full run of the test config, `workflow_run` (conftest.py, once per session, also the
SLURM test's reference), which every test that only reads outputs shares (dry runs on it
included), and a second run of one chain through its random stages (`second_run`) for the
byte-for-byte comparison of two runs. A test that
deletes, reruns or kills jobs works on `workflow_copy`, a private copy of the finished run,
never on the shared one.

What only the real SLURM test (tests/runs/test_slurm.py, skipped where SLURM cannot run) shows:
that sbatch places each job in the partition its resources name, with the GPU request
(and a GPU allocated) exactly for the GPU rules; that group jobs become one SLURM job each;
and that jobs run by the executor, each parsing the workflow in a Snakemake process of its
own, compute what the local run computed. The tests here read the profile's plan from dry
runs only (`test_slurm_profile_sends_gpu_rules_to_the_gpu_partition`).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from vermem.core import files
from vermem.data import corpus

from ..conftest import REPO, write_jsonl

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
    ingest = files.read_json(run / "corpus" / "ingest.json")
    assert ingest["documents"] == 160 and ingest["malformed_lines"] == 0


def test_samples_are_token_ids_of_the_right_lengths(run):
    s = pl.read_parquet(run / "samples" / "organism.parquet")
    assert s["prefix"].list.len().unique().to_list() == [P]
    assert s["continuation"].list.len().unique().to_list() == [C]
    assert s["dup_count"].is_not_null().all()
    assert set(s["subset"]) == set(CFG["corpus"]["subsets"])
    assert files.read_provenance(run / "samples" / "organism.parquet")["model"] == "organism"


def test_planted_duplicates_are_memorized_and_unseen_documents_are_not(run):
    lab = pl.read_parquet(run / "labels" / "organism.parquet")
    dups = pl.read_parquet(run / "models" / "organism" / "duplicates.parquet")
    planted64 = dups.filter(pl.col("dup_count") == 64)["doc_id"]
    assert planted64.len() == CFG["organism"]["duplicates"]["docs_per_count"]
    top = lab.filter(pl.col("dup_count") == 64)
    assert set(top["doc_id"]) == set(planted64)           # every planted document is sampled
    assert top["extractable"].mean() >= 0.8
    assert (top["label"] == "memorized").mean() >= 0.8
    rare = lab.filter(pl.col("dup_count") <= 1)
    assert rare.height > 100
    assert rare["extractable"].mean() <= 0.02
    summary = files.read_json(run / "labels" / "organism.summary.json")
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
    from vermem.models import loading

    record = files.read_json(run / "models" / "organism" / "model.json")
    record["path"] = str(run.parent / record["path"])
    return loading.load(record, "cpu")[0]


def test_batched_labels_equal_one_at_a_time_decoding_on_the_organism(run, organism):
    from ..data.test_labels import naive_greedy

    lab = pl.read_parquet(run / "labels" / "organism.parquet")
    some = pl.concat([lab.filter(pl.col("label") == "memorized").head(4), lab.tail(6)])
    for prefix, gen in some.select("prefix", "generation").iter_rows():
        assert gen == naive_greedy(organism, prefix, C)


def test_divergence_on_the_organism_equals_the_naive_definition(run, organism):
    from vermem.data import divergence

    div = pl.read_parquet(run / "divergence" / "organism.parquet")
    lab = pl.read_parquet(run / "labels" / "organism.parquet")
    assert div.height == (lab["label"] == "memorized").sum() > 0
    for full, d, gen in div.select("full", "d", "generation").iter_rows():
        naive = divergence.divergence_naive(organism, full, P)
        assert (d, gen) == (naive.d, naive.generation)


def test_pairs_are_well_formed_split_and_summarised(run):
    pairs = pl.read_parquet(run / "pairs" / "organism.parquet")
    lab = pl.read_parquet(run / "labels" / "organism.parquet")
    key = ("doc_id", "offset")   # a sample is a window of a document
    label_of = {(d, o): lab for d, o, lab in lab.select(*key, "label").rows()}
    full_of = {(d, o): p + c for d, o, p, c in lab.select(*key, "prefix", "continuation").rows()}
    # the tiny organism has few Memorization Decision pairs, and their controls may be none
    assert {"branch_comparison", "memorization_decision", "branch_comparison_control"} <= set(
        pairs["task"]) <= {"branch_comparison", "memorization_decision",
                           "branch_comparison_control", "memorization_decision_control",
                           "distant_context", "distant_context_control"}
    dup_of = {(d, o): n for d, o, n in lab.select(*key, "dup_count").rows()}
    for p in pairs.iter_rows(named=True):
        assert len(p["clean"]) == len(p["corrupt"]) and p["answer"] != p["wrong"]
        control = p["task"].endswith("_control")
        # controls: non-memorized text of documents seen at most once
        assert label_of[p["doc_id"], p["offset"]] == ("non-memorized" if control
                                                      else "memorized")
        if control:
            assert dup_of[p["doc_id"], p["offset"]] <= 1
        full = full_of[p["doc_id"], p["offset"]]
        if p["task"].startswith("branch_comparison"):
            assert p["clean"] == full[: p["d"] + 1] and p["corrupt"][:-1] == full[: p["d"]]
            assert p["corrupt"][-1] != full[p["d"]] and p["answer"] == full[p["d"] + 1]
        elif p["task"].startswith("distant_context"):  # the prompt, its distant prefix replaced
            r = 1  # contrastive.distant_r of .test/config
            src = full_of[p["corrupt_doc_id"], p["corrupt_offset"]]
            assert p["clean"] == full[: p["d"] + 1] and p["corrupt"][-r:] == p["clean"][-r:]
            assert p["corrupt"][:-r] == src[: p["d"] + 1 - r]
            assert label_of[p["corrupt_doc_id"], p["corrupt_offset"]] == "non-memorized"
            assert p["corrupt_doc_id"] != p["doc_id"]
            if not control:
                assert p["answer"] == full[p["d"] + 1]
        else:
            assert p["clean"] == full[: p["d"]] and p["wrong"] == full[p["d"]]
            corrupt = p["corrupt_doc_id"], p["corrupt_offset"]
            assert label_of[corrupt] == "non-memorized" and full_of[corrupt][p["d"]] == p["wrong"]
            assert p["corrupt_doc_id"] != p["doc_id"]
    assert lab.select(*key).n_unique() == lab.height > lab["doc_id"].n_unique()
    summary = files.read_json(run / "pairs" / "organism.summary.json")
    for task in ("branch_comparison", "memorization_decision"):
        # each control pair matches a memorized pair of its subset and part at the same d
        mem = pairs.filter(pl.col("task") == task).group_by("subset", "split", "d").len()
        ctl = pairs.filter(pl.col("task") == f"{task}_control").group_by(
            "subset", "split", "d").len()
        both = ctl.join(mem, on=["subset", "split", "d"], how="left", suffix="_mem")
        assert (both["len"] <= both["len_mem"].fill_null(0)).all(), both
    for task in summary.keys() - {"split", "divergence"}:
        assert sum(v["pairs"] for v in summary[task].values()) == (pairs["task"] == task).sum()
        g = pairs.filter(pl.col("task") == task)
        for part in ("attribution", "selection", "evaluation"):
            assert sum(v[part] for v in summary[task].values()) == (g["split"] == part).sum()
    # every part has Branch Comparison pairs (the tiny organism has few Memorization
    # Decision pairs: 1 on the test config)
    bc = pairs.filter(pl.col("task") == "branch_comparison")
    assert set(bc["split"]) == {"attribution", "selection", "evaluation"}
    # one part per document, across both tasks and both sides of a pair
    sides = pl.concat([pairs.select("doc_id", "split"),
                       pairs.select(pl.col("corrupt_doc_id").alias("doc_id"), "split")])
    assert sides.group_by("doc_id").agg(pl.col("split").n_unique())["split"].max() == 1


def test_attribution_files_per_task_subset_and_metric(run):
    from vermem.attribution import storage

    pairs = pl.read_parquet(run / "pairs" / "organism.parquet")
    tasks = CFG["attribution"]["tasks"]
    # controls: attributed with the ranking metric only (they rank control circuits)
    for task, metrics in [*((t, CFG["attribution"]["metrics"]) for t in tasks),
                          *((f"{t}_control", [CFG["circuits"]["rank_by"]]) for t in tasks)]:
        for subset in CFG["corpus"]["subsets"]:
            slug = subset.lower().replace(" ", "-")
            n = pairs.filter((pl.col("task") == task) & (pl.col("subset") == subset)
                             & (pl.col("split") == "attribution")).height
            for metric in metrics:
                t, meta = storage.load(run / "attribution" / "organism" / task / slug
                                           / f"{metric}.safetensors")
                assert (meta["task"], meta["subset"], meta["metric"]) == (task, subset, metric)
                assert meta["n_examples"] == n and meta["method"] == "EAP-IG"
                assert t["scores"].shape == t["mask"].shape
                assert (t["scores"][t["mask"] == 0] == 0).all()
                assert (t["scores"].abs().sum() > 0) == (n > 0)
                assert t["per_layer"].shape[0] == CFG["organism"]["architecture"]["layers"]
                # the de-noising direction and the position buckets, which sum to the scores
                assert t["scores_denoising"].shape == t["scores"].shape
                assert t["positions"].shape[0] == len(meta["position_buckets"])
                if n:
                    assert (t["positions"].sum(0) - t["scores"]).abs().max() < 1e-5


def test_eap_ig_agrees_with_exact_patching_on_the_organism(run, organism):
    from vermem.attribution import pair_batch, patching, scoring
    from vermem.attribution.graph import Graph, Shape
    from vermem.core.stats import rank_correlation

    pairs = pl.read_parquet(run / "pairs" / "organism.parquet").filter(
        pl.col("task") == "branch_comparison")
    g = Graph(Shape.from_config(organism.config))
    b = pair_batch.Batch.make(pairs["clean"].to_list(), pairs["corrupt"].to_list(),
                     pairs["answer"].to_list(), pairs["wrong"].to_list(), "cpu")
    exact = patching.exact_edge_effects(organism, g, b)
    ig = scoring.attribute(organism, g, b, "EAP-IG", 5)
    rho = float(rank_correlation(ig[g.mask], exact[g.mask]))  # ties: argsort
    print(f"organism: Spearman(EAP-IG, exact patching) over {g.n_edges} edges = {rho:.3f}")
    assert rho > 0.7


def test_circuits_are_chosen_on_selection_pairs_and_beat_random_ones(run):
    pairs = pl.read_parquet(run / "pairs" / "organism.parquet")
    circ = CFG["circuits"]
    n_modes = len(circ["directions"]) * len(circ["placements"]) * len(circ["ablations"])
    lo_band, hi_band = circ["target"], 2 - circ["target"]
    gaps, n_usable = [], 0
    for task in CFG["attribution"]["tasks"]:
        for subset in CFG["corpus"]["subsets"]:
            folder = run / "circuits" / "organism" / task / subset.lower().replace(" ", "-")
            rec = files.read_json(folder / "minimal.json")
            part = pairs.filter((pl.col("task") == task) & (pl.col("subset") == subset))
            held_out = part.filter(pl.col("split") == "evaluation").height
            selection = part.filter(pl.col("split") == "selection").height
            assert (rec["n_pairs"], rec["n_selection"]) == (held_out, selection)
            assert not set(rec["selection_docs"]) & set(rec["evaluation_docs"])
            attributed = part.filter(pl.col("split") == "attribution").height
            assert (rec["attribution_pairs"] > 0) == (attributed > 0)
            usable = held_out and selection and attributed
            n_usable += bool(usable)
            assert len(rec["circuits"]) + len(rec["not_found"]) == (n_modes if usable else 0)
            # each direction ranked by its own attribution; their main-mode overlap recorded
            assert rec["ranked_by"] == {"noising": "scores", "denoising": "scores_denoising"}
            ov = rec["direction_overlap"]
            assert (ov["placement"], ov["ablation"]) == (circ["main"]["placement"],
                                                         circ["main"]["ablation"])
            assert ov["jaccard"] is None or 0 <= ov["jaccard"] <= 1
            for c in rec["circuits"]:  # chosen in the band on selection pairs, never above
                assert lo_band <= c["selection_faithfulness"] <= hi_band + 1e-9
                assert len(c["edges"]) == c["k"] and c["n_pairs"] == held_out
                if c["faithfulness_lo"] is not None:
                    assert c["faithfulness_lo"] <= c["faithfulness_hi"]
            curve = pl.read_parquet(folder / "curve.parquet")
            if not usable:
                assert curve.height == 0
                continue
            assert set(curve["split"]) == {"selection", "evaluation"}
            main = curve.filter((pl.col("placement") == circ["main"]["placement"])
                                & (pl.col("ablation") == circ["main"]["ablation"])
                                & (pl.col("split") == "evaluation")
                                & pl.col("k").is_between(1, rec["n_edges"] - 1)
                                & ~pl.col("search"))
            f = main.group_by("circuit", "direction", "k").agg(pl.col("faithfulness").mean())
            top = f.filter(pl.col("circuit") == "attribution").drop("circuit")
            rnd = f.filter(pl.col("circuit") == "random").drop("circuit")
            both = top.join(rnd, on=["direction", "k"], suffix="_random")
            assert both.height == rnd.height > 0  # random sizes are curve sizes
            gaps.append((both["faithfulness"] - both["faithfulness_random"]).mean())
    # every set with pairs in all three parts has its curve (none is skipped silently; the
    # tiny test run may have none), and there attribution-ranked circuits beat random
    # circuits of the same sizes, on average
    assert len(gaps) == n_usable
    if gaps:
        assert sum(gaps) / len(gaps) > 0.2, gaps


def test_transfer_overlap_and_claims_tables(run):
    folder = run / "circuits" / "organism"
    transfer = pl.read_parquet(folder / "transfer.parquet")
    assert files.read_provenance(folder / "transfer.parquet")["model"] == "organism"
    # a row for every minimal circuit (main ablation, any placement) on every evaluation set
    # with pairs: none when the run found no circuit, as the tiny test run may
    records = [files.read_json(p) for p in sorted(folder.glob("*/*/minimal.json"))
               if p.parent.parent.name in CFG["attribution"]["tasks"]]
    found = [(r["task"], r["subset"], c["direction"], c["placement"]) for r in records
             for c in r["circuits"] if c["ablation"] == CFG["circuits"]["main"]["ablation"]]
    targets = [(r["task"], r["subset"]) for r in records if r["n_pairs"]]
    assert transfer.height == len(found) * len(targets)
    assert set(zip(transfer["source_task"], transfer["source_subset"],
                   transfer["source_direction"], transfer["placement"], strict=True)) == set(found)
    if found:
        assert set(transfer["relation"]) >= {"in-domain"}
    # like with like: the meaning of each direction as the paper defines it
    meaning = {("branch_comparison", "noising"): "prevention",
               ("branch_comparison", "denoising"): "induction",
               ("memorization_decision", "noising"): "induction",
               ("memorization_decision", "denoising"): "prevention"}
    for r in transfer.iter_rows(named=True):
        assert meaning[r["source_task"], r["source_direction"]] == r["semantics"]
        assert meaning[r["target_task"], r["target_direction"]] == r["semantics"]
    ok = transfer.drop_nulls(["faithfulness_lo", "faithfulness_hi"])
    assert (ok["faithfulness_lo"] <= ok["faithfulness_hi"]).all()
    pl.read_parquet(folder / "overlap.parquet")
    claims = pl.read_csv(folder / "claims.csv")
    # 6 of the paper's, 6 specificity rows (3 tasks x 2 meanings: distant_context too)
    assert claims.height == 12
    assert (claims["claim"].str.contains("circuit is specific to memorization")).sum() == 4
    assert set(claims.columns) >= {"claim", "test", "n_pairs", "estimate", "estimate_lo",
                                   "estimate_hi", "random_faithfulness", "verdict", "reason"}
    assert set(claims["verdict"]) <= {"supported", "refuted", "insufficient evidence"}
    min_pairs = CFG["circuits"]["claims"]["min_pairs"]
    for r in claims.iter_rows(named=True):
        assert r["reason"]
        if r["n_pairs"] < min_pairs or r["estimate"] is None:
            assert r["verdict"] == "insufficient evidence", r


def test_figures_are_written(run):
    names = {"memorization_scores", "divergence_positions", "pair_counts",
             "memorization_by_duplicates",
             "attribution/branch_comparison.stdlib-docstrings.logit_diff",
             "circuits/faithfulness.branch_comparison.stdlib-docstrings",
             "circuits/circuit.branch_comparison.stdlib-docstrings",
             "attribution/positions.stdlib-docstrings",
             "circuits/transfer", "circuits/overlap", "circuits/transfer_matched",
             "circuits/specificity", "circuits/mib", "circuits/methods",
             "checkpoints/memorization",
             "checkpoints/circuits", "checkpoints/overlap"}
    for name in names:
        blob = (run / "figures" / "organism" / f"{name}.png").read_bytes()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 10_000


DYN = CFG["dynamics"]


def test_dynamics_strings_are_one_token_per_letter_of_the_organism(run):
    from vermem.models import loading

    record = files.read_json(run / "models" / "organism" / "model.json")
    tok = loading.load_tokenizer({"path": str(run.parent / record["path"])})
    strings = pl.read_parquet(run / "dynamics" / "organism" / "strings.parquet")
    g = DYN["grid"]
    assert (strings["study"] == "q1").sum() == (len(g["alphabet_sizes"]) * len(g["lengths"])
                                                * len(g["entropy_fractions"]) * len(g["seeds"]))
    assert (strings["study"] == "q3").sum() == DYN["sequential"]["strings"]
    for text, ids, letters, l in strings.select("text", "token_ids", "letter_ids",
                                                "alphabet_size").iter_rows():
        assert tok.decode(ids) == text and len(ids) == len(text)
        assert [tok.encode(c, add_special_tokens=False) for c in "abcdefghijklm"[:l]] == [
            [i] for i in letters]
    summary = files.read_json(run / "dynamics" / "organism" / "strings.json")
    assert summary["n_params"] == record["n_params"]


def test_dynamics_curves_phases_and_q2_agree_with_the_per_position_tables(run):
    strings = pl.read_parquet(run / "dynamics" / "organism" / "strings.parquet")
    phases = pl.read_parquet(run / "dynamics" / "phases.parquet")
    q2 = pl.read_parquet(run / "dynamics" / "q2.parquet")
    E = DYN["training"]["epochs"]
    assert phases.height == len(DYN["inits"]) * (strings["study"] == "q1").sum()
    for ph in phases.iter_rows(named=True):
        s = strings.filter((pl.col("string_id") == ph["string_id"])
                           & (pl.col("seed") == ph["seed"])).row(0, named=True)
        df = pl.read_parquet(run / "dynamics" / "organism" / ph["init"]
                             / f"{ph['string_id']}.parquet").filter(pl.col("seed") == ph["seed"])
        assert df.height == (E + 1) * s["length"]
        truth = pl.Series(s["token_ids"] * (E + 1))
        assert (df.sort("epoch", "position")["pred"] == truth).to_list() == df.sort(
            "epoch", "position")["correct"].to_list()
        acc = df.group_by("epoch").agg(pl.col("correct").mean()).sort("epoch")[
            "correct"].to_list()
        # memorized: the first run of hold epochs at accuracy 1 in the per-position table
        hold = DYN["phases"]["hold_epochs"]
        runs = [e for e in range(E + 2 - hold) if acc[e: e + hold] == [1.0] * hold]
        assert ph["memorized"] == (runs[0] if runs else None)
        assert ph["horizon"] == E - hold + 1
        # a guessing plateau is one in the curve, at the string's own letter entropy
        if ph["guess_start"] is not None:
            loss = df.group_by("epoch").agg(pl.col("loss").mean()).sort("epoch")["loss"]
            for e in range(ph["guess_start"], ph["guess_end"] + 1):
                assert abs(loss[e] - s["empirical_entropy"]) <= DYN["phases"]["loss_tolerance"]
                assert abs(acc[e] - s["guess_accuracy"]) <= DYN["phases"]["accuracy_rise"]
        assert ph["final_accuracy"] == acc[-1]
        for e in DYN["q2"]["epochs"]:
            kept = q2.filter(pl.col("init") == ph["init"], pl.col("string_id") == s["string_id"],
                             pl.col("seed") == s["seed"], pl.col("epoch") == e,
                             pl.col("condition") == "kept")
            for k, a in kept.select("k", "accuracy").iter_rows():
                at = df.filter((pl.col("epoch") == e) & (pl.col("position") > k))
                assert abs(at["correct"].mean() - a) < 1e-12
    # at least the pretrained organism memorizes its strings within the test budget
    assert phases.filter(pl.col("init") == "pretrained")["memorized"].is_not_null().all()
    assert set(q2["condition"]) == set(DYN["q2"]["conditions"])


def test_dynamics_sequential_exposure_and_figures(run):
    q3 = pl.read_parquet(run / "dynamics" / "q3.parquet")
    K = DYN["sequential"]["strings"]
    runs = sorted(set(q3["init"]))  # training runs: pretrained, random-{seed}
    assert {r.split("-")[0] for r in runs} == set(DYN["inits"])
    for init in runs:
        g = q3.filter(pl.col("init") == init).sort("stage")
        assert g["trained"].to_list() == list(range(K)) + [0]
        assert all(len(a) == K for a in g["end_accuracy"])
    summary = files.read_json(run / "dynamics" / "summary.json")
    assert {k.split("-")[0] for k in summary} == {f"organism/{i}" for i in DYN["inits"]}
    # the paper's findings: one entropy fraction and one model in the test grid cannot decide
    found = pl.read_parquet(run / "dynamics" / "findings.parquet")
    verdict = dict(zip(found["factor"], found["verdict"], strict=False))
    assert verdict["entropy_fraction"] == verdict["n_params"] == "insufficient"
    assert set(found["verdict"]) <= {"agrees", "disagrees", "insufficient"}
    assert "Against Speicher et al." in (run / "summary.md").read_text()
    for name in ("curves", "position_grid", "q2_context", "q3_forgetting"):
        blob = (run / "figures" / "dynamics" / "organism" / f"{name}.png").read_bytes()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 10_000
    assert (run / "figures" / "dynamics" / "q1_factors.png").stat().st_size > 10_000


def test_dynamics_training_reruns_to_identical_bytes(run, tmp_path):
    import shutil

    for rel in ("models/organism", "dynamics/organism/strings.parquet"):
        src, dst = run / rel, tmp_path / "results" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    cell = f"l{DYN['grid']['alphabet_sizes'][-1]}-h1-n{DYN['grid']['lengths'][0]}"
    target = f"results/dynamics/organism/random-0/{cell}.parquet"
    snakemake(tmp_path, "--configfile", str(TEST_CONFIG), "--allowed-rules", "dynamics_train",
              "--", target)
    for name in (f"{cell}.parquet", f"{cell}.q2.parquet"):
        rel = f"dynamics/organism/random-0/{name}"
        assert (tmp_path / "results" / rel).read_bytes() == (run / rel).read_bytes(), name


def test_checkpoints_are_the_organism_s_snapshots_in_step_order(run):
    from vermem.core import naming

    record = files.read_json(run / "models" / "organism" / "model.json")
    n = CFG["organism"]["checkpoints"]
    assert [c["name"] for c in record["checkpoints"]] == naming.organism_names(n)
    assert [c["step"] for c in record["checkpoints"]] == naming.organism_steps(record["step"], n)
    for c in record["checkpoints"]:  # a loadable model of the final one's shape
        assert (Path(c["path"].replace("results/", str(run) + "/", 1)) / "config.json").is_file()
    memo = pl.read_parquet(run / "checkpoints" / "organism" / "memorization.parquet")
    circ = pl.read_parquet(run / "checkpoints" / "organism" / "circuits.parquet")
    studied = CFG["models"]["organism"]["checkpoints"]
    steps = {c["name"]: c["step"] for c in record["checkpoints"]}
    for t in (memo, circ):
        points = t.select("checkpoint", "step", "final").unique(maintain_order=True).rows()
        assert points == [(c, steps[c], False) for c in studied] + [("final", record["step"],
                                                                     True)]
    # one sample set at every checkpoint; the final point is the main run's labels of it
    keys = pl.read_parquet(run / "checkpoints" / "organism" / "samples.parquet")
    assert (keys["offset"] == 0).all() and keys["doc_id"].n_unique() == keys.height
    labels = pl.read_parquet(run / "labels" / "organism.parquet").join(
        keys.select("doc_id", "offset"), on=["doc_id", "offset"], how="semi")
    final = memo.filter(pl.col("final") & (pl.col("by") == "subset"))
    for subset, n_, k in final.select("group", "n", "memorized").rows():
        sub = labels.filter(pl.col("subset") == subset)
        assert (n_, k) == (sub.height, int((sub["label"] == "memorized").sum()))
    assert memo.filter(pl.col("by") == "dup_count")["group"].unique().sort().to_list() == \
        sorted(str(c) for c in {0, 1, *CFG["organism"]["duplicates"]["counts"]})
    # a row per point, task, subset and direction; the final model overlaps itself fully
    c = CFG["circuits"]
    assert circ.height == (len(studied) + 1) * len(CFG["attribution"]["tasks"]) * len(
        CFG["checkpoints"]["subsets"]) * len(c["directions"])
    # the rank correlation with the final model, recomputed from the attribution files with
    # pandas' ranks: an earlier checkpoint's scores are not the final model's
    import pandas as pd

    from vermem.attribution import storage

    metric = c["rank_by"]

    def abs_scores(path, direction):  # each direction's own scores (issue 31)
        t = storage.load(path)[0]
        key = "scores" if direction == "noising" else "scores_denoising"
        return t[key][t["mask"].bool()].abs().double().numpy()
    early = circ.filter(~pl.col("final") & pl.col("rank_corr").is_not_null())
    assert early.height
    for r in early.iter_rows(named=True):
        slug = r["subset"].lower().replace(" ", "-")
        got = abs_scores(run / "checkpoints" / "organism" / r["checkpoint"] / "attribution"
                         / r["task"] / slug / f"{metric}.safetensors", r["direction"])
        ref = abs_scores(run / "attribution" / "organism" / r["task"] / slug
                         / f"{metric}.safetensors", r["direction"])
        rho = pd.Series(got).rank().corr(pd.Series(ref).rank())  # Pearson of average ranks
        assert r["rank_corr"] == pytest.approx(rho, abs=1e-9)
        assert r["rank_corr"] < 1 - 1e-6
    # the checkpoint circuit rule ran the main mode only
    ck = json.loads((run / "checkpoints" / "organism" / studied[0] / "circuits" /
                     "branch_comparison" / "stdlib-docstrings" / "minimal.json").read_text())
    assert {(m["placement"], m["ablation"]) for m in ck["circuits"] + ck["not_found"]} <= \
        {(c["main"]["placement"], c["main"]["ablation"])}


def test_adding_a_checkpoint_reruns_only_its_jobs_and_the_gathering_ones(run, tmp_path):
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    cfg["models"]["organism"]["checkpoints"] = [*cfg["models"]["organism"]["checkpoints"], "t75"]
    (tmp_path / "more.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = snakemake(run.parent, "--configfile", str(tmp_path / "more.yaml"), "-n")
    jobs = planned(out)
    jobs.pop("all", None)
    per_set = len(CFG["attribution"]["tasks"]) * len(CFG["checkpoints"]["subsets"])
    assert jobs == {"checkpoint_record": 1, "checkpoint_labels": 1,
                    "checkpoint_attribution": per_set, "checkpoint_circuit": per_set,
                    "checkpoint_final_circuits": 1, "checkpoint_tables": 1,
                    "figure_checkpoints": 1, "summary": 1}
    new = [line for line in out.stdout.splitlines() if "output:" in line
           and "checkpoints/" in line and "/t75/" not in line]
    assert all("memorization.parquet" in line or "figures" in line for line in new), new


def test_a_hub_or_local_model_s_record_ignores_its_checkpoint_list(tmp_path, tiny_model_dir):
    """The final model's record is made once: listing another checkpoint of a local (or hub)
    model, or its final_step, must not rewrite it and rerun everything downstream."""
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    cfg["organism"], cfg["dynamics"] = None, None
    folder = tmp_path / "m"  # the model with its checkpoint subfolders (checked at start-up)
    shutil.copytree(tiny_model_dir, folder)
    for step in ("step1000", "step2000"):
        (folder / step).symlink_to(tiny_model_dir, target_is_directory=True)
    cfg["models"] = {"m": {"source": "local", "path": str(folder), "final_step": 4000,
                           "checkpoints": ["step1000"]}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    # the target first: --configfile takes every path after it
    snakemake(tmp_path, "results/models/m/model.json", "--configfile", str(tmp_path / "c.yaml"))
    cfg["models"]["m"].update(final_step=8000, checkpoints=["step1000", "step2000"])
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = snakemake(tmp_path, "results/models/m/model.json", "-n", "--configfile",
                    str(tmp_path / "c.yaml"))
    assert "Nothing to be done" in out.stdout + out.stderr, out.stdout[-2000:]


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
                    # every metric of the two tasks, the ranking metric of their controls
                    "attribution": 5 * 2 * 4 * 3 + 5 * 2 * 4}.items():
        assert any(line.split() == [rule, str(n)] for line in text.splitlines()), rule
    for rule in ("standin_corpus", "train_organism", "figure_duplicates"):
        assert rule not in text


def test_authors_config_builds_their_dag_and_bill(tmp_path):
    """config/lasy2025.yaml (docs/reproduction.md): GPT-Neo-125M only, one ranking metric, no
    controls, no Study B, their attribution method, criterion and search; `make plan` bills
    it without the Pile (an empty stand-in shard)."""
    from vermem.workflow import plan

    cfg = yaml.safe_load((REPO / "config" / "lasy2025.yaml").read_text())
    assert cfg["attribution"]["method"] == "EAP-IG-activations"
    assert (cfg["circuits"]["criterion"], cfg["circuits"]["search"], cfg["circuits"]["target"]
            ) == ("ratio_of_full", "coarse", 0.8)
    assert cfg["contrastive"]["split"] == {"attribution": 0.9, "selection": 0.0,
                                           "evaluation": 0.1}
    write_jsonl(tmp_path / "00.jsonl.zst", [])
    cfg["corpus"]["shards"] = [str(tmp_path / "00.jsonl.zst")]
    (tmp_path / "lasy.yaml").write_text(yaml.safe_dump(cfg))
    jobs = planned(snakemake(tmp_path, "--configfile", str(tmp_path / "lasy.yaml"), "-n"))
    cells = len(cfg["attribution"]["tasks"]) * len(cfg["corpus"]["subsets"])  # 2 x 4
    assert jobs["model_record"] == jobs["labels"] == 1
    assert jobs["attribution"] == jobs["circuit"] == cells
    for rule in ("circuit_specificity", "dynamics_train", "checkpoint_labels", "train_organism"):
        assert rule not in jobs
    text = plan.render(plan.build(tmp_path / "lasy.yaml"))
    row = next(line.split() for line in text.splitlines() if line.startswith("attribution "))
    assert row[1] == str(cells) and float(row[3]) > 0


def test_checkpoint_config_builds_the_pythia_training_axis_dag(tmp_path):
    """config/pythia-checkpoints.yaml: 7 checkpoints + the final model of two Pythias, every
    stage per checkpoint, from a dry run (no hub needed)."""
    cfg = yaml.safe_load((REPO / "config" / "pythia-checkpoints.yaml").read_text())
    write_jsonl(tmp_path / "00.jsonl.zst", [])
    cfg["corpus"]["shards"] = [str(tmp_path / "00.jsonl.zst")]
    (tmp_path / "ck.yaml").write_text(yaml.safe_dump(cfg))
    jobs = planned(snakemake(tmp_path, "--configfile", str(tmp_path / "ck.yaml"), "-n"))
    steps = cfg["models"]["pythia-160m-deduped"]["checkpoints"]
    assert [int(s.removeprefix("step")) for s in steps] == sorted(
        int(s.removeprefix("step")) for s in steps) and steps[0] == "step1000"
    models, n = len(cfg["models"]), len(steps)
    sets = len(cfg["attribution"]["tasks"]) * len(cfg["corpus"]["subsets"])
    assert models == 2 and 6 <= n + 1 <= 10
    assert jobs["checkpoint_record"] == jobs["checkpoint_labels"] == models * n
    assert jobs["checkpoint_attribution"] == jobs["checkpoint_circuit"] == models * n * sets
    assert jobs["checkpoint_final_circuits"] == models * (n + 1)
    assert jobs["checkpoint_tables"] == jobs["figure_checkpoints"] == models
    assert jobs["labels"] == jobs["model_record"] == models and "dynamics_train" not in jobs


def test_slurm_profile_sends_gpu_rules_to_the_gpu_partition(tmp_path):
    """`--profile slurm` from the repository root: GPU rules ask for a GPU, CPU rules none."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "slurm", "-n", "-d", str(tmp_path),
         "--configfile", str(TEST_CONFIG)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resources, rule = {}, None
    for line in proc.stdout.splitlines():
        if line.strip().startswith(("rule ", "localrule ")):  # group jobs: indented
            rule = line.split()[1].rstrip(":")
        elif line.strip().startswith("resources:") and rule:
            resources[rule] = dict(kv.split("=", 1) for kv in line.split(":", 1)[1].split(", "))
    gpu_rules = {"train_organism", "labels", "divergence", "pairs", "attribution", "circuit",
                 "circuit_transfer", "circuit_specificity", "dynamics_train",
                 "dynamics_sequential", "checkpoint_labels", "checkpoint_attribution",
                 "checkpoint_circuit", "checkpoint_final_circuits", "method_comparison",
                 "context_dependence"}
    assert set(resources) >= gpu_rules | {"standin_corpus", "corpus_candidates", "samples"}
    for rule, res in resources.items():
        if rule in gpu_rules:
            assert res.get("gpu") == "1" and res["slurm_partition"] == "gpu", rule
        else:
            assert "gpu" not in res and res["slurm_partition"] != "gpu", rule


def planned(out: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from a dry run's job stats table."""
    jobs, on = {}, False
    for line in out.stdout.splitlines():
        if line.startswith("Job stats:"):
            on = True
        elif on and line.startswith("total"):
            break
        elif on and len(line.split()) == 2 and line.split()[1].isdigit():
            rule, n = line.split()
            jobs[rule] = int(n)
    return jobs


CKPT_DOWNSTREAM = {"checkpoint_circuit", "checkpoint_final_circuits", "checkpoint_tables",
                   "figure_checkpoints", "summary"}
CONTROLS_DOWNSTREAM = {"circuit_specificity", "figure_specificity"}
MIB_DOWNSTREAM = {"figure_mib"}  # the circuit rule writes mib.parquet
METHODS_DOWNSTREAM = {"method_comparison", "figure_methods"}


@pytest.mark.parametrize("section, key, value, rules", [
    ("attribution", "ig_steps", 3,
     {"attribution", "figure_attribution_layers", "circuit", "circuit_transfer",
      "circuit_claims", "figure_faithfulness", "figure_circuit_view", "figure_transfer",
      "checkpoint_attribution", "figure_positions", *CONTROLS_DOWNSTREAM, *MIB_DOWNSTREAM,
      *METHODS_DOWNSTREAM, *CKPT_DOWNSTREAM}),
    ("circuits", "claims", {"transfer_threshold": 0.6, "margin": 0.1, "min_pairs": 20},
     {"circuit_claims", "figure_transfer", "summary"}),
    ("circuits", "target", 0.8,
     {"circuit", "circuit_transfer", "circuit_claims", "figure_faithfulness",
      "figure_circuit_view", "figure_transfer", *CONTROLS_DOWNSTREAM, *MIB_DOWNSTREAM,
      *METHODS_DOWNSTREAM, *CKPT_DOWNSTREAM}),
    ("contrastive", "split", {"attribution": 0.5, "selection": 0.2, "evaluation": 0.3},
     {"pairs", "context_dependence", "figure_context_dependence", "figures_memorization",
      "attribution",
      "figure_attribution_layers", "circuit",
      "circuit_transfer", "circuit_claims", "figure_faithfulness", "figure_circuit_view",
      "figure_transfer", "checkpoint_attribution", "figure_positions", *CONTROLS_DOWNSTREAM,
      *MIB_DOWNSTREAM, *METHODS_DOWNSTREAM, *CKPT_DOWNSTREAM}),
    ("checkpoints", "samples_per_group", 10,
     {"checkpoint_samples", "checkpoint_labels", "checkpoint_tables", "figure_checkpoints",
      "summary"}),
])
def test_a_config_change_reruns_only_the_rules_downstream_of_it(run, tmp_path, section, key,
                                                                value, rules):
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    cfg[section][key] = value
    # key order kept: Snakemake compares params as written, a reordered dict is a change
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    jobs = planned(snakemake(run.parent, "--configfile", str(tmp_path / "changed.yaml"), "-n"))
    jobs.pop("all", None)
    assert set(jobs) == rules
    a = CFG["attribution"]
    # every metric of the tasks, the ranking metric of their controls
    n_attr = len(a["tasks"]) * len(CFG["corpus"]["subsets"]) * (len(a["metrics"]) + 1)
    assert jobs.get("attribution", n_attr) == n_attr   # every attribution file, none twice


def test_a_job_killed_mid_run_leaves_nothing_a_rerun_takes_as_complete(workflow_copy):
    """SIGKILL the whole run while the organism trains: no output of that job exists, and
    the rerun schedules the job again. On a copy of the finished run without the
    organism's outputs and log: the stand-in shards are there, training is the one job."""
    import os
    import shutil
    import signal
    import time

    workdir = workflow_copy.parent
    folder = workflow_copy / "models" / "organism"
    log = workdir / "logs" / "models" / "organism.log"
    shutil.rmtree(folder)
    log.unlink()
    target = "results/models/organism/model.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
         "--cores", "2", target, "--configfile", str(TEST_CONFIG)],  # nargs+: target first
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (log.is_file() and "epoch 0 step" in log.read_text()):
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.2)
    assert log.is_file(), "training never started"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    left = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert all(name.startswith(".") and name.endswith(".tmp") for name in left), left
    jobs = planned(snakemake(workdir, target, "--configfile", str(TEST_CONFIG), "-n"))
    assert jobs == {"train_organism": 1}, jobs


def test_figures_regenerate_from_finished_results_alone(run, workflow_copy):
    """`make figures` (README) reruns the figure rules only, and every figure comes back
    (on a copy of the finished run: the figures are deleted first)."""
    import shutil

    figures = workflow_copy / "figures"
    before = sorted(p.relative_to(run / "figures") for p in (run / "figures").rglob("*.png"))
    assert before == sorted(p.relative_to(figures) for p in figures.rglob("*.png"))
    shutil.rmtree(figures)
    venv = Path(sys.executable).parent.parent
    proc = subprocess.run(
        ["make", "-s", "figures", f"VENV={venv}", "CORES=2",
         f"SMK_ARGS=-d {workflow_copy.parent} --configfile {TEST_CONFIG}"],
        cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ran = {line.split()[1].rstrip(":") for line in (proc.stdout + proc.stderr).splitlines()
           if line.startswith(("rule ", "localrule "))}
    assert ran and all(r.startswith("figure") or r == "all" for r in ran), ran
    assert sorted(p.relative_to(figures) for p in figures.rglob("*.png")) == before
    # and the finished run is still complete
    assert "Nothing to be done" in snakemake(workflow_copy.parent, "--configfile",
                                             str(TEST_CONFIG), "-n").stdout


def test_report_holds_every_figure_with_its_caption_grouped_by_study(run, tmp_path):
    html = tmp_path / "report.html"
    snakemake(run.parent, "--configfile", str(TEST_CONFIG), "--report", str(html))
    text = html.read_text()
    for png in (run / "figures").rglob("*.png"):
        assert png.name in text, png.name
    assert "claims.html" in text and "summary.html" in text
    # the front page (report/workflow.rst) carries the run's summary, its tables as tables
    assert "What this run gives" in text and "vermem-summary" in text
    for caption in sorted((REPO / "report").glob("*.rst")):
        assert caption.read_text()[:40] in text, caption.name
    assert "Study A" in text


def test_two_runs_give_byte_identical_tables_with_provenance(run, second_run):
    """The second run (`second_run`, conftest.py: a chain through every stage that trains
    or draws random numbers, in a fresh folder): each table and tensor file it made is
    byte-identical to the first run's; records differ only in timings. Every table of the
    first run names what made it."""
    tables = sorted(p.relative_to(run) for p in run.rglob("*")
                    if p.suffix in (".parquet", ".safetensors", ".csv"))
    assert len(tables) > 20
    again = sorted(p.relative_to(second_run) for p in second_run.rglob("*")
                   if p.suffix in (".parquet", ".safetensors", ".csv"))
    assert len(again) >= 15 and set(again) <= set(tables)
    for rel in again:
        assert (run / rel).read_bytes() == (second_run / rel).read_bytes(), rel
    for b in second_run.rglob("*.json"):
        ja, jb = (files.read_json(p) for p in (run / b.relative_to(second_run), b))
        for j in (ja, jb):
            j.pop("train_seconds", None)
        assert ja == jb, b
    for rel in tables:
        if rel.suffix == ".parquet":
            prov = files.read_provenance(run / rel)
            assert {"model", "revision", "config_hash", "packages"} <= set(prov), rel
            assert prov["packages"]["torch"].startswith("2.13.0")  # +cpu or +cuXXX build
