import polars as pl
import pytest
import torch
import yaml

from vermem.data import contrastive

P = 10


def div_table(rows):
    rows = [{"offset": 0, **r} for r in rows]
    return pl.DataFrame(rows, schema={"doc_id": pl.String, "offset": pl.Int32, "subset": pl.String,
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
    tail = [1] * (P - d - 1)
    div = div_table([{"doc_id": "h", "subset": "W", "full": h + [target] + tail, "d": d,
                      "generation": [0]}])
    non = pl.DataFrame({"doc_id": ["decoy", "good", "other-subset"], "offset": [0, 16, 0],
                        "subset": ["W", "W", "G"],
                        "full": [decoy + [target] + tail, good + [target] + tail,
                                 good + [target] + tail]})
    pairs, drops = contrastive.decision_pairs(tiny_model, div, non, batch_size=2)
    assert not drops and pairs.height == 1
    p = pairs.row(0, named=True)
    assert p["corrupt_doc_id"] == "good"  # decoy is more similar (identical) but is skipped
    assert (p["offset"], p["corrupt_offset"]) == (0, 16)
    assert p["clean"] == h and p["corrupt"] == good
    assert (p["answer"], p["wrong"]) == (greedy_after(h), target)
    with torch.no_grad():
        hs = [tiny_model(torch.tensor([x]), output_hidden_states=True).hidden_states[-1][0]
              .mean(0) for x in (h, good)]
    assert p["similarity"] == pytest.approx(float(torch.cosine_similarity(*hs, dim=0)), abs=1e-5)
    assert p["similarity"] < 1 - 1e-4  # the identical decoy (similarity 1) was passed over
    # without a usable candidate the sample is dropped, with its reason
    _, drops = contrastive.decision_pairs(tiny_model, div, non.filter(pl.col("doc_id") == "decoy"),
                                          batch_size=2)
    assert drops == {("W", "no candidate whose greedy token is the target"): 1}
    _, drops = contrastive.decision_pairs(tiny_model, div, non.head(0), batch_size=2)
    assert drops == {("W", "no non-memorized sample with the target at d"): 1}
    # candidates come from h's document part only, and never from h's own document
    parts = {"h": "evaluation", "decoy": "evaluation", "good": "attribution",
             "other-subset": "evaluation"}
    _, drops = contrastive.decision_pairs(tiny_model, div, non, batch_size=2, parts=parts)
    assert drops == {("W", "no candidate whose greedy token is the target"): 1}
    parts["good"] = "evaluation"
    pairs, _ = contrastive.decision_pairs(tiny_model, div, non, batch_size=2, parts=parts)
    assert pairs["corrupt_doc_id"].to_list() == ["good"]
    same_doc = non.with_columns(pl.lit("h").alias("doc_id"))
    _, drops = contrastive.decision_pairs(tiny_model, div, same_doc, batch_size=2)
    assert drops == {("W", "no non-memorized sample with the target at d"): 1}


def test_logit_diffs_are_the_last_position_answer_minus_wrong(tiny_model):
    pairs = pl.DataFrame({"clean": [[5, 6, 7], [8, 9, 10, 11]],
                          "corrupt": [[5, 6, 8], [8, 9, 10, 12]],
                          "answer": [3, 4], "wrong": [20, 21]},
                         schema_overrides={"answer": pl.Int32, "wrong": pl.Int32})
    out = contrastive.logit_diffs(tiny_model, pairs, batch_size=8)
    # every pair, one prompt at a time, against the model's own last-position logits (the
    # two lengths batch apart; the table keeps the input order)
    for i, r in enumerate(pairs.iter_rows(named=True)):
        for col in ("clean", "corrupt"):
            with torch.no_grad():
                lg = tiny_model(torch.tensor([r[col]])).logits[0, -1]
            diff = float(lg[r["answer"]] - lg[r["wrong"]])
            assert out[f"{col}_logit_diff"][i] == pytest.approx(diff, abs=1e-5)
            if col == "clean":
                assert out["clean_prefers_answer"][i] == (lg[r["answer"]] > lg[r["wrong"]])
            else:
                assert out["corrupt_prefers_wrong"][i] == (lg[r["wrong"]] > lg[r["answer"]])


def pool(n_per_subset=(300, 200)):
    """A candidate pool: documents of two subsets."""
    return pl.DataFrame({"doc_id": [f"{s}{i}" for s, n in zip("AB", n_per_subset, strict=True)
                                    for i in range(n)],
                         "subset": [s for s, n in zip("AB", n_per_subset, strict=True)
                                    for _ in range(n)]})


FRACTIONS = {"attribution": 0.5, "selection": 0.2, "evaluation": 0.3}


def test_document_parts_respect_the_fractions_in_every_subset_and_depend_on_the_seed():
    docs = pool()
    parts = contrastive.document_parts(docs, seed=0, fractions=FRACTIONS)
    assert set(parts) == set(docs["doc_id"])
    for subset, n in (("A", 300), ("B", 200)):
        got = [parts[d] for d in docs.filter(pl.col("subset") == subset)["doc_id"]]
        for part, f in FRACTIONS.items():
            assert abs(got.count(part) - f * n) <= 1, (subset, part)
    # the order of the pool does not matter, the seed does
    assert contrastive.document_parts(docs.reverse(), 0, FRACTIONS) == parts
    other = contrastive.document_parts(docs, 1, FRACTIONS)
    assert sum(parts[d] != other[d] for d in parts) > 100
    # a random-looking assignment: parts are not runs of consecutive ids
    evaluation = sorted(int(d[1:]) for d in parts if d[0] == "A" and parts[d] == "evaluation")
    assert 100 < sum(evaluation) / len(evaluation) < 200


def test_a_stratified_split_cuts_every_stratum_by_the_fractions():
    docs = pool()   # subsets A (300 documents) and B (200)
    # 10 planted documents per subset, two at a rare count, the rest seen once
    strata = {d: 32 if int(d[1:]) < 10 else (64 if int(d[1:]) < 12 else 1)
              for d in docs["doc_id"]}
    parts = contrastive.document_parts(docs, seed=0, fractions=FRACTIONS, strata=strata)
    assert set(parts) == set(docs["doc_id"])
    for subset in ("A", "B"):
        planted = [parts[d] for d in docs["doc_id"] if d[0] == subset and strata[d] == 32]
        assert [planted.count(p) for p in contrastive.PARTS] == [5, 2, 3], subset
        everything = [parts[d] for d in docs["doc_id"] if d[0] == subset]
        n = len(everything)
        for part, f in FRACTIONS.items():   # at most one document per stratum off
            assert abs(everything.count(part) - f * n) <= 3, (subset, part)
    # the rare count (two documents per subset) reaches every part over the two subsets,
    # selection included, though no subset alone could give it one (0.2 x 2 rounds to 0)
    rare = [parts[d] for d in docs["doc_id"] if strata[d] == 64]
    assert [rare.count(p) for p in contrastive.PARTS] == [2, 1, 1]
    # the pool's row order does not matter (strata follow their documents), the seed does
    assert contrastive.document_parts(docs.reverse(), 0, FRACTIONS, strata) == parts
    other = contrastive.document_parts(docs, 1, FRACTIONS, strata)
    assert sum(parts[d] != other[d] for d in parts) > 100


def pair_rows(parts, rng, n=400):
    """Branch Comparison pairs (one document) and Memorization Decision pairs (a memorized
    and a candidate document) over the pool, as the pairs table has them."""
    ids = sorted(parts)
    rows = []
    for i in range(n):
        h = rng.choice(ids)
        c = h if i % 2 else rng.choice([d for d in ids if parts[d] == parts[h] and d != h])
        rows.append({"task": contrastive.BRANCH if i % 2 else contrastive.DECISION,
                     "subset": h[0], "doc_id": h, "corrupt_doc_id": c})
    return pl.DataFrame(rows)


def test_split_puts_every_document_in_one_part_across_both_tasks():
    import random

    docs = pool()
    parts = contrastive.document_parts(docs, seed=0, fractions=FRACTIONS)
    rows = pair_rows(parts, random.Random(0))
    pairs = contrastive.split(rows, parts)
    assert pairs.drop("split").equals(rows)  # every pair kept, in its order
    part_of: dict[str, set[str]] = {}
    for doc, corrupt, part in pairs.select("doc_id", "corrupt_doc_id", "split").iter_rows():
        part_of.setdefault(doc, set()).add(part)
        part_of.setdefault(corrupt, set()).add(part)
    assert all(len(p) == 1 for p in part_of.values())
    # a document that both tasks use gets the same part in both (there are such documents)
    by_task = {t: dict(zip(g["doc_id"], g["split"], strict=True))
               for (t,), g in pairs.group_by("task")}
    shared = set(by_task[contrastive.BRANCH]) & set(by_task[contrastive.DECISION])
    assert len(shared) > 50
    assert all(by_task[contrastive.BRANCH][d] == by_task[contrastive.DECISION][d]
               for d in shared)
    share = pairs.group_by("split").len()
    share = dict(zip(share["split"], share["len"] / pairs.height, strict=True))
    for part, f in FRACTIONS.items():
        assert abs(share[part] - f) < 0.08, share
    # subsets are cut apart: a pool with a third subset leaves the other two's parts as they
    # were, so a model whose candidates span more subsets splits the shared ones alike
    more = pl.concat([docs, pl.DataFrame({"doc_id": [f"C{i}" for i in range(150)],
                                          "subset": ["C"] * 150})])
    wider = contrastive.document_parts(more, seed=0, fractions=FRACTIONS)
    assert {d: wider[d] for d in parts} == parts


def test_split_rejects_a_pair_across_parts_or_outside_the_pool():
    parts = {"a": "attribution", "b": "evaluation"}
    cross = pl.DataFrame({"doc_id": ["a"], "corrupt_doc_id": ["b"]})
    with pytest.raises(ValueError, match="cross parts"):
        contrastive.split(cross, parts)
    with pytest.raises(ValueError, match="not in the split's document pool"):
        contrastive.split(pl.DataFrame({"doc_id": ["a"], "corrupt_doc_id": ["z"]}), parts)


def test_split_fractions_must_sum_to_one():
    from vermem.workflow.config import ConfigError, check, load_schema

    from ..conftest import REPO

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["contrastive"]["split"] = {"attribution": 0.5, "selection": 0.2, "evaluation": 0.2}
    with pytest.raises(ConfigError) as e:
        check(cfg, load_schema(REPO / "config" / "schema.yaml"))
    assert "contrastive.split" in str(e.value) and "sum to 0.9" in str(e.value)
    assert "\n" not in str(e.value)
