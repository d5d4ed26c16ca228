"""The claims of Lasy et al. (docs/study-a.md §11) against this run's own numbers, each with
its test, n, estimate and reference with intervals, random circuits of the same size and a
three-way verdict (`supported`, `refuted`, `insufficient evidence` with the reason).
"""

from __future__ import annotations

import polars as pl

from .circuits import BRANCH, DECISION, _nan_none, direction_for
from .stats import NONE, Estimate, combine

CLAIM_SCHEMA = {
    "claim": pl.String, "semantics": pl.String, "test": pl.String, "placement": pl.String,
    "n_pairs": pl.Int32, "estimate": pl.Float64, "estimate_lo": pl.Float64,
    "estimate_hi": pl.Float64, "reference": pl.Float64, "reference_lo": pl.Float64,
    "reference_hi": pl.Float64, "random_faithfulness": pl.Float64, "threshold": pl.Float64,
    "margin": pl.Float64, "verdict": pl.String, "reason": pl.String, "evidence": pl.String,
}
VERDICTS = ("supported", "refuted", "insufficient evidence")


def _cells(t: pl.DataFrame, level: float) -> Estimate:
    """The mean faithfulness of transfer cells (one per target subset) with its interval."""
    parts = [Estimate(_nan_none(r["faithfulness"]), _nan_none(r["faithfulness_lo"]),
                      _nan_none(r["faithfulness_hi"]), int(r["n_pairs"]),
                      _nan_none(r["random_faithfulness"])) for r in t.iter_rows(named=True)]
    return combine(parts, level)


def _fmt(e: Estimate) -> str:
    if e.missing:
        return "n/a"
    return f"{e.value:.3f} [{e.lo:.3f}, {e.hi:.3f}] (n = {e.n})"


def _threshold_verdict(e: Estimate, threshold: float, margin: float, min_pairs: int,
                       what: str) -> tuple[str, str]:
    """'what transfers': F >= threshold, better than random circuits by the margin."""
    if e.missing:
        return "insufficient evidence", f"no data for {what}"
    if e.n < min_pairs:
        return "insufficient evidence", f"too few pairs: n = {e.n} < {min_pairs}"
    if e.hi < threshold:
        return "refuted", f"{what}: upper bound {e.hi:.3f} < {threshold}"
    if e.lo < threshold:
        return "insufficient evidence", f"{what}: interval crosses the threshold {threshold}"
    if e.random is not None and not e.lo > e.random + margin:
        return "insufficient evidence", (f"{what}: circuit not better than random "
                                         f"(lower bound {e.lo:.3f} <= random {e.random:.3f}"
                                         f" + margin {margin})")
    return "supported", f"{what}: lower bound {e.lo:.3f} >= {threshold}, above random"


def claims(transfer_df: pl.DataFrame, sizes: dict[tuple[str, str, str], dict],
           main_subset: str, threshold: float, margin: float = 0.0, min_pairs: int = 20,
           level: float = 0.95, placement: str = "outside") -> pl.DataFrame:
    """The paper's claims (docs/study-a.md §11) checked against this run's own results.

    transfer_df: `transfer`'s table (cells of `placement` are read); sizes: (task, subset,
    direction) -> the minimal-circuit record of the paper's mode (keys k, k_lo, k_hi,
    n_selection, n_edges, faithfulness, random_faithfulness, n_pairs); threshold: the F at
    which a circuit counts as transferring; margin: how much a circuit must beat random
    circuits of its size, and a difference must exceed, to count; min_pairs: fewer
    evaluation pairs than this support no verdict.

    Verdicts: `supported` when the interval clears the threshold (or margin) on the
    claim's side and the circuit beats random ones; `refuted` when the interval lies on
    the other side; `insufficient evidence` otherwise, with the reason (no data, too few
    pairs, interval crosses the threshold, circuit not better than random). Directions
    are compared by meaning (`SEMANTICS`): prevention with prevention, induction with
    induction, whatever each task calls them."""
    rows = []
    t = transfer_df.filter(pl.col("placement") == placement) if transfer_df.height else \
        transfer_df

    def add(claim, meaning, test, a: Estimate, b: Estimate | None, verdict, evidence):
        rows.append({"claim": claim, "semantics": meaning, "test": test,
                     "placement": placement, "n_pairs": a.n if b is None else min(a.n, b.n),
                     "estimate": a.value, "estimate_lo": a.lo, "estimate_hi": a.hi,
                     "reference": None if b is None else b.value,
                     "reference_lo": None if b is None else b.lo,
                     "reference_hi": None if b is None else b.hi,
                     "random_faithfulness": a.random, "threshold": threshold,
                     "margin": margin, "verdict": verdict[0], "reason": verdict[1],
                     "evidence": evidence})

    def sel(**eq):
        if not t.height:
            return t
        cond = pl.lit(True)
        for k, v in eq.items():
            cond = cond & (pl.col(k) == v)
        return t.filter(cond)

    for meaning in ("prevention", "induction"):
        a = _cells(sel(relation="cross-task", source_task=DECISION, semantics=meaning), level)
        b = _cells(sel(relation="cross-task", source_task=BRANCH, semantics=meaning), level)
        va = _threshold_verdict(a, threshold, margin, min_pairs, "MD circuit on BC pairs")
        if va[0] == "supported":
            if b.missing or b.n < min_pairs:
                verdict = ("insufficient evidence", "no data or too few pairs for the reverse")
            elif b.lo >= threshold:
                verdict = ("refuted", f"the reverse also transfers: BC circuit on MD pairs, "
                                      f"lower bound {b.lo:.3f} >= {threshold}")
            elif b.hi >= threshold:
                verdict = ("insufficient evidence", "the reverse's interval crosses the "
                                                    f"threshold {threshold}")
            else:
                verdict = ("supported", va[1] + f"; reverse upper bound {b.hi:.3f} < "
                                                 f"{threshold}")
        else:
            verdict = va
        add("Memorization Decision circuits also work on Branch Comparison, not the reverse",
            meaning, f"F(MD circuit on BC pairs) >= {threshold} > F(BC circuit on MD pairs),"
            f" same subset, same meaning ({meaning}), mean over subsets", a, b, verdict,
            f"MD->BC = {_fmt(a)}, BC->MD = {_fmt(b)}, random at the same size = "
            + ("n/a" if a.random is None else f"{a.random:.3f}"))

    dom = {}
    for meaning in ("prevention", "induction"):
        d = sel(source_task=BRANCH, target_task=BRANCH, source_subset=main_subset,
                semantics=meaning)
        own = _cells(d.filter(pl.col("relation") == "in-domain") if d.height else d, level)
        other = _cells(d.filter(pl.col("relation") == "cross-domain") if d.height else d,
                       level)
        dom[meaning] = (own, other)
    own, other = dom["prevention"]
    add("Memorization prevention transfers across domains", "prevention",
        f"F of the {main_subset} Branch Comparison circuit (noising = prevention) on the "
        f"other subsets >= {threshold}, better than random by {margin}", other, None,
        _threshold_verdict(other, threshold, margin, min_pairs, "cross-domain prevention"),
        f"in-domain = {_fmt(own)}, cross-domain = {_fmt(other)}")

    (oi, xi), (op, xp) = dom["induction"], dom["prevention"]
    drop = combine([oi, xi, op, xp], level, [1, -1, -1, 1])
    drop.random = None
    if drop.missing:
        verdict = ("insufficient evidence", "no data for a drop")
    elif drop.n < min_pairs:
        verdict = ("insufficient evidence", f"too few pairs: n = {drop.n} < {min_pairs}")
    elif drop.lo > margin:
        verdict = ("supported", f"difference of drops > margin {margin} (lower bound "
                                f"{drop.lo:.3f})")
    elif drop.hi <= margin:
        verdict = ("refuted", f"difference of drops <= margin {margin} (upper bound "
                              f"{drop.hi:.3f})")
    else:
        verdict = ("insufficient evidence", f"interval crosses the margin {margin}")
    add("Induction (de-noising in Branch Comparison) is more context-dependent than "
        "prevention", "both",
        f"(F in-domain - F cross-domain) of induction minus that of prevention > {margin}"
        " (Branch Comparison circuits; normal approximation from the cells' intervals)",
        drop, None, verdict, f"induction: in-domain {_fmt(oi)}, cross-domain {_fmt(xi)}; "
        f"prevention: in-domain {_fmt(op)}, cross-domain {_fmt(xp)}")

    for meaning in ("prevention", "induction"):
        recs = {task: sizes.get((task, main_subset, direction_for(task, meaning)))
                for task in (BRANCH, DECISION)}

        def size(rec):
            if rec is None or rec.get("k") is None or rec.get("k_lo") is None:
                return NONE
            return Estimate(float(rec["k"]), rec["k_lo"], rec["k_hi"],
                            int(rec.get("n_selection", 0)), rec.get("random_faithfulness"))

        bc, md = size(recs[BRANCH]), size(recs[DECISION])
        if bc.missing or md.missing:
            verdict = ("insufficient evidence", "no circuit in the target band for "
                       + " and ".join(t_ for t_ in (BRANCH, DECISION)
                                      if size(recs[t_]).missing))
        elif min(bc.n, md.n) < min_pairs:
            verdict = ("insufficient evidence",
                       f"too few selection pairs: n = {min(bc.n, md.n)} < {min_pairs}")
        else:
            weak = [t_ for t_ in (BRANCH, DECISION)
                    if (recs[t_].get("faithfulness_lo") is None
                        or recs[t_].get("random_faithfulness") is None
                        or not recs[t_]["faithfulness_lo"]
                        > recs[t_]["random_faithfulness"] + margin)]
            if weak:
                verdict = ("insufficient evidence", "circuit not better than random on the "
                           "evaluation pairs: " + ", ".join(weak))
            elif bc.hi < md.lo:
                verdict = ("supported", "BC size interval below MD's")
            elif bc.lo >= md.hi:
                verdict = ("refuted", "BC size interval at or above MD's")
            else:
                verdict = ("insufficient evidence", "size intervals overlap")

        def desc(rec):
            if rec is None or rec.get("k") is None:
                return "n/a"
            return (f"{rec['k']} edges ({100 * rec['k'] / rec['n_edges']:.2f}%), "
                    f"[{rec['k_lo']}, {rec['k_hi']}], F(eval) = "
                    f"{rec.get('faithfulness')}, random {rec.get('random_faithfulness')}")

        add("Branch Comparison circuits are smaller than Memorization Decision circuits "
            "(GPT-Neo-125M: 14 vs 141 edges)", meaning,
            f"minimal sizes on {main_subset} ({meaning}; chosen on the selection pairs, "
            f"bootstrap intervals): BC < MD", bc, md, verdict,
            f"BC = {desc(recs[BRANCH])}; MD = {desc(recs[DECISION])}")
    return pl.DataFrame(rows, schema=CLAIM_SCHEMA)
