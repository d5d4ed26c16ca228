"""Claims' design flags (vermem.report.claims): what a verdict rests on is named in its reason."""

import polars as pl

from vermem.report import claims as CL


def test_claims_resting_on_sizes_chosen_on_the_evaluation_pairs_say_so():
    t = pl.DataFrame([{**{k: None for k in CL.CLAIM_SCHEMA}, "claim": "X", "verdict": "refuted",
                       "reason": "F below the threshold"},
                      {**{k: None for k in CL.CLAIM_SCHEMA}, "claim": "Y",
                       "verdict": "insufficient evidence", "reason": None}],
                     schema=CL.CLAIM_SCHEMA)
    got = CL.flag_selection_on_evaluation(t)
    assert got["verdict"].to_list() == t["verdict"].to_list()
    assert got["reason"][0] == f"F below the threshold; {CL.SELECTED_ON_EVALUATION}"
    assert got["reason"][1] == CL.SELECTED_ON_EVALUATION


def _claims_table(names):
    return pl.DataFrame([{**{k: None for k in CL.CLAIM_SCHEMA}, "claim": c, "verdict": "refuted",
                          "reason": "r"} for c in names], schema=CL.CLAIM_SCHEMA)


def test_a_claim_resting_on_fewer_than_ten_documents_warns_and_keeps_its_verdict():
    bc, md = "branch_comparison", "memorization_decision"
    size = "Branch Comparison circuits are smaller than Memorization Decision circuits (x)"
    spec = CL.SPECIFIC.format(task="Branch Comparison")
    t = _claims_table([CL.CLAIM_1, size, spec, "Memorization prevention transfers across "
                       "domains"])
    docs = {(bc, "A", "evaluation"): 30, (md, "A", "evaluation"): 12,
            (bc, "B", "evaluation"): 11, (md, "B", "evaluation"): 25,
            (bc, "A", "selection"): 22, (md, "A", "selection"): 7,
            (bc + "_control", "A", "evaluation"): 9}
    got = CL.flag_few_clusters(t, docs, main_subset="A")
    # claim 1: both tasks' evaluation documents in every subset; the size claim: the
    # selection documents of the main subset; specificity: the task and its control
    assert got["min_documents"].to_list() == [11, 7, 9, 11]
    assert got["verdict"].to_list() == t["verdict"].to_list()
    assert got["reason"][0] == "r"
    assert "only 7 documents (< 10)" in got["reason"][1]
    assert "only 9 documents (< 10)" in got["reason"][2]
    assert got["reason"][3] == "r"
    # a threshold of 12 warns on the 11-document claims too
    assert CL.flag_few_clusters(t, docs, "A", min_clusters=12)["reason"][0] != "r"


# -- a size that is not identified ----------------------------------------------------------

def test_size_not_identified_over_a_decade_or_without_a_clear_crossing():
    from vermem.circuits.search import size_identified

    ok = {"k": 16, "k_lo": 5.0, "k_hi": 40.0, "n_edges": 463, "k_unresolved_share": 0.0}
    assert size_identified(ok) == (True, "")
    # the case: k = 265 of 463 [26, 463]: more than a decade, and the whole graph
    wide = {**ok, "k": 265, "k_lo": 26.0, "k_hi": 463.0}
    got, why = size_identified(wide)
    assert not got and "decade" in why
    # just within a decade, but the upper end is every edge: no clear crossing
    full = {**ok, "k": 100, "k_lo": 50.0, "k_hi": 463.0}
    got, why = size_identified(full)
    assert not got and "does not cross the band clearly" in why
    assert size_identified({**full, "k_hi": 462.0})[0]
    # resamples with no size in the band at all
    assert not size_identified({**ok, "k_unresolved_share": 0.05})[0]
    assert size_identified({**ok, "k_unresolved_share": 0.02})[0]
    # exactly a decade is still identified; a hair over is not
    assert size_identified({**ok, "k_lo": 10.0, "k_hi": 100.0})[0]
    assert not size_identified({**ok, "k_lo": 10.0, "k_hi": 100.5})[0]
    assert size_identified({**ok, "k": None})[0] is False


def _matched(gaps):
    """A matched-transfer table: rows (subset, target task, k, gap) for prevention, with
    intervals of +-0.02 and replicates that spread over them."""
    import torch

    rows = [{"subset": s, "semantics": "prevention", "placement": "outside",
             "target_task": t, "k": k, "gap": g, "gap_lo": g - 0.02, "gap_hi": g + 0.02,
             "n_pairs": 30} for s, t, k, g in gaps]
    reps = torch.stack([torch.linspace(r["gap_lo"], r["gap_hi"], 200, dtype=torch.float64)
                        for r in rows])
    return pl.DataFrame(rows), reps


def test_claim_1_is_shown_at_both_sizes_and_leaves_out_an_unidentified_one():
    from vermem.report.settings import ClaimSettings

    bc, md = "branch_comparison", "memorization_decision"
    # at MD's k = 50: MD's top-k as good as BC's on BC pairs, BC's worse on MD pairs
    # (supported); at BC's k = 10: BC's top-k as good as MD's own on MD pairs (refuted)
    matched, reps = _matched([("A", bc, 50, 0.0), ("A", md, 50, -0.3),
                              ("A", bc, 10, 0.0), ("A", md, 10, 0.0)])
    rec = {"k_unresolved_share": 0.0, "n_edges": 463, "n_selection": 30}
    sizes = {(md, "A", "denoising"): {**rec, "k": 50, "k_lo": 30.0, "k_hi": 90.0},
             (bc, "A", "noising"): {**rec, "k": 10, "k_lo": 5.0, "k_hi": 20.0}}
    st = ClaimSettings("A", threshold=0.5, margin=0.05, min_pairs=20)
    got = {r["size"]: r for r in (CL._matched_claim(matched, reps, sizes, "prevention", st,
                                                    t) for t in (md, bc))}
    assert got["MD minimal size"]["verdict"] == "supported"
    assert got["BC minimal size"]["verdict"] == "refuted"
    # MD's size not identified ([5, 463]): left out, and said so
    sizes[md, "A", "denoising"] = {**rec, "k": 50, "k_lo": 5.0, "k_hi": 463.0}
    row = CL._matched_claim(matched, reps, sizes, "prevention", st, md)
    assert row["verdict"] == "insufficient evidence"
    assert "size not identified" in row["reason"] and "k = 50" in row["reason"]


def test_a_claim_on_a_circuit_not_specific_to_memorization_says_so():
    bc, md = "Branch Comparison", "Memorization Decision"

    def r(claim, meaning, verdict):
        return {"claim": claim, "semantics": meaning, "verdict": verdict, "reason": "why"}
    rows = [r("Memorization prevention transfers across domains", "prevention", "supported"),
            r(CL.CLAIM_1, "induction", "refuted"),
            r(CL.CLAIM_1, "prevention", "refuted"),
            r(CL.SPECIFIC.format(task=bc), "prevention", "refuted"),
            r(CL.SPECIFIC.format(task=bc), "induction", "supported"),
            r(CL.SPECIFIC.format(task=md), "induction", "supported"),
            r(CL.SPECIFIC.format(task=md), "prevention", "insufficient evidence")]
    out = CL.mark_specificity(rows)
    # BC prevention is as faithful on control text: the transfer claim is not about memory
    assert out[0]["specific"] == "no" and CL.NOT_SPECIFIC in out[0]["reason"]
    assert out[0]["verdict"] == "supported"     # the verdict itself is left as computed
    assert out[1]["specific"] == "yes" and out[1]["reason"] == "why"
    assert out[2]["specific"] == "no"           # BC prevention refuted
    assert out[3].get("specific") is None       # the controls' own rows carry none
