"""The claims of Lasy et al. (docs/study-a.md §11) against this run's own numbers, each with
its test, n, estimate and reference with intervals, random circuits of the same size and a
three-way verdict (`supported`, `refuted`, `insufficient evidence` with the reason), and the
controls' claim that each memorization circuit is specific to memorization.

Every claim that combines cells (a mean over subsets, a difference of drops, a size-matched
gap) takes its interval from the same combination of the cells' bootstrap replicates (the
run's shared `stats.Resampler` draws), so correlated cells are resampled jointly; no normal
approximation is used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
import torch

from vermem.circuits.search import size_identified
from vermem.circuits.transfer import direction_for
from vermem.core.stats import NONE, Estimate, combine, nan_to_none
from vermem.core.vocabulary import BRANCH, DECISION, MEANINGS, VERDICTS, control_task
from vermem.report.settings import ClaimSettings

ROW = "_row"  # a table's row index, to find each row's replicates

CLAIM_SCHEMA = {
    "claim": pl.String, "semantics": pl.String, "test": pl.String, "placement": pl.String,
    "n_pairs": pl.Int32, "estimate": pl.Float64, "estimate_lo": pl.Float64,
    "estimate_hi": pl.Float64, "reference": pl.Float64, "reference_lo": pl.Float64,
    "reference_hi": pl.Float64, "random_faithfulness": pl.Float64, "threshold": pl.Float64,
    "margin": pl.Float64, "verdict": pl.String, "reason": pl.String, "evidence": pl.String,
    "size": pl.String, "specific": pl.String,
}
# `size`: claim 1's rows, at whose minimal size the tasks are compared; `specific`: whether
# the circuits a claim rests on are specific to memorization (the controls' rows, where the
# run has them): "yes" (every one supported), "no" (some refuted), "not shown" (otherwise)
SELECTED_ON_EVALUATION = ("circuit sizes were chosen on the evaluation pairs "
                          "(contrastive.split.selection = 0, the authors' design), so F at the "
                          "chosen size is not held out")


def flag_selection_on_evaluation(table: pl.DataFrame) -> pl.DataFrame:
    """Every claim's reason names the design flaw when the sizes it rests on were chosen on
    the pairs it is evaluated on (no selection part); the verdicts are left as computed, for
    comparison with the paper, and must be read with that caveat."""
    return table.with_columns(
        pl.concat_str([pl.col("reason").fill_null(""), pl.lit(f"; {SELECTED_ON_EVALUATION}")])
        .str.strip_prefix("; ").alias("reason"))


MIN_CLUSTERS = 10  # a percentile bootstrap over fewer documents under-covers


def _claim_cells(claim: str, main_subset: str, subsets: Sequence[str]
                 ) -> list[tuple[str, str, str]]:
    """(task, subset, part) of every pair set whose documents a claim's interval resamples."""
    if claim == CLAIM_1:
        return [(t, s, "evaluation") for t in (BRANCH, DECISION) for s in subsets]
    if claim.startswith(("Memorization prevention transfers", "Induction (de-noising")):
        return [(BRANCH, s, "evaluation") for s in subsets]
    if claim.startswith("Branch Comparison circuits are smaller"):
        return [(t, main_subset, "selection") for t in (BRANCH, DECISION)]
    for task in (BRANCH, DECISION):
        if claim == SPECIFIC.format(task=task.replace("_", " ").title()):
            return [(t, main_subset, "evaluation") for t in (task, control_task(task))]
    return []


def flag_few_clusters(table: pl.DataFrame, documents: Mapping[tuple[str, str, str], int],
                      main_subset: str, min_clusters: int = MIN_CLUSTERS) -> pl.DataFrame:
    """`min_documents`: the fewest documents in any pair set a claim's bootstrap resamples
    (documents: (task, subset, part) -> distinct documents of the pairs used there; a cell
    with no entry is left out); a claim resting on fewer than `min_clusters` says so in its
    reason (a percentile bootstrap over few clusters under-covers). Verdicts are left as
    computed."""
    subsets = sorted({s for _, s, _ in documents})
    least = []
    for claim in table["claim"]:
        counts = [documents[c] for c in _claim_cells(claim, main_subset, subsets)
                  if c in documents]
        least.append(min(counts) if counts else None)
    out = table.with_columns(pl.Series("min_documents", least, dtype=pl.Int32))
    few = pl.col("min_documents").is_not_null() & (pl.col("min_documents") < min_clusters)
    warning = pl.concat_str([pl.lit("warning: the bootstrap resamples only "),
                             pl.col("min_documents").cast(pl.String),
                             pl.lit(f" documents (< {min_clusters}), so its interval may be "
                                    "too narrow")])
    return out.with_columns(
        pl.when(few).then(pl.concat_str([pl.col("reason").fill_null(""), pl.lit("; "),
                                          warning]).str.strip_prefix("; "))
        .otherwise(pl.col("reason")).alias("reason"))


def _cells(t: pl.DataFrame, level: float, reps: torch.Tensor | None = None,
           col: str = "faithfulness") -> Estimate:
    """The mean of `col` over cells (one per target subset) with its interval; `reps`
    [rows, R]: the replicates of the table's rows (by `ROW`)."""
    parts = [Estimate(nan_to_none(r[col]), nan_to_none(r[f"{col}_lo"]), nan_to_none(r[f"{col}_hi"]),
                      int(r["n_pairs"]), nan_to_none(r.get("random_faithfulness")),
                      None if reps is None else reps[r[ROW]])
             for r in t.iter_rows(named=True)]
    return combine(parts, level)


def _indexed(t: pl.DataFrame) -> pl.DataFrame:
    return t.with_row_index(ROW) if ROW not in t.columns else t


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
           settings: ClaimSettings, *, transfer_reps: torch.Tensor | None = None,
           matched: pl.DataFrame | None = None, matched_reps: torch.Tensor | None = None,
           specificity: pl.DataFrame | None = None,
           specificity_reps: torch.Tensor | None = None) -> pl.DataFrame:
    """The paper's claims (docs/study-a.md §11) checked against this run's own results.

    transfer_df: `transfer`'s table (cells of the placement are read); sizes: (task, subset,
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
    induction, whatever each task calls them.

    transfer_reps [rows, R]: replicates of transfer_df's F (row order), needed by every claim
    that combines cells; matched / matched_reps: `circuits.matched_transfer`'s table and the
    replicates of its gaps: claim 1 is decided on them, at matched size (without them, on
    the minimal circuits' transfer cells, whose sizes differ); specificity /
    specificity_reps: `specificity.evaluate`'s rows and replicates (the controls' rows).
    `settings` (ClaimSettings): the threshold, margin, min_pairs, the bootstrap's level, the
    placement and the main subset."""
    main_subset, threshold, margin = settings.main_subset, settings.threshold, settings.margin
    min_pairs, level, placement = settings.min_pairs, settings.level, settings.placement
    rows = []
    t = _indexed(transfer_df)
    t = t.filter(pl.col("placement") == placement) if t.height else t

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

    for meaning in MEANINGS:
        if matched is not None:
            for size_task in (DECISION, BRANCH):  # at each task's minimal size
                rows.append(_matched_claim(matched, matched_reps, sizes, meaning, settings,
                                           size_task))
            continue
        a = _cells(sel(relation="cross-task", source_task=DECISION, semantics=meaning), level,
                   transfer_reps)
        b = _cells(sel(relation="cross-task", source_task=BRANCH, semantics=meaning), level,
                   transfer_reps)
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
    for meaning in MEANINGS:
        d = sel(source_task=BRANCH, target_task=BRANCH, source_subset=main_subset,
                semantics=meaning)
        own = _cells(d.filter(pl.col("relation") == "in-domain") if d.height else d, level,
                     transfer_reps)
        other = _cells(d.filter(pl.col("relation") == "cross-domain") if d.height else d,
                       level, transfer_reps)
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
        " (Branch Comparison circuits; interval from the joint bootstrap of the four cells)",
        drop, None, verdict, f"induction: in-domain {_fmt(oi)}, cross-domain {_fmt(xi)}; "
        f"prevention: in-domain {_fmt(op)}, cross-domain {_fmt(xp)}")

    for meaning in MEANINGS:
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
    if specificity is not None:
        rows += specificity_claims(specificity, specificity_reps, main_subset, margin,
                                   min_pairs, placement, threshold)
        rows = mark_specificity(rows)
    return pl.DataFrame(rows, schema=CLAIM_SCHEMA)


NOT_SPECIFIC = "not specific to memorization"


def _rests_on(claim: str, meaning: str) -> list[tuple[str, str]]:
    """(task, meaning) of the circuits a claim of the paper rests on (none: a controls' row)."""
    both = list(MEANINGS) if meaning == "both" else [meaning]
    if claim == CLAIM_1 or claim.startswith("Branch Comparison circuits are smaller"):
        return [(t, m) for t in (BRANCH, DECISION) for m in both]
    if claim.startswith(("Memorization prevention transfers", "Induction (de-noising")):
        return [(BRANCH, m) for m in (MEANINGS if claim.startswith("Induction") else both)]
    return []


def mark_specificity(rows: list[dict]) -> list[dict]:
    """Each claim of the paper's `specific`: "yes" where every circuit it rests on is shown
    specific to memorization (its controls' row supported), "no" where one is refuted (as
    faithful on non-memorized text), "not shown" otherwise; a claim whose circuits are not
    shown specific says so in its reason, since its verdict then does not support the word
    "memorization"."""
    spec = {}
    for r in rows:
        for task in (BRANCH, DECISION):
            if r["claim"] == SPECIFIC.format(task=task.replace("_", " ").title()):
                spec[task, r["semantics"]] = r["verdict"]
    for r in rows:
        deps = _rests_on(r["claim"], r["semantics"])
        if not deps:
            continue
        verdicts = [spec.get(d) for d in deps]
        if any(v == "refuted" for v in verdicts):
            r["specific"] = "no"
            names = [f"{t.replace('_', ' ')} {m}" for (t, m), v in zip(deps, verdicts,
                                                                     strict=True)
                     if v == "refuted"]
            r["reason"] = (f"{r['reason']}; {NOT_SPECIFIC}: the circuit ({', '.join(names)}) "
                           "is as faithful on non-memorized text")
        elif all(v == "supported" for v in verdicts):
            r["specific"] = "yes"
        else:
            r["specific"] = "not shown"
            r["reason"] = (f"{r['reason']}; specificity to memorization not shown (the "
                           "controls' verdict is not supported)")
    return rows


def _row(claim, meaning, test, placement, a: Estimate, b: Estimate | None, threshold, margin,
         verdict, evidence, size: str | None = None) -> dict:
    return {"claim": claim, "semantics": meaning, "test": test, "placement": placement,
            "n_pairs": a.n if b is None else min(a.n, b.n), "estimate": a.value,
            "estimate_lo": a.lo, "estimate_hi": a.hi,
            "reference": None if b is None else b.value,
            "reference_lo": None if b is None else b.lo,
            "reference_hi": None if b is None else b.hi, "random_faithfulness": a.random,
            "threshold": threshold, "margin": margin, "verdict": verdict[0],
            "reason": verdict[1], "evidence": evidence, "size": size}


CLAIM_1 = "Memorization Decision circuits also work on Branch Comparison, not the reverse"


def _matched_claim(matched: pl.DataFrame, reps: torch.Tensor | None,
                   sizes: Mapping[tuple[str, str, str], dict], meaning: str,
                   settings: ClaimSettings, size_task: str = DECISION) -> dict:
    """Claim 1 at matched size: at k = `size_task`'s minimal circuit's size of each subset
    (Memorization Decision's, or Branch Comparison's: the claim is shown at both), the gap
    F(other task's top-k) - F(own top-k) on Branch Comparison pairs (MD -> BC, a) and on
    Memorization Decision pairs (BC -> MD, b), each averaged over the subsets. A size that
    is not identified (`search.size_identified`) is left out, and said so. Supported when
    a >= -margin and b < -margin with their whole intervals (MD's ranking as good as BC's
    own on BC pairs, BC's worse than MD's own on MD pairs); refuted when a < -margin or
    b >= -margin with their whole intervals; else insufficient."""
    margin, min_pairs, level = settings.margin, settings.min_pairs, settings.level
    placement, threshold = settings.placement, settings.threshold
    m = _indexed(matched).filter((pl.col("semantics") == meaning)
                                 & (pl.col("placement") == placement))
    parts: dict[str, list[Estimate]] = {"a": [], "b": []}
    ks, unidentified = [], []
    short = "MD" if size_task == DECISION else "BC"
    for (subset,), g in sorted(m.group_by("subset"), key=lambda kv: kv[0][0]):
        rec = sizes.get((size_task, subset, direction_for(size_task, meaning)))
        if rec is None or rec.get("k") is None:
            continue
        ok, why = size_identified(rec)
        if not ok:
            unidentified.append(f"{subset} (k = {rec['k']}: {why})")
            continue
        k = int(rec["k"])
        ks.append(f"{subset}: k = {k}")
        for key, target in (("a", BRANCH), ("b", DECISION)):
            r = g.filter((pl.col("target_task") == target) & (pl.col("k") == k))
            if r.height:
                parts[key].append(_cells(r, level, reps, "gap"))
    a = combine(parts["a"], level) if parts["a"] else NONE
    b = combine(parts["b"], level) if parts["b"] else NONE
    n = min(a.n, b.n)
    if a.missing or b.missing:
        verdict = ("insufficient evidence", f"no identified {short} minimal size, or no pairs, "
                   "for a matched comparison")
    elif n < min_pairs:
        verdict = ("insufficient evidence", f"too few pairs: n = {n} < {min_pairs}")
    elif a.hi < -margin:
        verdict = ("refuted", f"MD's top-k on BC pairs is worse than BC's own by more than the "
                              f"margin (upper bound of the gap {a.hi:.3f} < -{margin})")
    elif b.lo >= -margin:
        verdict = ("refuted", f"the reverse also works at the same size: BC's top-k on MD pairs "
                              f"within the margin of MD's own (lower bound {b.lo:.3f} >= "
                              f"-{margin})")
    elif a.lo >= -margin and b.hi < -margin:
        verdict = ("supported", f"MD -> BC gap lower bound {a.lo:.3f} >= -{margin}; BC -> MD gap "
                                f"upper bound {b.hi:.3f} < -{margin}")
    else:
        verdict = ("insufficient evidence", "a gap's interval crosses the margin")
    if unidentified:
        verdict = (verdict[0], verdict[1] + "; size not identified, left out: "
                   + ", ".join(unidentified))
    return _row(CLAIM_1, meaning, f"at the same k (the {short} minimal size per subset), each "
                f"task's own top-k against the other's ({meaning}); gap = F(other) - F(own) "
                "on MD -> BC (estimate) and BC -> MD (reference), mean over subsets; "
                f"margin {margin} on both sides", placement, a, b, threshold, margin, verdict,
                f"MD -> BC gap = {_fmt(a)}, BC -> MD gap = {_fmt(b)}; " + ", ".join(ks),
                size=f"{short} minimal size")


SPECIFIC = ("The {task} circuit is specific to memorization (it does not explain "
            "non-memorized text)")


def specificity_claims(spec: pl.DataFrame, reps: torch.Tensor | None, main_subset: str,
                       margin: float, min_pairs: int, placement: str, threshold: float
                       ) -> list[dict]:
    """One row per task and meaning on the main subset: F(memorized) - F(control) of the
    memorization circuit at its size (`specificity.evaluate`). Supported when the interval
    lies above the margin and the circuit beats random circuits on the memorized pairs;
    refuted when it lies at or below the margin (as faithful on non-memorized text);
    insufficient otherwise, or with fewer than `min_pairs` pairs on either side."""
    out = []
    s = _indexed(spec)
    for task in (BRANCH, DECISION):
        for meaning in MEANINGS:
            r = s.filter((pl.col("task") == task) & (pl.col("subset") == main_subset)
                         & (pl.col("semantics") == meaning)) if s.height else s
            rec = r.row(0, named=True) if r.height else None
            if rec is None or rec["specificity"] is None:
                e = NONE
                verdict = ("insufficient evidence", "no circuit in the band or no control pairs")
                evidence = "n/a"
            else:
                e = Estimate(rec["specificity"], rec["specificity_lo"], rec["specificity_hi"],
                             min(rec["n_memorized"], rec["n_control"]))
                verdict = _specificity_verdict(rec, e, margin, min_pairs)
                evidence = (f"k = {rec['k']}; F(memorized) = {_triple(rec, 'f_memorized')} "
                            f"(n = {rec['n_memorized']}, random {_f(rec['random_memorized'])}); "
                            f"F(control) = {_triple(rec, 'f_control')} (n = {rec['n_control']}, "
                            f"random {_f(rec['random_control'])}); the control's own top-k on "
                            f"memorized pairs {_triple(rec, 'f_control_circuit_memorized')}; "
                            f"clean - corrupt gap {_triple(rec, 'gap_memorized')} memorized, "
                            f"{_triple(rec, 'gap_control')} control")
            name = task.replace("_", " ").title()
            out.append(_row(SPECIFIC.format(task=name), meaning,
                            "F(memorized pairs) - F(control pairs) of the "
                            f"{task} circuit on {main_subset} ({meaning}) > {margin}, same k, "
                            "joint bootstrap", placement, e,
                            None if rec is None else Estimate(rec["f_control"],
                                                              rec["f_control_lo"],
                                                              rec["f_control_hi"],
                                                              rec["n_control"]),
                            threshold, margin, verdict, f"{task}: {evidence}"))
    return out


def _specificity_verdict(rec: dict, e: Estimate, margin: float, min_pairs: int
                         ) -> tuple[str, str]:
    if e.missing:
        return "insufficient evidence", "no interval (F undefined in the resamples)"
    if e.n < min_pairs:
        return "insufficient evidence", f"too few pairs: n = {e.n} < {min_pairs}"
    lo, rnd = rec["f_memorized_lo"], rec["random_memorized"]
    if lo is None or rnd is None or not lo > rnd + margin:
        return "insufficient evidence", ("circuit not better than random on the memorized "
                                         f"pairs (lower bound {lo} <= random {rnd} + {margin})")
    if e.lo > margin:
        return "supported", (f"F on memorized pairs exceeds F on control pairs: lower bound "
                             f"{e.lo:.3f} > {margin}")
    if e.hi <= margin:
        return "refuted", ("as faithful on non-memorized text: upper bound of F(memorized) - "
                           f"F(control) {e.hi:.3f} <= {margin}")
    return "insufficient evidence", f"interval crosses the margin {margin}"


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _triple(rec: dict, name: str) -> str:
    v, lo, hi = rec[name], rec[f"{name}_lo"], rec[f"{name}_hi"]
    if v is None or lo is None or hi is None:
        return "n/a"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


_VERDICT_COLOURS = {"supported": "#d9f2d9", "refuted": "#f8d7d7",
                    "insufficient evidence": "#f2f2f2"}


def _interval(v, lo, hi) -> str:
    if v is None:
        return "n/a"
    return f"{v:.3f}" + ("" if lo is None or hi is None else f" [{lo:.3f}, {hi:.3f}]")


def to_html(table: pl.DataFrame, title: str = "Claims") -> str:
    """The claims table (CLAIM_SCHEMA) as a self-contained HTML page for the report: one
    row per claim and meaning with the test, n, estimate and reference with their
    intervals, random circuits, the verdict (shaded by verdict) and its reason."""
    import html

    head = ("claim", "meaning", "placement", "n", "estimate [95% CI]", "reference [95% CI]",
            "random F", "threshold / margin", "verdict", "reason", "test")
    rows = []
    for r in table.iter_rows(named=True):
        cells = (r["claim"], r["semantics"], r["placement"], r["n_pairs"],
                 _interval(r["estimate"], r["estimate_lo"], r["estimate_hi"]),
                 _interval(r["reference"], r["reference_lo"], r["reference_hi"]),
                 "n/a" if r["random_faithfulness"] is None else f"{r['random_faithfulness']:.3f}",
                 " / ".join("n/a" if r[k] is None else f"{r[k]:g}"
                            for k in ("threshold", "margin")),
                 r["verdict"], r["reason"], r["test"])
        colour = _VERDICT_COLOURS.get(r["verdict"], "white")
        rows.append(f'<tr style="background:{colour}">' + "".join(
            f"<td>{html.escape('' if c is None else str(c))}</td>" for c in cells) + "</tr>")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;"
            "font-size:13px}table{border-collapse:collapse}td,th{border:1px solid #bbb;"
            "padding:3px 6px;vertical-align:top}th{background:#eee}</style></head><body>"
            f"<h2>{html.escape(title)}</h2><p>{table.height} rows; verdicts: "
            + ", ".join(f"{v} {table.filter(pl.col('verdict') == v).height}"
                        for v in VERDICTS) + "</p><table><tr>"
            + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows)
            + "</table></body></html>\n")


def of_files(inputs: Mapping[str, Any], settings: ClaimSettings) -> pl.DataFrame:
    """The circuit_claims rule's table from its input files (`inputs`: transfer, matched and
    their replicates, specificity where the controls are on, and the `minimal` records):
    `claims` on the main mode's circuits, flagged where sizes were chosen on the evaluation
    pairs and where a claim rests on few documents."""
    from vermem.core import files, stats

    records = [files.read_json(f) for f in inputs["minimal"]]
    main = (settings.placement, settings.ablation)
    sizes = {(rec["task"], rec["subset"], c["direction"]): c
             for rec in records for c in rec["circuits"]
             if (c["placement"], c["ablation"]) == main}
    spec = pl.read_parquet(inputs["specificity"]) if "specificity" in inputs else None
    table = claims(
        pl.read_parquet(inputs["transfer"]), sizes, settings,
        transfer_reps=stats.load_replicates(inputs["transfer_replicates"])[0][:, 0],
        matched=pl.read_parquet(inputs["matched"]),
        matched_reps=stats.load_replicates(inputs["matched_replicates"])[0][:, 0],
        specificity=spec)
    if any(rec.get("selection_on_evaluation") for rec in records):
        table = flag_selection_on_evaluation(table)
    # the documents each bootstrap resamples: a claim resting on < 10 says so
    return flag_few_clusters(table, {
        (rec["task"], rec["subset"], part): len(rec[f"{part}_docs"])
        for rec in records for part in ("selection", "evaluation")}, settings.main_subset)
