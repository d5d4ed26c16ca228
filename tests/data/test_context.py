import polars as pl
import pytest
import torch

from vermem.core import stats
from vermem.data import context


def test_distant_replacement_keeps_length_and_the_last_r_tokens():
    prompt, source = list(range(10, 20)), list(range(100, 132))
    got = context.distant_replace(prompt, source, 3)
    assert len(got) == len(prompt)
    assert got[-3:] == prompt[-3:] and got[:7] == source[:7]  # same positions as the source
    assert context.distant_replace(prompt, source, 10) == prompt  # r clipped: nothing replaced
    assert context.truncate(prompt, 3) == prompt[-3:]
    with pytest.raises(ValueError):
        context.distant_replace(prompt, source[:2], 3)


def test_sources_come_from_another_document_of_the_same_subset_and_part():
    pool = pl.DataFrame({"doc_id": ["a", "b", "c", "d"], "offset": [0, 0, 0, 0],
                         "subset": ["S", "S", "S", "T"], "full": [[1], [2], [3], [4]]})
    parts = {"a": "attribution", "b": "attribution", "c": "evaluation", "d": "attribution",
             "x": "attribution", "y": "evaluation"}
    rows = pl.DataFrame({"doc_id": ["a", "x", "y", "x"], "offset": [0, 0, 0, 8],
                         "subset": ["S", "S", "S", "T"]})
    picks, missing = context.sources(rows, pool, parts, seed=0)
    docs = [None if p is None else pool["doc_id"][p] for p in picks]
    assert docs[0] == "b"                  # a's only other document of S, attribution
    assert docs[1] in {"a", "b"}
    assert docs[2] == "c"                  # the only S document in evaluation
    assert docs[3] == "d"
    assert not missing
    picks, missing = context.sources(rows.head(1), pool.head(1), parts, seed=0)
    assert picks == [None] and missing == {"S": 1}  # its own document is never a source


def table(mem_hits, ctl_hits):
    rows = []
    for group, hits in (("memorized", mem_hits), ("control", ctl_hits)):
        for i, h in enumerate(hits):
            for mode, r, hit in (("clean", None, True), ("replace", 1, h[0]),
                                 ("replace", 4, h[1])):
                rows.append({"group": group, "mode": mode, "r": r, "subset": "S",
                             "doc_id": f"{group}{i // 2}", "target_top1": hit,
                             "clean_top1": hit, "text_run": int(hit), "clean_run": int(hit)})
    return pl.DataFrame(rows, schema_overrides={"r": pl.Int32})


def test_curves_give_group_means_a_joint_difference_and_the_rule_for_r():
    t = table([(False, True)] * 6 + [(False, False)] * 2, [(False, False)] * 8)
    docs = {"S": t["doc_id"].unique().to_list()}
    curve = context.curves(t, stats.Resampler(stats.Bootstrap(200, 0, 0.95), docs))
    top = curve.filter(pl.col("measure") == "target_top1")

    def cell(group, mode, r):
        g = top.filter((pl.col("group") == group) & (pl.col("mode") == mode))
        return g.filter(pl.col("r").is_null() if r is None else pl.col("r") == r).row(
            0, named=True)

    assert cell("memorized", "replace", 4)["mean"] == pytest.approx(0.75)
    assert cell("control", "replace", 4)["mean"] == 0.0
    diff = cell("difference", "replace", 4)
    assert diff["mean"] == pytest.approx(0.75) and 0 < diff["low"] <= 0.75 <= diff["high"] <= 1
    assert cell("memorized", "clean", None)["mean"] == 1.0
    # the rule: the largest r at which replacement leaves at most half the clean rate
    assert context.suggested_r(curve) == 1
    s = context.summary(curve, 4, {})
    assert s["suggested_r"] == 1 and s["supported"] is False
    assert s["memorized_top1_at_distant_r"] == pytest.approx(0.75)


def test_measure_on_a_model_that_copies_the_first_token():
    class FirstToken(torch.nn.Module):  # predicts the prompt's first token, every position
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, past_key_values=None, use_cache=False, **_):
            first = input_ids[:, :1] if past_key_values is None else past_key_values
            logits = torch.nn.functional.one_hot(first.expand_as(input_ids), 50).float()
            return type("Out", (), {"logits": logits, "past_key_values": first})()

    full = [7] + list(range(20, 40))
    rows = pl.DataFrame({"task": "branch_comparison", "group": "memorized", "subset": "S",
                         "doc_id": "a", "offset": 0, "d": 5, "split": "evaluation",
                         "prompt": [full[:6]], "target": [7], "full": [[7] * 21]},
                        schema_overrides={"offset": pl.Int32, "d": pl.Int32})
    t = context.measure(FirstToken(), rows, [[9] * 21], [1, 8], n_new=4, batch_size=2)
    by = {(m, r): x for m, r, x in t.select("mode", "r", "target_top1").rows()}
    assert by["clean", None] and by["replace", 8]    # r = 8 >= length: nothing replaced
    assert not by["replace", 1] and not by["truncate", 1]  # the first token is gone
    runs = {(m, r): x for m, r, x in t.select("mode", "r", "text_run").rows()}
    assert runs["clean", None] == 4 and runs["replace", 1] == 0
