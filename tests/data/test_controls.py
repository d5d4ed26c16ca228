"""Control pair sets (vermem.data.contrastive.control_pairs) on a model whose greedy token is known:
the successor model predicts token t + 1 after t, so its greedy misses on a text are exactly
the positions where the text does not count up."""

from types import SimpleNamespace

import polars as pl
import torch
from torch import nn

from vermem.data import contrastive as P
from vermem.data.settings import PairSettings

V = 64


class Successor(nn.Module):
    """Greedy next token = (last token + 1) mod V; hidden state = one-hot of the token."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, output_hidden_states=False, **_):
        logits = torch.full((*input_ids.shape, V), -5.0)
        logits.scatter_(2, ((input_ids + 1) % V)[..., None], 5.0)
        h = nn.functional.one_hot(input_ids, V).float()
        return SimpleNamespace(logits=logits + 0 * self.dummy, hidden_states=(h, h))


def counting(start, n, breaks=()):
    """A text that counts up from `start`, jumping by 10 at the positions in `breaks`."""
    out, x = [], start
    for t in range(n):
        if t in breaks:
            x += 10
        out.append(x % V)
        x += 1
    return out


def labels_table(rows):
    """rows: (doc_id, subset, label, dup_count, full) with a 6-token prefix."""
    return pl.DataFrame(
        [{"doc_id": d, "offset": 0, "subset": s, "label": lab, "dup_count": dup,
          "prefix": f[:6], "continuation": f[6:]} for d, s, lab, dup, f in rows],
        schema={"doc_id": pl.String, "offset": pl.Int32, "subset": pl.String,
                "label": pl.String, "dup_count": pl.Int32, "prefix": pl.List(pl.Int32),
                "continuation": pl.List(pl.Int32)})


def memorized_pairs(rows):
    return pl.DataFrame([{"task": t, "subset": s, "doc_id": d, "offset": 0, "d": dd,
                          "answer": 0} for t, s, d, dd in rows])


def nonmem_of(labels):
    return (labels.filter(pl.col("label") == "non-memorized")
            .select("doc_id", "offset", "subset",
                    pl.concat_list("prefix", "continuation").alias("full")))


def test_branch_control_is_the_branch_construction_at_a_greedy_miss_at_the_same_d():
    model = Successor()
    labels = labels_table([
        ("u1", "W", "non-memorized", 0, counting(1, 12, breaks=(4,))),   # misses at d = 4
        ("u2", "W", "non-memorized", 1, counting(20, 12, breaks=(3, 7))),  # at 3 and 7
        ("seen-often", "W", "non-memorized", 32, counting(30, 12, breaks=(4,))),  # excluded
        ("mem", "W", "memorized", 1, counting(40, 12, breaks=(4,))),      # excluded
    ])
    parts = {d: "evaluation" for d in ["u1", "u2", "seen-often", "mem", "m1", "m2"]}
    mem = memorized_pairs([(P.BRANCH, "W", "m1", 4), (P.BRANCH, "W", "m2", 7)])
    pairs, drops, _ = P.control_pairs(model, mem, labels, nonmem_of(labels), parts,
                                      PairSettings(batch_size=4, seed=0))
    bc = pairs.filter(pl.col("task") == P.control_task(P.BRANCH)).sort("d")
    assert bc["d"].to_list() == [4, 7]          # the memorized pairs' d, one each
    assert set(bc["doc_id"]) == {"u1", "u2"}    # never a memorized or often-seen document
    for r in bc.iter_rows(named=True):
        full = labels.filter(pl.col("doc_id") == r["doc_id"]).select(
            pl.concat_list("prefix", "continuation")).item().to_list()
        d = r["d"]
        g0 = (full[d - 1] + 1) % V              # the successor's token: not the text's
        assert g0 != full[d]
        assert r["clean"] == full[:d] + [full[d]] and r["corrupt"] == full[:d] + [g0]
        assert (r["answer"], r["wrong"]) == (full[d + 1], (g0 + 1) % V)
    assert not [k for k in drops if k[0] == P.control_task(P.BRANCH)]


def test_decision_control_has_two_non_memorized_starts_and_keeps_the_part():
    model = Successor()
    h = counting(1, 12, breaks=(5,))      # greedy after h[:5] is h[4] + 1, the text jumps
    target = h[5]
    c_good = counting(target - 5, 12)      # counts up into the target: greedy says it at 5
    c_other_part = list(c_good)
    labels = labels_table([
        ("h", "W", "non-memorized", 0, h),
        ("c", "W", "non-memorized", 1, c_good),
        ("c2", "W", "non-memorized", 1, c_other_part),
    ])
    parts = {"h": "evaluation", "c": "evaluation", "c2": "selection", "m": "evaluation"}
    mem = memorized_pairs([(P.DECISION, "W", "m", 5)])
    pairs, drops, _ = P.control_pairs(model, mem, labels, nonmem_of(labels), parts,
                                      PairSettings(batch_size=4, seed=0))
    md = pairs.filter(pl.col("task") == P.control_task(P.DECISION))
    assert md.height == 1, drops
    r = md.row(0, named=True)
    assert (r["doc_id"], r["corrupt_doc_id"], r["d"]) == ("h", "c", 5)
    assert r["clean"] == h[:5] and r["corrupt"] == c_good[:5]
    assert (r["answer"], r["wrong"]) == ((h[4] + 1) % V, target)


def test_an_unmatched_memorized_pair_is_counted_not_dropped_silently():
    model = Successor()
    labels = labels_table([("u", "W", "non-memorized", 0, counting(1, 12))])  # never misses
    mem = memorized_pairs([(P.BRANCH, "W", "m", 4)])
    pairs, drops, _ = P.control_pairs(model, mem, labels, nonmem_of(labels),
                                      {"u": "evaluation", "m": "evaluation"},
                                      PairSettings(batch_size=4, seed=0))
    assert pairs.height == 0
    assert drops == {(P.control_task(P.BRANCH), "W",
                      "no non-memorized sample with a greedy miss at d"): 1}


def test_match_positions_fills_every_target_before_giving_backups():
    fulls = [counting(1, 10, breaks=(3,)), counting(1, 10, breaks=(3,)),
             counting(1, 10, breaks=(6,))]
    pred = torch.tensor([[(t + 1) % V for t in f] for f in fulls])
    cands = P.match_positions([3, 6], fulls, pred, per_target=2)
    assert cands == [[0, 1], [2]]


def test_one_pass_gives_the_memorized_decision_pairs_unchanged_and_controls_at_their_d():
    model = Successor()
    h_mem = counting(1, 12, breaks=(5,))           # a memorized sample diverging at 5
    target = h_mem[5]
    h_ctl = counting(30, 12, breaks=(5,))          # a non-memorized one missing at 5
    rows = [("c", "W", "non-memorized", 1, counting(target - 5, 12)),   # corrupt for h_mem
            ("c2", "W", "non-memorized", 1, counting(h_ctl[5] - 5, 12)),  # for h_ctl
            ("u", "W", "non-memorized", 0, h_ctl)]
    labels = labels_table(rows)
    nonmem = nonmem_of(labels)
    parts = {d: "evaluation" for d in ["m", "c", "c2", "u"]}
    div = pl.DataFrame([{"doc_id": "m", "offset": 0, "subset": "W", "full": h_mem, "d": 5,
                         "generation": [0]}],
                       schema={"doc_id": pl.String, "offset": pl.Int32, "subset": pl.String,
                               "full": pl.List(pl.Int32), "d": pl.Int32,
                               "generation": pl.List(pl.Int32)})
    alone, alone_drops = P.decision_pairs(model, div, nonmem, 4, True, parts)
    ctl, drops, (md, md_drops) = P.control_pairs(model, P.branch_pairs(div)[0], labels,
                                                 nonmem, parts,
                                                 PairSettings(batch_size=4, seed=0), None, div)
    assert md.sort("doc_id").equals(alone.sort("doc_id")) and md_drops == alone_drops
    mdc = ctl.filter(pl.col("task") == P.control_task(P.DECISION))
    assert mdc["doc_id"].to_list() == ["u"] and mdc["d"].to_list() == md["d"].to_list()
    assert mdc["corrupt_doc_id"].to_list() == ["c2"]
