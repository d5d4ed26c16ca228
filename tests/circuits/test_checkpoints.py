"""The checkpoint axis (docs/study-a.md §12): names and steps, config checks, the fixed sample
set, the memorization and circuit tables, the final circuit evaluated at a checkpoint."""

import copy
import shutil
from dataclasses import replace

import polars as pl
import pytest
import torch
import yaml

from vermem.circuits import checkpoints as K
from vermem.circuits.settings import FinalCircuitSettings
from vermem.core import naming
from vermem.core.stats import Bootstrap, nan_to_none, rank_correlation, wilson
from vermem.models import loading, organism
from vermem.workflow.config import ConfigError, check, load_schema

from ..conftest import REPO, TEST_CONFIG
from .test_circuits import setup  # noqa: F401  (fixture: tiny models with an EvalSet)

SCHEMA = load_schema(REPO / "config" / "schema.yaml")
CFG = yaml.safe_load(TEST_CONFIG.read_text())


def test_organism_snapshots_are_evenly_spaced_and_named_by_share_of_training():
    assert naming.organism_names(6) == ["t0", "t17", "t33", "t50", "t67", "t83"]
    assert naming.organism_steps(1158, 6) == [0, 193, 386, 579, 772, 965]
    assert naming.organism_names(1) == [] and naming.organism_steps(10, 1) == []
    for n in range(2, 101):  # distinct names for every allowed count
        assert len(set(naming.organism_names(n))) == n
    steps = naming.organism_steps(1000, 5)
    assert [b - a for a, b in zip(steps, [*steps[1:], 1000], strict=True)] == [200] * 5


def test_step_of_reads_the_last_integer():
    assert naming.step_of("step143000") == 143000
    assert naming.step_of("ckpt-v2-step64") == 64
    assert naming.step_of("main") is None and naming.step_of(None) is None


def hub_config(**model):
    cfg = copy.deepcopy(CFG)
    cfg["models"]["p160"] = {"source": "hub", "id": "EleutherAI/pythia-160m-deduped",
                             "revision": "step143000", **model}
    cfg["dynamics"] = None
    return cfg


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(checkpoints=None),
     r"models.organism.checkpoints: listed, but the top-level checkpoints section is null"),
    (lambda c: c["models"]["organism"].update(checkpoints=["t30"]),
     r"models.organism.checkpoints: \['t30'\] are not saved by the organism"),
    (lambda c: c["models"]["organism"].update(checkpoints=["final"]),
     r"models.organism.checkpoints: bad name 'final'"),
    (lambda c: c["checkpoints"].update(subsets=["Wikipedia"]),
     r"checkpoints.subsets: \['Wikipedia'\] are not in corpus.subsets"),
])
def test_bad_checkpoint_config_is_one_line_naming_the_key(change, message):
    cfg = copy.deepcopy(CFG)
    change(cfg)
    with pytest.raises(ConfigError, match=message):
        check(cfg, SCHEMA)


@pytest.mark.parametrize("model, message", [
    ({"checkpoints": ["step1000", "step143000"]}, r"is the model's own revision"),
    ({"checkpoints": ["early"]}, r"\['early'\] carry no training step"),
    ({"checkpoints": ["step1000"], "revision": "main"}, r"models.p160.final_step"),
    ({"checkpoints": ["step200000"]}, r"not before the final model's step 143000"),
])
def test_hub_checkpoints_must_be_numbered_and_before_the_final_step(model, message):
    with pytest.raises(ConfigError, match=message):
        check(hub_config(**model), SCHEMA)


def test_listed_checkpoints_and_final_step():
    cfg = hub_config(checkpoints=["step1000", "step8000"])
    check(cfg, SCHEMA)
    assert naming.listed(cfg, "p160") == ["step1000", "step8000"]
    assert naming.final_step(cfg, "p160") == 143000
    assert naming.listed(cfg, "organism") == ["t50"]                 # listed in the test config
    del cfg["models"]["organism"]["checkpoints"]
    assert naming.listed(cfg, "organism") == ["t0", "t25", "t50", "t75"]   # all it saves
    cfg["checkpoints"] = None
    assert naming.listed(cfg, "organism") == []
    main = hub_config(checkpoints=["step1000"], revision="main", final_step=143000)
    check(main, SCHEMA)
    assert naming.final_step(main, "p160") == 143000


def samples_table():
    rows = []
    for subset in ("A", "B"):
        for dup in (0, 1, 64):
            for d in range(10 if dup != 64 else 3):
                for offset in (0, 8, 16):
                    rows.append({"doc_id": f"{subset}{dup}:{d}", "offset": offset,
                                 "subset": subset, "dup_count": dup})
    return pl.DataFrame(rows)


def test_sample_set_is_one_start_window_per_document_capped_per_group():
    s = samples_table()
    got = K.sample_set(s, per_group=4, seed=0)
    assert (got["offset"] == 0).all() and got["doc_id"].n_unique() == got.height
    counts = {(a, b): n for a, b, n in got.group_by("subset", "dup_count").len().iter_rows()}
    assert counts == {("A", 0): 4, ("A", 1): 4, ("A", 64): 3, ("B", 0): 4, ("B", 1): 4,
                      ("B", 64): 3}
    assert got.equals(K.sample_set(s, per_group=4, seed=0))          # seeded
    assert not got.equals(K.sample_set(s, per_group=4, seed=1))
    # a group's documents do not depend on the other groups
    only_a = K.sample_set(s.filter(pl.col("subset") == "A"), per_group=4, seed=0)
    assert only_a.equals(got.filter(pl.col("subset") == "A"))
    assert K.sample_set(s, per_group=None, seed=0).height == 2 * (10 + 10 + 3)


def labels_for(keys, memorized, partial=()):
    """Labels with the scores behind them: memorized documents reproduce all 8 continuation
    tokens, `partial` ones their first 2 then every other, the rest none."""
    mem, half = pl.col("doc_id").is_in(list(memorized)), pl.col("doc_id").is_in(list(partial))
    return keys.with_columns(
        pl.when(mem).then(pl.lit("memorized")).otherwise(pl.lit("non-memorized")).alias("label"),
        pl.when(mem).then(1.0).when(half).then(5 / 8).otherwise(0.0).alias("match_fraction"),
        pl.when(mem).then(8).when(half).then(2).otherwise(0).cast(pl.Int32)
        .alias("exact_prefix"))


def test_memorization_table_counts_the_sample_set_with_wilson_intervals():
    s = samples_table()
    keys = K.sample_set(s, per_group=None, seed=0)
    planted = keys.filter(pl.col("dup_count") == 64)["doc_id"].to_list()
    early = labels_for(keys, planted[:1], partial=planted[1:3])
    final = labels_for(s, planted)                # the final model's labels: every window
    t = K.memorization("m", [("t50", 50, False, early), ("final", 100, True, final)], keys,
                       Bootstrap(500))
    row = t.filter((pl.col("checkpoint") == "final") & (pl.col("by") == "dup_count")
                   & (pl.col("group") == "64")).row(0, named=True)
    assert (row["n"], row["memorized"], row["share"]) == (6, 6, 1.0)   # windows 8, 16 ignored
    assert row["share_lo"] == pytest.approx(0.6097, abs=1e-3) and row["share_hi"] == 1.0
    row = t.filter((pl.col("checkpoint") == "t50") & (pl.col("group") == "64")).row(
        0, named=True)
    assert (row["n"], row["memorized"]) == (6, 1) and row["share_lo"] < 1 / 6 < row["share_hi"]
    # graded: 1 document whole, 2 in part, 3 not at all; means over the 6 documents with
    # bootstrap intervals that hold the mean and stay within what single documents reach
    assert row["match_fraction"] == pytest.approx((1 + 2 * 5 / 8) / 6)
    assert row["exact_prefix"] == pytest.approx((8 + 2 * 2) / 6)
    for s_ in ("match_fraction", "exact_prefix"):
        assert 0 <= row[f"{s_}_lo"] < row[s_] < row[f"{s_}_hi"] <= (1 if s_[0] == "m" else 8)
    done = t.filter((pl.col("checkpoint") == "final") & (pl.col("group") == "64")).row(
        0, named=True)
    assert (done["match_fraction"], done["match_fraction_lo"], done["exact_prefix_hi"]) == (
        1.0, 1.0, 8.0)                          # every document whole: no spread to resample
    unseen = t.filter((pl.col("by") == "dup_count") & (pl.col("group") == "0"))
    assert unseen["memorized"].to_list() == [0, 0] and unseen["share_hi"][0] > 0
    hub = K.memorization("m", [("final", 100, True, final.with_columns(
        pl.lit(None, pl.Int32).alias("dup_count")))], keys)
    assert set(hub["by"]) == {"subset"} and hub["n"].to_list() == [23, 23]
    with pytest.raises(ValueError, match="checkpoint t50: labels of 45 of the 46"):
        K.memorization("m", [("t50", 50, False, early.slice(1))], keys)


def test_spearman_rank_correlation_with_average_ranks_for_ties():
    def spearman(x, y):  # the overlap table's rule (circuits.checkpoints)
        return nan_to_none(rank_correlation(x, y, ties="average"))

    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert spearman(a, a * 10) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    # ties get average ranks: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4)
    assert spearman(torch.tensor([0.0, 1.0, 1.0, 5.0]), a) == pytest.approx(
        4.5 / (4.5 * 5) ** 0.5)
    assert spearman(torch.zeros(4), a) is None


def test_final_circuit_at_a_checkpoint_is_exact_patching(setup):  # noqa: F811
    """All edges kept: F = 1; none: F = 0 (outside placement, every mode's direction); the
    logit gap equals unpatched clean minus corrupt runs."""
    from .test_circuits import plain_metric

    model, g, ev, (clean, corrupt, answer, wrong) = setup
    found = {("bc", "A", "noising", "outside"): g.mask.clone(),
             ("bc", "A", "denoising", "outside"): torch.zeros_like(g.mask)}
    settings = FinalCircuitSettings(boot=Bootstrap(200), per_forward=8, seeds=[0],
                                    directions=["noising", "denoising"])
    t = K.final_circuits(model, g, {("bc", "A"): ev}, found, settings)
    rows = {r["direction"]: r for r in t.iter_rows(named=True)}
    assert rows["noising"]["final_faithfulness"] == pytest.approx(1.0, abs=1e-6)
    assert rows["denoising"]["final_faithfulness"] == pytest.approx(0.0, abs=1e-6)
    assert rows["noising"]["final_k"] == int(g.mask.sum()) and rows["denoising"]["final_k"] == 0
    gap = plain_metric(model, clean, answer, wrong) - plain_metric(model, corrupt, answer, wrong)
    assert rows["noising"]["logit_gap"] == pytest.approx(gap, abs=1e-4)
    assert rows["noising"]["logit_gap_lo"] <= rows["noising"]["logit_gap"] <= \
        rows["noising"]["logit_gap_hi"]
    # a direction without a final circuit still has its row (F null, the gap known)
    t = K.final_circuits(model, g, {("bc", "A"): ev}, {},
                         replace(settings, directions=["noising"]))
    assert t.height == 1 and t["final_faithfulness"][0] is None
    assert t["logit_gap"][0] == pytest.approx(gap, abs=1e-4)


def point(name, step, final, edges, scores, direction="noising"):
    rec = {"n_selection": 8, "n_edges": 6, "circuits": [] if edges is None else [
        {"direction": direction, "placement": "outside", "ablation": "resample", "k": len(edges),
         "k_lo": 1.0, "k_hi": 5.0, "faithfulness": 0.9, "faithfulness_lo": 0.8,
         "faithfulness_hi": 1.0, "edge_index": edges}]}
    evaluated = pl.DataFrame([{"task": "bc", "subset": "A", "direction": direction,
                               "semantics": "prevention", "n_pairs": 20, "logit_gap": 1.0,
                               "logit_gap_lo": 0.5, "logit_gap_hi": 1.5, "final_k": 3,
                               "final_faithfulness": 0.5, "final_faithfulness_lo": 0.4,
                               "final_faithfulness_hi": 0.6,
                               "final_random_faithfulness": 0.0}], schema=K.FINAL_SCHEMA)
    mask = torch.ones(2, 3, dtype=torch.uint8)
    return {"checkpoint": name, "step": step, "final": final,
            "minimal": {("bc", "A"): rec},
            "scores": {("bc", "A"): {"scores": torch.tensor(scores).view(2, 3), "mask": mask}},
            "evaluated": evaluated}


def test_circuit_table_overlap_with_the_final_circuit():
    main = {"placement": "outside", "ablation": "resample"}
    pts = [point("s1", 10, False, None, [6.0, 5, 4, 3, 2, 1]),
           point("s2", 20, False, [0, 1, 4], [-6.0, 5, 4, 3, 2, 1]),
           point("final", 30, True, [0, 1, 2], [1.0, 2, 3, 4, 5, 6])]
    t = K.circuit_table("m", pts, main)
    assert t["checkpoint"].to_list() == ["s1", "s2", "final"]
    assert t["jaccard"].to_list() == [None, pytest.approx(2 / 4), 1.0]
    # {0, 1, 4} against {0, 1, 2}: 2 shared of the smaller 3
    assert t["overlap_coefficient"].to_list() == [None, pytest.approx(2 / 3), 1.0]
    # |scores| ranks: reversed (-1) for s1 and s2, identical for the final model
    assert t["rank_corr"].to_list() == [pytest.approx(-1.0), pytest.approx(-1.0),
                                        pytest.approx(1.0)]
    assert t["k"].to_list() == [None, 3.0, 3.0]
    assert t["final_faithfulness"].to_list() == [0.5, 0.5, 0.5]


def test_de_noising_rows_correlate_the_de_noising_scores():
    """The rank correlation of a de-noising row uses the de-noising scores: here they agree
    with the final model's (+1) while the noising scores are reversed (-1)."""
    main = {"placement": "outside", "ablation": "resample"}
    pts = [point("s1", 10, False, None, [6.0, 5, 4, 3, 2, 1], "denoising"),
           point("final", 30, True, [0, 1, 2], [1.0, 2, 3, 4, 5, 6], "denoising")]
    for p, den in zip(pts, ([1.0, 2, 3, 4, 5, 6], [2.0, 3, 4, 5, 6, 7]), strict=True):
        p["scores"]["bc", "A"]["scores_denoising"] = torch.tensor(den).view(2, 3)
    t = K.circuit_table("m", pts, main)
    assert t["direction"].to_list() == ["denoising", "denoising"]
    assert t["rank_corr"].to_list() == [pytest.approx(1.0), pytest.approx(1.0)]


def test_organism_keeps_snapshots_at_evenly_spaced_steps(tokenizer):
    torch.manual_seed(0)
    arch = {"layers": 1, "width": 16, "heads": 2, "mlp_ratio": 2, "rotary_pct": 0.25,
            "context": 16}
    model = organism.make_model(len(tokenizer), tokenizer.eos_token_id, arch)
    seqs = [list(range(1, 40))] * 8
    training = {"epochs": 2, "batch_size": 2, "learning_rate": 0.01, "warmup_steps": 1,
                "weight_decay": 0.0, "seed": 0}
    r = organism.train(model, seqs, [1] * 8, training, 16, points=4)
    assert r.steps == 20 and sorted(r.snapshots) == naming.organism_steps(20, 4) == [0, 5, 10, 15]
    final, w = model.state_dict(), "gpt_neox.layers.0.mlp.dense_h_to_4h.weight"
    # step 0 is the initialization: the same seed's untrained model
    torch.manual_seed(0)
    init = organism.make_model(len(tokenizer), tokenizer.eos_token_id, arch).state_dict()
    assert all(torch.equal(r.snapshots[0][k], init[k]) for k in init)
    for step, sd in r.snapshots.items():
        assert set(sd) == set(final)
        assert not torch.equal(sd[w], final[w]), step
    a, b = r.snapshots[5][w], r.snapshots[10][w]
    assert not torch.equal(a, b)


def test_checkpoint_of_a_local_model_is_its_subfolder(tiny_model_dir, tmp_path):
    root = tmp_path / "m"
    shutil.copytree(tiny_model_dir, root)
    shutil.copytree(tiny_model_dir, root / "step100")
    spec = {"source": "local", "path": str(root), "checkpoints": ["step100"]}
    final = loading.resolve("m", spec)
    rec = loading.resolve_checkpoint("m", spec, final, "step100")
    assert rec["path"] == str((root / "step100").resolve())
    assert (rec["checkpoint"], rec["step"], rec["revision"]) == ("step100", 100, "step100")
    assert rec["n_layers"] == final["n_layers"]
    with pytest.raises(loading.ModelError, match=r"models.m.checkpoints \('step200'\): no such"):
        loading.resolve_checkpoint("m", spec, final, "step200")


def test_checkpoint_of_a_hub_model_fetches_its_revision(tiny_model_dir, monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, revision=None, allow_patterns=None:
                        calls.append((repo_id, revision)) or str(tiny_model_dir))
    spec = {"source": "hub", "id": "EleutherAI/pythia-160m-deduped", "revision": "step143000"}
    rec = loading.resolve_checkpoint("p", spec, {}, "step1000")
    assert calls == [("EleutherAI/pythia-160m-deduped", "step1000")]
    assert (rec["revision"], rec["step"], rec["checkpoint"]) == ("step1000", 1000, "step1000")


def test_organism_checkpoint_record_points_at_its_snapshot(tiny_model_dir):
    final = {"name": "organism", "source": "organism", "path": "x/hf", "revision": None,
             "step": 30, "checkpoints": [{"name": "t50", "step": 15,
                                          "path": str(tiny_model_dir)}]}
    rec = loading.resolve_checkpoint("organism", {"source": "organism"}, final, "t50")
    assert (rec["path"], rec["step"], rec["revision"]) == (str(tiny_model_dir), 15, "t50")
    assert "checkpoints" not in rec
    with pytest.raises(loading.ModelError, match=r"saved no checkpoint 't20'"):
        loading.resolve_checkpoint("organism", {"source": "organism"}, final, "t20")



def memo_rows(counts, n=10, steps=(10, 20, 30)):
    """A memorization table: counts {group: [memorized at each step]}, n documents each."""
    rows = []
    for i, step in enumerate(steps):
        for group, ks in counts.items():
            lo, hi = wilson(ks[i], n)
            rows.append({"model": "m", "checkpoint": f"s{step}", "step": step,
                         "final": step == steps[-1], "by": "dup_count", "group": group, "n": n,
                         "memorized": ks[i], "share": ks[i] / n, "share_lo": lo,
                         "share_hi": hi})
    return pl.DataFrame(rows, schema=K.MEMO_SCHEMA)


def circ_rows(points, gaps=None):
    """A circuit table of one task and direction: points [(step, own k, F, half width)];
    gaps: step -> (logit gap, lo, hi), default a clear (5 [4, 6]) one."""
    crow = {c: None for c in K.CIRCUIT_SCHEMA}
    last = points[-1][0]
    gaps = gaps or {}
    return pl.DataFrame([{**crow, "step": s, "final": s == last, "task": "bc", "subset": "A",
                          **dict(zip(("logit_gap", "logit_gap_lo", "logit_gap_hi"),
                                     gaps.get(s, (5.0, 4.0, 6.0)), strict=True)),
                          "direction": "noising", "semantics": "prevention", "n_pairs": 30,
                          "final_k": 12, "k": k, "jaccard": None if k is None else 0.25,
                          "overlap_coefficient": None if k is None else 1.0,
                          "final_faithfulness": f, "final_faithfulness_lo": f - w,
                          "final_faithfulness_hi": f + w}
                         for s, k, f, w in points], schema=K.CIRCUIT_SCHEMA)


def test_no_overlap_is_reported_at_a_step_where_f_is_undefined():
    memo = memo_rows({"0": [0, 0, 0], "64": [0, 3, 10]})
    circ = circ_rows([(10, 4.0, 0.2, 0.1), (20, 50.0, 0.9, 0.2), (30, 12.0, 1.0, 0.1)],
                     gaps={10: (0.02, -0.1, 0.14)})   # t0-like: no clean / corrupt gap
    c = K.summary(memo, circ, 0.85)["circuits"][0]
    assert c["undefined"] == [10]
    assert [o["step"] for o in c["overlap"]] == [20]


def test_summary_reads_emergence_and_faithfulness_steps_off_the_tables():
    memo = memo_rows({"0": [0, 0, 0], "64": [0, 3, 10]})
    circ = circ_rows([(10, None, 0.2, 0.1), (20, 50.0, 0.9, 0.2), (30, 12.0, 1.0, 0.1)])
    s = K.summary(memo, circ, 0.85)
    assert s["memorization"] == [{"by": "dup_count", "group": "64", "n": 10, "final_share": 1.0,
                                  "emerges": 30, "half": 30}]
    # 3 of 10 at step 20: Wilson [0.11, 0.60] overlaps the unseen [0, 0.28]
    c = s["circuits"][0]
    assert (c["final_in_band"], c["final_faithful"], c["own_circuit"]) == (20, 30, 20)
    assert (c["final_in_band_from"], c["final_faithful_from"]) == (20, 30)
    # the earlier checkpoints' own circuits against the final one (the final row left out)
    assert c["overlap"] == [{"step": 10, "k": None, "jaccard": None, "overlap_coefficient": None},
                            {"step": 20, "k": 50.0, "jaccard": 0.25, "overlap_coefficient": 1.0}]
    # graded rows for every group and step, the unseen documents included
    assert [(g["group"], g["step"]) for g in s["graded"]] == [
        (g, t) for g in ("0", "64") for t in (10, 20, 30)]


def test_memorization_emerges_only_with_enough_documents_memorized():
    # the default run's 4-copy group: 1 of 6 memorized; its Wilson interval [0.03, 0.56]
    # already lies above the unseen documents' [0, 0.02] (180 of them)
    unseen = memo_rows({"0": [0, 0, 0]}, n=180)
    four = memo_rows({"4": [0, 1, 1]}, n=6)
    memo = pl.concat([unseen, four])
    assert four["share_lo"][1] > unseen["share_hi"][1]
    assert K.summary(memo, circ_rows([(30, 1.0, 1.0, 0.0)]), 0.85, 1)["memorization"][0][
        "emerges"] == 20
    assert K.summary(memo, circ_rows([(30, 1.0, 1.0, 0.0)]), 0.85, 3)["memorization"][0][
        "emerges"] is None
    three = pl.concat([unseen, memo_rows({"4": [0, 2, 3]}, n=6)])
    assert K.summary(three, circ_rows([(30, 1.0, 1.0, 0.0)]), 0.85, 3)["memorization"][0][
        "emerges"] == 30


def test_faithful_from_needs_every_later_point_in_the_band():
    # in the band at 20, out at 30 (lower end 0.80), back from 40 to the final model
    circ = circ_rows([(10, 1.0, 0.5, 0.1), (20, 1.0, 0.95, 0.05), (30, 1.0, 0.9, 0.1),
                      (40, 1.0, 0.95, 0.05), (50, 1.0, 1.0, 0.05)])
    c = K.summary(memo_rows({"0": [0] * 5}, steps=(10, 20, 30, 40, 50)), circ, 0.85)[
        "circuits"][0]
    assert (c["final_faithful"], c["final_faithful_from"]) == (20, 40)
    assert (c["final_in_band"], c["final_in_band_from"]) == (20, 20)
    # the default run's case: in the band early, the final model's own interval leaves it
    circ = circ_rows([(10, 4.0, 0.91, 0.035), (20, 16.0, 0.83, 0.06)])
    c = K.summary(memo_rows({"0": [0, 0]}, steps=(10, 20)), circ, 0.85)["circuits"][0]
    assert (c["final_faithful"], c["final_faithful_from"], c["final_in_band_from"]) == (
        10, None, None)


def test_a_checkpoint_that_cannot_tell_clean_from_corrupt_has_no_faithfulness():
    """The untrained t0: a logit gap near 0 makes F a ratio of noise, which must not count
    as in the band (here F = 1.0 at step 0 by chance)."""
    points = [(0, 40.0, 1.0, 0.05), (10, 8.0, 0.95, 0.05), (20, 12.0, 1.0, 0.05)]
    memo = memo_rows({"0": [0, 0, 0]}, steps=(0, 10, 20))
    c = K.summary(memo, circ_rows(points, {0: (-0.06, -0.2, 0.1)}), 0.85)["circuits"][0]
    assert c["undefined"] == [0]
    assert (c["final_in_band"], c["final_in_band_from"], c["own_circuit"]) == (10, 10, 10)
    assert (c["final_faithful"], c["final_faithful_from"]) == (10, 10)
    # a gap above 0.1 whose interval contains 0 is undefined too; a clear one is not
    for gap, undefined in (((0.3, -0.1, 0.7), [0]), ((0.3, 0.2, 0.4), [])):
        c = K.summary(memo, circ_rows(points, {0: gap}), 0.85)["circuits"][0]
        assert c["undefined"] == undefined
        assert c["final_in_band"] == (10 if undefined else 0)


def test_a_record_is_made_from_the_model_without_its_training_axis():
    spec = {"source": "hub", "id": "EleutherAI/pythia-160m-deduped", "revision": "step143000",
            "dtype": "float16", "checkpoints": ["step1000", "step2000"], "final_step": 143000}
    assert naming.record_spec(spec) == {"source": "hub", "id": "EleutherAI/pythia-160m-deduped",
                                   "revision": "step143000", "dtype": "float16"}
    assert spec["checkpoints"] == ["step1000", "step2000"] and spec["final_step"] == 143000


def test_overlap_coefficient_is_one_for_a_circuit_inside_another():
    from vermem.circuits import evaluation

    big = torch.zeros(20, dtype=torch.bool)
    big[:10] = True
    small = torch.zeros_like(big)
    small[[2, 5]] = True
    assert (
        evaluation.overlap_coefficient(small, big)
        == evaluation.overlap_coefficient(big, small)
        == 1.0
    )
    assert evaluation.jaccard(small, big) == pytest.approx(0.2)   # low by the sizes alone
    apart = torch.zeros_like(big)
    apart[[12, 15]] = True
    assert evaluation.overlap_coefficient(apart, big) == 0.0
    half = small.clone()
    half[15] = True
    assert evaluation.overlap_coefficient(half, big) == pytest.approx(2 / 3)
    none = torch.zeros_like(big)
    assert (
        evaluation.overlap_coefficient(none, none) == 1.0
        and evaluation.overlap_coefficient(none, big) == 0.0
    )
