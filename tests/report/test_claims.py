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
