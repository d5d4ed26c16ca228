import polars as pl
import pytest
import torch

from vermem import contrastive

P = 10


def div_table(rows):
    return pl.DataFrame(rows, schema={"doc_id": pl.String, "subset": pl.String,
                                      "full": pl.List(pl.Int32), "d": pl.Int32,
                                      "generation": pl.List(pl.Int32)})


def test_branch_pairs_follow_the_definition_and_count_drops():
    full = list(range(100, 120))
    div = div_table([
        {"doc_id": "a", "subset": "W", "full": full, "d": 5, "generation": [7, 8, 9]},
        {"doc_id": "b", "subset": "W", "full": full, "d": 5, "generation": [7, 106, 9]},
        {"doc_id": "c", "subset": "G", "full": full, "d": None, "generation": None},
    ])
    pairs, drops = contrastive.branch_pairs(div)
    assert pairs.height == 1
    p = pairs.row(0, named=True)
    assert p["clean"] == full[:5] + [105] and p["corrupt"] == full[:5] + [7]
    assert (p["answer"], p["wrong"], p["d"]) == (106, 8, 5)
    assert len(p["clean"]) == len(p["corrupt"])
    assert drops == {("W", "second tokens agree"): 1, ("G", "no divergence point"): 1}


def test_decision_pair_takes_the_most_similar_candidate_that_predicts_the_target(tiny_model):
    d = 6
    g = torch.Generator().manual_seed(0)

    def greedy_after(seq):
        with torch.no_grad():
            return int(tiny_model(torch.tensor([seq])).logits[0, -1].argmax())

    # a candidate whose greedy token after [:d] is its own token at d: that is the target
    good = torch.randint(1, 300, (d,), generator=g).tolist()
    target = greedy_after(good)
    # a memorized sample whose true token at d is the target, but the model says otherwise
    while True:
        h = torch.randint(1, 300, (d,), generator=g).tolist()
        if greedy_after(h) != target:
            break
    # a decoy: the target at d, yet the model does not predict it; identical to h before d
    decoy = list(h)
    assert greedy_after(decoy) != target
    tail = [1] * (P - d - 1)
    div = div_table([{"doc_id": "h", "subset": "W", "full": h + [target] + tail, "d": d,
                      "generation": [0]}])
    non = pl.DataFrame({"doc_id": ["decoy", "good", "other-subset"], "subset": ["W", "W", "G"],
                        "full": [decoy + [target] + tail, good + [target] + tail,
                                 good + [target] + tail]})
    pairs, drops = contrastive.decision_pairs(tiny_model, div, non, batch_size=2)
    assert not drops and pairs.height == 1
    p = pairs.row(0, named=True)
    assert p["corrupt_doc_id"] == "good"  # decoy is more similar (identical) but is skipped
    assert p["clean"] == h and p["corrupt"] == good
    assert (p["answer"], p["wrong"]) == (greedy_after(h), target)
    with torch.no_grad():
        hs = [tiny_model(torch.tensor([x]), output_hidden_states=True).hidden_states[-1][0]
              .mean(0) for x in (h, good)]
    assert p["similarity"] == pytest.approx(float(torch.cosine_similarity(*hs, dim=0)), abs=1e-5)
    # without a usable candidate the sample is dropped, with its reason
    _, drops = contrastive.decision_pairs(tiny_model, div, non.filter(pl.col("doc_id") == "decoy"),
                                          batch_size=2)
    assert drops == {("W", "no candidate whose greedy token is the target"): 1}
    _, drops = contrastive.decision_pairs(tiny_model, div, non.head(0), batch_size=2)
    assert drops == {("W", "no non-memorized sample with the target at d"): 1}


def test_logit_diffs_are_the_last_position_answer_minus_wrong(tiny_model):
    pairs = pl.DataFrame({"clean": [[5, 6, 7], [8, 9, 10, 11]],
                          "corrupt": [[5, 6, 8], [8, 9, 10, 12]],
                          "answer": [3, 4], "wrong": [20, 21]},
                         schema_overrides={"answer": pl.Int32, "wrong": pl.Int32})
    out = contrastive.logit_diffs(tiny_model, pairs, batch_size=8)
    with torch.no_grad():
        lg = tiny_model(torch.tensor([[8, 9, 10, 12]])).logits[0, -1]
    assert out["corrupt_logit_diff"][1] == pytest.approx(float(lg[4] - lg[21]), abs=1e-5)
    assert out["clean_prefers_answer"].to_list() == [v > 0 for v in out["clean_logit_diff"]]


def test_split_is_seeded_disjoint_and_holds_out_a_tenth_per_task_and_subset():
    pairs = pl.DataFrame({"task": ["t"] * 30 + ["u"] * 3,
                          "subset": ["A"] * 20 + ["B"] * 10 + ["A"] * 3,
                          "doc_id": [f"d{i}" for i in range(33)]})
    a = contrastive.split(pairs, seed=0, eval_fraction=0.1)
    b = contrastive.split(pairs.reverse(), seed=0, eval_fraction=0.1)
    c = contrastive.split(pairs, seed=1, eval_fraction=0.1)
    counts = a.group_by("task", "subset", "split").len().sort("task", "subset", "split")
    assert counts.rows() == [("t", "A", "attribution", 18), ("t", "A", "evaluation", 2),
                             ("t", "B", "attribution", 9), ("t", "B", "evaluation", 1),
                             ("u", "A", "attribution", 2), ("u", "A", "evaluation", 1)]
    assert a.sort("doc_id")["split"].equals(b.sort("doc_id")["split"])
    assert not a.sort("doc_id")["split"].equals(c.sort("doc_id")["split"])
    assert a["doc_id"].to_list() == pairs["doc_id"].to_list()
