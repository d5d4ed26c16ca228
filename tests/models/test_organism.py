import random

import polars as pl
import torch

from vermem.models import organism


def docs_table(n_per_subset=50):
    rows = [{"doc_id": f"s{s}:{i}", "subset": f"S{s}", "n_tokens": 40 + (i % 60)}
            for s in range(3) for i in range(n_per_subset)]
    return pl.DataFrame(rows, schema={"doc_id": pl.String, "subset": pl.String,
                                      "n_tokens": pl.Int32})


def test_planting_gives_each_count_its_documents_spread_over_subsets():
    docs = docs_table()
    holdout = organism.split_holdout(docs["doc_id"].to_list(), 0.1, seed=0)
    t = organism.plant_duplicates(docs, holdout, [1, 4, 64], 6, 50, 80, seed=0)
    assert len(holdout) == 15
    assert t.filter(pl.col("role") == "holdout")["dup_count"].to_list() == [0] * 15
    planted = t.filter(pl.col("role") == "planted")
    assert planted.group_by("dup_count").len().sort("dup_count")["len"].to_list() == [6, 6, 6]
    assert planted["n_tokens"].is_between(50, 80).all()
    assert planted.filter(pl.col("dup_count") == 64)["subset"].n_unique() == 3
    assert not set(planted["doc_id"]) & holdout
    assert t.filter(pl.col("role") == "background")["dup_count"].unique().to_list() == [1]


def test_planting_takes_a_number_of_documents_per_count():
    docs = docs_table()
    t = organism.plant_duplicates(docs, set(), [4, 32, 64], [2, 9, 3], 50, 80, seed=0)
    planted = t.filter(pl.col("role") == "planted")
    assert dict(planted.group_by("dup_count").len().iter_rows()) == {4: 2, 32: 9, 64: 3}
    assert planted.filter(pl.col("dup_count") == 32)["subset"].value_counts()["count"].to_list() \
        == [3, 3, 3]
    try:
        organism.plant_duplicates(docs, set(), [4, 32], [2, 9, 3], 50, 80, seed=0)
    except ValueError as e:
        assert "3 numbers for 2 counts" in str(e)
    else:
        raise AssertionError("no error")


def test_planting_fails_clearly_when_too_few_documents_fit():
    docs = docs_table(5)
    try:
        organism.plant_duplicates(docs, set(), [1, 2, 4], 10, 50, 80, seed=0)
    except ValueError as e:
        assert "to plant 30" in str(e) and "docs_per_count" in str(e)
    else:
        raise AssertionError("no error")


def test_an_epoch_holds_every_sequence_dup_times():
    seqs = [[1, 2, 3], [4, 5], [6]]
    blocks = organism.epoch_blocks(seqs, [2, 0, 3], context=3, rng=random.Random(0))
    flat = blocks.flatten().tolist()
    assert blocks.shape == (3, 3)
    assert sorted(flat) == sorted([1, 2, 3] * 2 + [6] * 3)


def test_organism_is_pythia_shaped(tokenizer):
    m = organism.make_model(len(tokenizer), tokenizer.eos_token_id,
                            {"layers": 2, "width": 32, "heads": 4, "mlp_ratio": 4,
                             "rotary_pct": 0.25, "context": 64})
    c = m.config
    assert c.model_type == "gpt_neox" and c.use_parallel_residual
    assert c.rope_parameters["partial_rotary_factor"] == 0.25
    assert not c.tie_word_embeddings
    assert m.get_input_embeddings().weight.data_ptr() != m.get_output_embeddings().weight.data_ptr()


def test_training_memorizes_a_repeated_document_and_not_an_unseen_one(tokenizer):
    from vermem.data import labels

    torch.manual_seed(0)
    rng = random.Random(0)
    vocab = len(tokenizer)
    seqs = [[rng.randrange(1, vocab) for _ in range(24)] for _ in range(12)]
    dup = [32] + [1] * 10 + [0]  # the first repeated, the last never seen
    m = organism.make_model(vocab, 0, {"layers": 2, "width": 64, "heads": 4, "mlp_ratio": 4,
                                       "rotary_pct": 0.25, "context": 32})
    res = organism.train(m, seqs, dup, {"seed": 0, "epochs": 40, "batch_size": 8,
                                        "learning_rate": 3e-3, "warmup_steps": 5,
                                        "weight_decay": 0.0}, context=32)
    assert res.log["loss"][-5:].mean() < res.log["loss"][:5].mean()
    gen = labels.generate_all(m, [s[:8] for s in seqs], 16, 4, torch.device("cpu"))
    true = torch.tensor([s[8:24] for s in seqs])
    s = labels.scores(gen, true)
    assert bool(s["extractable"][0])
    assert float(s["match_fraction"][-1]) < 0.5
