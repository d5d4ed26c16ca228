import polars as pl
import pytest
import torch

from vermem.data import labels


def test_scores_on_known_generations():
    true = torch.tensor([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]])
    gen = torch.tensor([[1, 2, 3, 4], [1, 2, 9, 4], [9, 2, 3, 4]])
    s = labels.scores(gen, true)
    assert s["match_fraction"].tolist() == [1.0, 0.75, 0.75]
    assert s["exact_prefix"].tolist() == [4, 2, 0]
    assert s["extractable"].tolist() == [True, False, False]


def naive_greedy(model, prompt, n):
    """No cache, no batch: the definition."""
    ids = list(prompt)
    for _ in range(n):
        with torch.no_grad():
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt):]


def test_batched_cached_greedy_equals_one_at_a_time_recompute(tiny_model):
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(1, 300, (7, 10), generator=g)
    batched = labels.generate_all(tiny_model, prompts.tolist(), 12, batch_size=3,
                                  device=torch.device("cpu"))
    for p, b in zip(prompts.tolist(), batched.tolist(), strict=True):
        assert b == naive_greedy(tiny_model, p, 12)


def test_labels_follow_per_subset_thresholds():
    samples = pl.DataFrame({"subset": ["W", "W", "G", "G", "G"],
                            "continuation": [[1, 2, 3, 4]] * 5,
                            "dup_count": [None] * 5},
                           schema_overrides={"dup_count": pl.Int32})
    gen = torch.tensor([[1, 2, 3, 4], [1, 2, 3, 9], [1, 2, 3, 9], [1, 9, 9, 9], [9, 9, 9, 9]])
    thr = {"default": {"high": 0.75, "low": 0.0}, "per_subset": {"W": {"high": 1.0, "low": 0.0}}}
    df = labels.label_samples(samples, gen, "match_fraction", thr, 4)
    assert df["label"].to_list() == ["memorized", "ambiguous", "memorized", "ambiguous",
                                     "non-memorized"]
    by_prefix = labels.label_samples(samples, gen, "exact_prefix", thr, 4)
    assert by_prefix["label"].to_list()[2] == "memorized"
    assert by_prefix["label"].to_list()[3] == "ambiguous"


def test_summary_counts_labels_and_rates_per_duplicate_count():
    df = pl.DataFrame({"subset": ["A", "A", "B", "B"], "label": ["memorized", "non-memorized",
                                                               "memorized", "memorized"],
                       "dup_count": [64, 0, 64, 1], "extractable": [True, False, True, False],
                       "match_fraction": [1.0, 0.0, 1.0, 0.5]},
                      schema_overrides={"dup_count": pl.Int32})
    s = labels.summarize(df, ["A", "B", "C"])
    assert s["labels_per_subset"] == {  # every label and subset, n = 0 said, not left out
        "A": {"memorized": 1, "ambiguous": 0, "non-memorized": 1},
        "B": {"memorized": 2, "ambiguous": 0, "non-memorized": 0},
        "C": {"memorized": 0, "ambiguous": 0, "non-memorized": 0}}
    assert s["by_dup_count"] == [
        {"dup_count": 0, "n": 1, "extractable_share": 0.0, "mean_match_fraction": 0.0},
        {"dup_count": 1, "n": 1, "extractable_share": 0.0, "mean_match_fraction": 0.5},
        {"dup_count": 64, "n": 2, "extractable_share": 1.0, "mean_match_fraction": 1.0}]


@pytest.mark.parametrize("score", labels.SCORES)
def test_every_score_is_selectable(score):
    samples = pl.DataFrame({"subset": ["A"], "continuation": [[1, 2]], "dup_count": [None]},
                           schema_overrides={"dup_count": pl.Int32})
    df = labels.label_samples(samples, torch.tensor([[1, 2]]), score,
                              {"default": {"high": 1.0, "low": 0.0}}, 2)
    assert df["label"].item() == "memorized"
