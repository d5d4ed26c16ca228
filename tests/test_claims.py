"""Claims' design flags (vermem.claims): what a verdict rests on is named in its reason."""

import polars as pl

from vermem import claims as CL


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
