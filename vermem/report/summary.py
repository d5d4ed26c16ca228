"""What a run concludes, written by the run: `results/summary.md`, from the tables alone.

The README and docs quote no result of their own; they link this file, so that no number
in them can go stale. Every number here carries its n and interval, as in the tables it is
read from (named under each heading).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
import torch

from vermem.core.stats import Bootstrap, wilson


def _ci(v, lo, hi, digits: int = 2) -> str:
    if v is None:
        return "n/a"
    if lo is None or hi is None:
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _k(x) -> str:
    """A size or a size's interval end (a percentile, rounded to a whole edge count)."""
    return "n/a" if x is None else str(int(round(float(x))))


def human(n) -> str:
    """A count as a person reads it: 1.3M, 45.1k, 950."""
    if n is None:
        return "n/a"
    v = float(n)
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{int(v)}" if v == int(v) else f"{v:g}"


ABSENT = "none"  # one word for "did not happen / not found" in every table


def anchor(kind: str, model: str = "") -> str:
    """The id of a section, so that the headline can link it (`[table](#id)`)."""
    import re

    return re.sub(r"[^a-z0-9]+", "-", f"{kind} {model}".lower()).strip("-")


def _target(kind: str, model: str = "") -> str:
    """The line before a section's heading that the headline's links point at."""
    return f'<a id="{anchor(kind, model)}"></a>'


def _link(text: str, kind: str, model: str = "") -> str:
    return f"[{text}](#{anchor(kind, model)})"


def _pct(k: int, n: int) -> str:
    if not n:
        return "n/a (n = 0)"
    lo, hi = wilson(k, n)
    return f"{100 * k / n:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    if not rows:
        return ["(none)", ""]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join("" if c is None else str(c) for c in r) + " |" for r in rows]
    return out + [""]


def labels_section(model: str, labels: Mapping[str, Any]) -> list[str]:
    out = [f"### Memorization by duplication (`results/labels/{model}.summary.json`)", "",
           f"{labels.get('samples', 0)} samples; k-extractable share of the windows of "
           "documents seen that often per epoch, 95% Wilson interval (windows of one "
           "document are correlated: the interval is optimistic).", ""]
    rows = []
    for r in labels.get("by_dup_count", []):
        k = round(r["extractable_share"] * r["n"])
        rows.append((r["dup_count"], r["n"], _pct(k, r["n"])))
    out += _table(("copies per epoch", "windows", "memorized"), rows)
    per = labels.get("labels_per_subset", {})
    out += _table(("subset", "memorized", "non-memorized", "ambiguous"),
                  [(s, v.get("memorized", 0), v.get("non-memorized", 0), v.get("ambiguous", 0))
                   for s, v in sorted(per.items())])
    return out


def pairs_section(model: str, pairs: Mapping[str, Any]) -> list[str]:
    out = [f"### Pairs (`results/pairs/{model}.summary.json`)", "",
           "Pairs per part of the document split (documents in brackets); controls: the "
           "same construction on non-memorized text, matched to the memorized pairs' d.", ""]
    rows = []
    for task in sorted(k for k in pairs if k not in ("split", "divergence")):
        for subset, v in sorted(pairs[task].items()):
            docs = v.get("documents", {})
            rows.append((task, subset, v["pairs"],
                         *(f"{v.get(p, 0)} ({docs.get(p, 0)})"
                           for p in ("attribution", "selection", "evaluation")),
                         "" if v.get("d_mean") is None else f"{v['d_mean']:.1f}",
                         v.get("memorized_pairs", "")))
    out += _table(("task", "subset", "pairs", "attribution", "selection", "evaluation",
                   "mean d", "matched to (memorized pairs)"), rows)
    return out


def _cap_note(minimal: Sequence[Mapping[str, Any]], pairs: Mapping[str, Any] | None
              ) -> str:
    """A sentence on the pair cap (circuits.max_pairs) where the circuits' evaluation and
    selection counts differ from the pairs table's; '' where they agree."""
    if not pairs:
        return ""
    diff = []
    for rec in minimal:
        v = pairs.get(rec["task"], {}).get(rec["subset"], {})
        for part, key in (("evaluation", "n_pairs"), ("selection", "n_selection")):
            if part == "selection" and rec.get("selection_on_evaluation"):
                continue
            if v.get(part) is not None and rec.get(key) is not None and v[part] != rec[key]:
                diff.append(f"{rec['task']} / {rec['subset']} {part}: {rec[key]} of {v[part]}")
    if not diff:
        return ""
    return (" The circuits use at most `circuits.max_pairs` pairs per part, spread over "
            "documents, so their counts are below the pairs table's where the cap binds ("
            + "; ".join(diff[:4]) + ("; ..." if len(diff) > 4 else "") + ").")


def circuits_section(model: str, minimal: Sequence[Mapping[str, Any]],
                     main: Mapping[str, str], pairs: Mapping[str, Any] | None = None
                     ) -> list[str]:
    from vermem.circuits.search import SIZE_DECADE, SIZE_TAIL, size_identified

    band_txt = ""
    if minimal and minimal[0].get("band"):
        lo, hi = minimal[0]["band"]
        band_txt = f" [{lo:g}, {hi:g}]"
    out = [_target("minimal circuits", model),
           f"### Minimal circuits, main mode {main['placement']}/{main['ablation']} "
           f"(`results/circuits/{model}/*/*/minimal.json`)", "",
           "Size k chosen on the selection pairs as the smallest k whose F lies in the "
           f"target band{band_txt} (bootstrap interval of k over the selection pairs); F at "
           "that size on the selection pairs (where it was chosen) and on the disjoint "
           "evaluation pairs (cluster-bootstrap interval), whether the evaluation F is in "
           "the band too, and random circuits of the same size. *Size identified*: no when "
           f"the size interval spans more than a decade (upper end > {SIZE_DECADE:g} x lower "
           "end), or the selection curve does not cross the band clearly (in more than "
           f"{100 * SIZE_TAIL:g}% of the selection resamples only the whole graph, or no "
           "size, is in the band); such a size is shown but not used as a matched size."
           + _cap_note(minimal, pairs)
           + (" Small gap: the modes of that direction (placement / ablation, evaluation or "
              f"selection pairs) where |M(full) - M(empty)| < {_gap_threshold(minimal):g}, "
              "so that F divides by a difference too small to mean much."
              if _gap_threshold(minimal) is not None else ""),
           ""]
    gaps = _gap_threshold(minimal) is not None
    rows = []
    for rec in sorted(minimal, key=lambda r: (r["task"], r["subset"])):
        found = {c["direction"]: c for c in rec["circuits"]
                 if (c["placement"], c["ablation"]) == (main["placement"], main["ablation"])}
        for d in ("noising", "denoising"):
            c = found.get(d)
            if c is None:
                rows.append((rec["task"], rec["subset"], d, "none in the band", "", "", "",
                             "", "", rec.get("n_selection", 0), rec.get("n_pairs", 0))
                            + ((small_gap_count(rec, d),) if gaps else ()))
                continue
            ok, why = size_identified(c)
            sel_f = c.get("selection_faithfulness")
            in_band = {"in": "yes", "below": "no (below)", "above": "no (above)"}.get(
                c.get("band"), "n/a")
            rows.append((rec["task"], rec["subset"], f"{d} ({c['semantics']})",
                         f"{_k(c['k'])} of {c['n_edges']} [{_k(c['k_lo'])}, {_k(c['k_hi'])}]",
                         "yes" if ok else f"no: {why}",
                         "n/a" if sel_f is None else f"{sel_f:.2f}",
                         _ci(c.get("faithfulness"), c.get("faithfulness_lo"),
                             c.get("faithfulness_hi")), in_band,
                         _ci(c.get("random_faithfulness"), c.get("random_faithfulness_lo"),
                             c.get("random_faithfulness_hi")),
                         rec.get("n_selection", 0), rec.get("n_pairs", 0))
                        + ((small_gap_count(rec, d),) if gaps else ()))
    out += _table(("task", "subset", "direction", "k", "size identified", "F (selection)",
                   "F (evaluation)", "evaluation F in band", "random F", "n selection",
                   "n evaluation") + (("small gap",) if gaps else ()), rows)
    return out


def _gap_threshold(minimal: Sequence[Mapping[str, Any]]) -> float | None:
    """circuits.MIN_GAP as the run's minimal.json records it; None where none records it."""
    found = [r["small_gap"]["threshold"] for r in minimal if "small_gap" in r]
    return found[0] if found else None


def small_gap_count(rec: Mapping[str, Any], direction: str) -> str:
    """How many modes of `direction` in one minimal.json had |M(full) - M(empty)| below
    circuits.MIN_GAP (its `small_gap` record: one message per mode and pair set, naming
    'direction/placement/ablation'); '' where the record has none."""
    gap = rec.get("small_gap")
    if gap is None:
        return ""
    return str(sum(1 for w in gap.get("where", []) if f"({direction}/" in w))


def mib_section(model: str, mib: pl.DataFrame, main: Mapping[str, str]) -> list[str]:
    """CPR / CMD (MIB's circuit-localization scores) of the main mode, per task, subset and
    direction, next to random rankings'."""
    log_ = "log_area" in mib.columns
    out = [_target("mib", model),
           f"### MIB scores, main mode {main['placement']}/{main['ablation']} "
           f"(`results/circuits/{model}/*/*/mib.parquet`)", "",
           "CPR: area under F over 0.1-100% of the edges (higher is better); CMD: area under "
           "|1 - F| (lower is better), both on MIB's linear edge-fraction axis, where sizes "
           "under 10% of the edges carry under 10% of the weight"
           + ("; log area: the area under F over log10(edge fraction) from 1/E to 1 (E "
              "edges), divided by log10(E), so that every decade of sizes weighs the same "
              "(a random ranking with F = k/E scores about 1 / ln E)" if log_ else "")
           + "; evaluation pairs, cluster-bootstrap intervals; random: the mean over random "
           "rankings.", ""]
    q = mib.filter((pl.col("placement") == main["placement"])
                   & (pl.col("ablation") == main["ablation"]))
    rows = []
    for (task, subset, d), g in q.group_by("task", "subset", "direction", maintain_order=True):
        by = {r["circuit"]: r for r in g.iter_rows(named=True)}
        a, r = by.get("attribution"), by.get("random")

        def cell(x, key):
            return "n/a" if x is None else _ci(x[key], x[f"{key}_lo"], x[f"{key}_hi"])
        rows.append((task, subset, d, a["method"] if a else "", cell(a, "cpr"),
                     cell(a, "cmd"), cell(r, "cpr"), cell(r, "cmd"))
                    + ((cell(a, "log_area"), cell(r, "log_area")) if log_ else ())
                    + (a["n_pairs"] if a else 0,))
    out += _table(("task", "subset", "direction", "method", "CPR", "CMD", "random CPR",
                   "random CMD") + (("log area", "random log area") if log_ else ())
                  + ("n evaluation",), sorted(rows))
    return out


def methods_section(model: str, quality: pl.DataFrame, agreement: pl.DataFrame) -> list[str]:
    """Attribution methods side by side on the main subset: CPR, CMD and the minimal size
    per task and direction, then the Spearman correlation between every two methods."""
    out = [_target("methods", model),
           f"### Attribution methods compared (`results/circuits/{model}/methods.parquet`)",
           "", "Each method ranks the edges from the same attribution pairs, each direction "
           "by its own scores (de-noising by the de-noising scores); CPR / CMD on the "
           "evaluation pairs, the size chosen on the selection pairs, main mode.", ""]
    rows = [(r["task"], r["subset"], r["direction"], r["method"],
             _ci(r["cpr"], r["cpr_lo"], r["cpr_hi"]), _ci(r["cmd"], r["cmd_lo"], r["cmd_hi"]),
             "none in the band" if r["k"] is None else
             f"{r['k']} [{_k(r['k_lo'])}, {_k(r['k_hi'])}]",
             f"{r['n_attribution']} / {r['n_selection']} / {r['n_pairs']}")
            for r in quality.iter_rows(named=True)]
    out += _table(("task", "subset", "direction", "method", "CPR", "CMD", "minimal k",
                   "n attribution / selection / evaluation"), rows)
    diffs = agreement.filter(pl.col("statistic") == "CPR difference") if "direction" in \
        agreement.columns else agreement.clear()
    if diffs.height:
        out += ["Paired CPR differences (method a - method b, the same evaluation pairs and "
                "bootstrap draws for both; a ranking of methods needs an interval that "
                "excludes 0):", ""]
        out += _table(("task", "direction", "methods", "CPR difference", "n evaluation"),
                      [(r["task"], r["direction"], f"{r['method_a']} - {r['method_b']}",
                        _ci(r["value"], r["value_lo"], r["value_hi"]), r["n_pairs"])
                       for r in diffs.iter_rows(named=True)])
    sp = agreement.filter(pl.col("statistic") == "spearman |score|")
    rows = [(r["task"], f"{r['method_a']} vs {r['method_b']}",
             _ci(r["value"], r["value_lo"], r["value_hi"]), r["n_docs"])
            for r in sp.iter_rows(named=True)]
    out += ["Spearman correlation of |scores| (intervals: attribution documents resampled):",
            ""] + _table(("task", "methods", "Spearman", "attribution documents"), rows)
    return out


def specificity_section(model: str, spec: pl.DataFrame) -> list[str]:
    out = [_target("specificity", model),
           f"### Specificity (`results/circuits/{model}/specificity.parquet`)", "",
           "The memorization circuit's top-k on its memorized and on its control evaluation "
           "pairs, the control ranking's top-k on the memorized pairs, and the clean - "
           "corrupt gap of the metric on each (one joint bootstrap).", ""]
    rows = [(r["task"], r["subset"], r["semantics"], r["k"],
             _ci(r["f_memorized"], r["f_memorized_lo"], r["f_memorized_hi"]),
             _ci(r["f_control"], r["f_control_lo"], r["f_control_hi"]),
             _ci(r["specificity"], r["specificity_lo"], r["specificity_hi"]),
             _ci(r["f_control_circuit_memorized"], r["f_control_circuit_memorized_lo"],
                 r["f_control_circuit_memorized_hi"]),
             _ci(r["gap_memorized"], r["gap_memorized_lo"], r["gap_memorized_hi"], 1),
             _ci(r["gap_control"], r["gap_control_lo"], r["gap_control_hi"], 1),
             f"{r['n_memorized']} / {r['n_control']}")
            for r in spec.sort("task", "subset", "semantics").iter_rows(named=True)]
    out += _table(("task", "subset", "meaning", "k", "F memorized", "F control",
                   "difference", "control's circuit on memorized", "gap memorized",
                   "gap control", "n mem / ctl"), rows)
    return out


def claims_section(model: str, claims: pl.DataFrame) -> list[str]:
    out = [_target("claims", model), f"### Claims (`results/circuits/{model}/claims.csv`)",
           "", "A verdict on a claim about memorization whose circuits are not shown "
           "specific to memorization (the controls' rows below) carries that qualifier: it "
           "holds of the circuit, not of memorization.", ""]
    rows = [(r["claim"] + (f" (at the {r['size']})" if r.get("size") else ""),
             r["semantics"], _estimate(r),
             r["n_pairs"], "" if r.get("min_documents") is None else r["min_documents"],
             f"**{r['verdict']}**" + _qualifier(r), r["reason"])
            for r in claims.iter_rows(named=True)]
    out += _table(("claim", "meaning", "estimate", "n", "fewest documents", "verdict",
                   "reason"), rows)
    return out


SIZE_CLAIM = "Branch Comparison circuits are smaller"  # its estimates are edge counts


def _estimate(r: Mapping[str, Any]) -> str:
    """A claim row's estimate with its interval: edge counts as whole numbers."""
    if r["claim"].startswith(SIZE_CLAIM):
        v, lo, hi = r["estimate"], r["estimate_lo"], r["estimate_hi"]
        return "n/a" if v is None else f"{_k(v)} [{_k(lo)}, {_k(hi)}]"
    return _ci(r["estimate"], r["estimate_lo"], r["estimate_hi"], 3)


def _qualifier(r: Mapping[str, Any]) -> str:
    """' (not specific to memorization)' and the like, from a claim row's `specific`."""
    spec = r.get("specific")
    return {"no": " (not specific to memorization)",
            "not shown": " (specificity to memorization not shown)"}.get(spec or "", "")


def _step(v) -> str:
    return ABSENT if v is None else str(v)


def checkpoints_section(model: str, ck: Mapping[str, Any]) -> list[str]:
    k_min = ck.get("min_documents", 1)
    out = [_target("checkpoints", model),
           f"### Along training (`results/checkpoints/{model}/summary.json`)", "",
           f"First training step at which each happens ({ABSENT}: not within the axis). "
           "Memorization *emerges* at the first step whose Wilson interval lies above the "
           f"unseen documents' with at least {k_min} documents memorized."]

    def emerges(m):
        if m["n"] < k_min:
            return f"{ABSENT} (n = {m['n']} < {k_min})"
        return _step(m["emerges"])
    out += [""] + _table(("group", "n", "memorized at the end", "emerges", "half memorized"),
                         [(f"{m['by']} {m['group']}", m["n"],
                           "n/a" if m["final_share"] is None else f"{m['final_share']:.2f}",
                           emerges(m), _step(m["half"])) for m in ck.get("memorization", [])])
    if ck.get("graded"):
        out += ["Graded memorization of the same samples: the share labelled memorized "
                "(Wilson 95%), the mean share of continuation tokens reproduced (match "
                "fraction) and the mean exact-prefix length in tokens (bootstrap 95% over "
                "documents, one sample each).", ""]
        out += _table(("group", "step", "n", "memorized", "mean match fraction",
                       "mean exact prefix"),
                      [(f"{g['by']} {g['group']}", f"{g['step']}" + (" (final)" if g["final"]
                                                                     else ""), g["n"],
                        _ci(g["share"], g["share_lo"], g["share_hi"]),
                        _ci(g["match_fraction"], g["match_fraction_lo"],
                            g["match_fraction_hi"]),
                        _ci(g["exact_prefix"], g["exact_prefix_lo"], g["exact_prefix_hi"], 1))
                       for g in ck["graded"]])
    out += ["The final model's minimal circuit at each checkpoint: *F interval in band "
            "first* is the first step whose F interval lies in [target, 2 - target], *F in "
            "band first* the same for the point estimate of F; *from* is the first step from "
            "which it stays there at every later point, the final model included "
            f"({ABSENT}: the final model's own F leaves the band). *F "
            "undefined* are the steps where the model does not tell the clean run from the "
            "corrupt one (|logit gap| < 0.1 or its interval contains 0, as at the untrained "
            "t0): F means nothing there and counts as out of the band.", ""]
    out += _table(("task", "subset", "meaning", "final k", "F interval in band first",
                   "F interval in band from", "F in band first", "F in band from",
                   "own circuit from", "F undefined at"),
                  [(c["task"], c["subset"], c["semantics"], c["final_k"],
                    _step(c["final_faithful"]), _step(c.get("final_faithful_from")),
                    _step(c["final_in_band"]), _step(c.get("final_in_band_from")),
                    _step(c["own_circuit"]),
                    ", ".join(map(str, c.get("undefined") or [])) or ABSENT)
                   for c in ck.get("circuits", [])])
    rows = [(c["task"], c["semantics"], o["step"], _k(o["k"]),
             "n/a" if o["jaccard"] is None else f"{o['jaccard']:.2f}",
             "n/a" if o.get("overlap_coefficient") is None else
             f"{o['overlap_coefficient']:.2f}")
            for c in ck.get("circuits", []) for o in c.get("overlap", [])]
    if any(o["jaccard"] is not None for c in ck.get("circuits", [])
           for o in c.get("overlap", [])):
        out += ["Each checkpoint's own minimal circuit against the final one: Jaccard |A ∩ B| "
                "/ |A ∪ B| and the overlap coefficient |A ∩ B| / min(|A|, |B|) (1: the smaller "
                "lies inside the larger, whatever their sizes); steps where F is undefined "
                "are left out.", ""]
        out += _table(("task", "meaning", "step", "own k", "Jaccard", "overlap coefficient"),
                      rows)
    return out


def dynamics_section(dyn: Mapping[str, Any]) -> list[str]:
    out = [_target("study b"),
           "## Study B: memorizing random strings (`results/dynamics/summary.json`)", "",
           "Share of strings memorized (Wilson 95%; memorized: accuracy 1 for the hold epochs "
           "in a row) and the Kaplan-Meier median of epochs to memorize (order-statistic "
           "interval; censored at the last epoch at which such a run can start); guessing "
           "phase: strings whose loss held at their own letter entropy while the accuracy "
           "stayed at the best guess, before it rose.", ""]
    rows = []
    for key, v in sorted(dyn.items()):
        n = v.get("strings", v.get("n"))
        k = v.get("memorized_strings")
        med = ("> horizon" if v.get("median_censored") else
               _ci(v.get("median_epochs"), v.get("median_lo"), v.get("median_hi"), 0))
        g = v.get("guessing_phase")
        rows.append((key, f"{k} of {n}" if n is not None else k,
                     _pct(k, n) if isinstance(n, int) and isinstance(k, int) else "",
                     med, "" if g is None else (f"{g} of {n} strings" if n is not None
                                                else f"{g} strings")))
    out += _table(("model/init", "memorized", "share", "median epochs",
                   "guessing phase (strings)"), rows)
    return out


def _shows(r: Mapping[str, Any]) -> str:
    """A finding's `shows`, model sizes (factor n_params: 'level: median (n)') readable."""
    import re

    text = r.get("shows") or ""
    if r.get("factor") != "n_params":
        return text
    return re.sub(r"(?<![\d.])(\d{4,})(?=:)", lambda m: human(int(m.group(1))), text)


def findings_section(found: pl.DataFrame) -> list[str]:
    """Speicher et al.'s findings next to what the run shows, a verdict per row."""
    out = [_target("findings"),
           "### Against Speicher et al. (2024) (`results/dynamics/findings.parquet`)", "",
           "Q1 factors: stratified concordance of the factor with the epochs to memorize "
           "(+1: the paper's direction; strings compared only within one training run and "
           "equal other factors, never-memorized ones censored) with one-sided permutation "
           "p-values: these generalise over the strings of the runs, not over "
           "initialisations. Pretrained vs random: the unit is the training run; the "
           "pretrained model is one fixed object (one run), the random init a population "
           "sampled by `dynamics.init_seed`; per run the restricted mean epochs to memorize, "
           "then random minus pretrained with a one-sample t interval over the random runs "
           "(epochs; \"insufficient\" with fewer than 3 random runs). Q3 forgetting and "
           "re-learning: a t interval over the runs of each arm with 3 or more runs "
           "(forgetting: accuracy drop; re-learning: epochs saved). Column \"over\": what "
           "the row generalises over (docs/study-b.md, Findings).", ""]
    fam = found.filter(pl.col("question") == "families")

    def estimate(r):
        if r["estimate"] is None:
            return "n/a"
        if r.get("lo") is None:
            return f"{r['estimate']:+.2f}"
        return f"{r['estimate']:+.2f} [{r['lo']:+.2f}, {r['hi']:+.2f}]"

    rows = [(r["question"], r["finding"], _shows(r), estimate(r), r["compared"],
             r.get("over") or "", f"**{r['verdict']}**", r["reason"])
            for r in found.filter(pl.col("question") != "families").iter_rows(named=True)]
    out += _table(("question", "finding", "the run shows", "estimate [95% interval]",
                   "compared", "over", "verdict", "why"), rows)
    if fam.height:
        out += ["", "Across families (Speicher et al.: the phases occur in Pythia, Phi and "
                "Llama-2 alike). Models are grouped by `dynamics.families`, else their "
                "model_type. The unit is the initialisation (one model, pretrained or random): "
                "it shows the phases when the Wilson 95% interval of its strings' share with "
                "a guessing plateau at their own entropy, then memorization, lies above 0.5, "
                "lacks them when it lies below. A family's interval is over its "
                "initialisations, not over strings of one run. Verdict: agrees when every "
                "initialisation of every family shows the phases, disagrees when every "
                "initialisation of some family lacks them, insufficient with one family or "
                "otherwise.", ""]
        out += _table(("finding", "the run shows", "share of initialisations",
                       "initialisations / families", "verdict", "why"),
                      [(r["finding"], r["shows"],
                        "n/a" if r["estimate"] is None else f"{r['estimate']:.2f}",
                        r["compared"], f"**{r['verdict']}**", r["reason"])
                       for r in fam.iter_rows(named=True)])
    return out


LOCATION_SIZES = ("minimal", "0.01")  # rows shown (location.parquet has every MIB size)
MIN_MASS_DOCS = 3  # fewer attribution documents on a side: the mass comparison is not made


def stack_location(paths) -> pl.DataFrame:
    """The tasks' location.parquet tables, each with its task and subset (from its path:
    results/circuits/{model}/{task}/{subset}/location.parquet)."""
    from pathlib import Path

    return pl.concat([pl.read_parquet(p).with_columns(
        pl.lit(Path(p).parts[-3]).alias("task"), pl.lit(Path(p).parts[-2]).alias("subset"))
        for p in paths], how="diagonal_relaxed")


def mass_comparison(mass: pl.DataFrame, level: float = 0.95) -> list[tuple]:
    """Rows (task, subset, direction, mass memorized, mass control, difference, edge share,
    documents, verdict) of the memorization tasks' attribution mass on the injected
    components against their controls' (vermem.circuits.location.location_mass): the difference's
    interval from the two sides' bootstrap replicates (disjoint documents, independent
    resamples)."""
    rows = []
    ctl = {(r["task"], r["subset"], r["direction"]): r for r in mass.iter_rows(named=True)}
    for r in mass.filter(~pl.col("task").str.ends_with("_control")).sort(
            "task", "subset", "direction").iter_rows(named=True):
        c = ctl.get((f"{r['task']}_control", r["subset"], r["direction"]))
        docs = f"{r['n_docs']} / {c['n_docs'] if c else 0}"
        m_txt = _ci(r["mass"], r["mass_lo"], r["mass_hi"]) if r["n_pairs"] else "n/a"
        c_txt = _ci(c["mass"], c["mass_lo"], c["mass_hi"]) if c and c["n_pairs"] else "n/a"
        diff, verdict = "n/a", ""
        few = min(r["n_docs"], c["n_docs"] if c else 0)
        if c is None or not r["n_pairs"] or not c["n_pairs"]:
            verdict = "insufficient evidence: no pairs on one side"
        else:
            reps = (torch.tensor(r["replicates"], dtype=torch.float64)
                    - torch.tensor(c["replicates"], dtype=torch.float64))
            lo, hi = (float(x) for x in Bootstrap(level=level).interval(reps))
            d = r["mass"] - c["mass"]
            diff = _ci(d, lo, hi)
            if few < MIN_MASS_DOCS:
                verdict = (f"insufficient evidence: {few} attribution document(s) on a side "
                           f"(< {MIN_MASS_DOCS})")
            elif lo > 0:
                verdict = "more on the memorized pairs"
            elif hi < 0:
                verdict = "less on the memorized pairs"
            else:
                verdict = "no difference shown (interval contains 0)"
        rows.append((r["task"], r["subset"], r["direction"], m_txt, c_txt, diff,
                     f"{r['edge_share']:.2f}", docs, verdict))
    return rows


def location_section(model: str, loc: pl.DataFrame, mass: pl.DataFrame | None = None
                     ) -> list[str]:
    """Where the injected components are in the rankings: the attribution mass on them,
    memorized pairs against controls (when `mass` is given), then their recall among the
    nodes a circuit touches, against random circuits of the same size
    (vermem.circuits.location.location_mass, location_recall)."""
    names = ", ".join(sorted(set(",".join(loc["injected"].unique().to_list()).split(","))))
    out = [_target("location", model),
           f"### Where the injection lives (`results/circuits/{model}/*/*/location.parquet`)",
           ""]
    if mass is not None and mass.height:
        out += [f"Attribution mass on the injected components ({names}; "
                f"`location_mass.parquet`): the share of the ranking's summed |edge score| "
                "on the edges that touch them, with its 95% cluster-bootstrap interval over "
                "the attribution documents; edge share: those edges' share of all edges, the "
                "mass of scores spread evenly. The difference memorized - control (disjoint "
                "documents, independent resamples) says whether the ranking puts the "
                "memorized text's attribution where the planted documents were stored more "
                "than it puts ordinary text's there.", ""]
        out += _table(("task", "subset", "direction", "mass (memorized)", "mass (control)",
                       "difference", "edge share", "documents (mem / ctl)", "verdict"),
                      mass_comparison(mass))
        out += [""]
    out += [f"Injected components: {names}. Recall: the share of them among the nodes the "
            "top-k edges touch, with the 95% cluster-bootstrap interval over the attribution "
            "documents (each resample ranks the edges by its documents' mean scores); "
            "random: the mean over random circuits of the same k with its central 95% "
            "range, and p the share of random circuits that reach the circuit's recall. "
            "Each task is followed by its control (the same construction on non-memorized "
            "text): a method that finds where memorization lives scores the memorization "
            "task above random and above its control. In a small graph the top edges "
            "soon touch most nodes, and the recall saturates; the mass above does not.",
            ""]
    rows = []
    loc = loc.with_columns(pl.col("task").str.replace("_control$", "").alias("_base"))
    for r in loc.filter(pl.col("size").is_in(LOCATION_SIZES)).sort(
            "_base", "subset", "direction", "k", "task").iter_rows(named=True):
        size = "minimal" if r["size"] == "minimal" else f"{100 * float(r['size']):g}% of edges"
        if r.get("attribution_pairs") == 0:  # all-zero scores: an arbitrary order, no ranking
            recall = p = "n/a (no attribution pairs)"
        else:
            lo, hi = r.get("recall_lo"), r.get("recall_hi")
            recall = (f"{r['recall']:.2f}" if lo is None or hi is None or lo != lo else
                      _ci(r["recall"], lo, hi, 2))
            p = f"{r['random_at_least']:.2f}"
        rows.append((r["task"], r["subset"], r["direction"], size, r["k"], r["touched"],
                     recall, _ci(r["random_recall"], r["random_lo"], r["random_hi"], 2), p,
                     r.get("attribution_pairs", ""), r.get("n_docs", "")))
    out += _table(("task", "subset", "direction", "size", "k", "nodes touched", "recall",
                   "random recall", "p", "attribution pairs", "documents"), rows)
    return out


# -- the headline: the answer first ------------------------------------------------------------

def _task_name(task: str) -> str:
    return task.replace("_", " ").title()


def _range(items: Sequence[tuple[float, float | None, float | None]]) -> str:
    """'lowest [..] to highest [..]' of (value, lo, hi) items (by value)."""
    items = sorted(items, key=lambda x: x[0])
    lo, hi = _ci(*items[0]), _ci(*items[-1])
    return lo if len(items) == 1 else f"{lo} to {hi}"


def faithful_lines(model: str, minimal: Sequence[Mapping[str, Any]], main: Mapping[str, str]
                   ) -> list[str]:
    """Per task: how many main-mode circuits (subsets x directions) have an identified size,
    an evaluation F in the band, an interval above random circuits', with the F range."""
    from vermem.circuits.search import size_identified

    out = []
    for task in sorted({r["task"] for r in minimal}):
        recs = [r for r in minimal if r["task"] == task]
        cells = 2 * len(recs)
        cs = [c for r in recs for c in r["circuits"]
              if (c["placement"], c["ablation"]) == (main["placement"], main["ablation"])]
        band = recs[0].get("band") or [None, None]
        in_band = sum(c.get("band") == "in" for c in cs)
        above = sum(c.get("faithfulness_lo") is not None
                    and c.get("random_faithfulness_hi") is not None
                    and c["faithfulness_lo"] > c["random_faithfulness_hi"] for c in cs)
        unident = sum(not size_identified(c)[0] for c in cs)
        fs = [(c["faithfulness"], c.get("faithfulness_lo"), c.get("faithfulness_hi"))
              for c in cs if c.get("faithfulness") is not None]
        rnd = [c["random_faithfulness"] for c in cs if c.get("random_faithfulness") is not None]
        ns = sorted({r.get("n_pairs", 0) for r in recs})
        band_txt = "the band" if band[0] is None else f"the band [{band[0]:g}, {band[1]:g}]"
        text = (f"- **Faithful circuits, {_task_name(task)}** "
                f"({_link('minimal circuits', 'minimal circuits', model)}): "
                f"{len(cs)} of {cells} circuits found (subsets x directions); "
                f"{in_band} of {len(cs)} with evaluation F in {band_txt}, {above} of "
                f"{len(cs)} above random circuits of their size")
        if fs:
            text += f"; F {_range(fs)}"
        if rnd:
            text += f", random at most {max(rnd):.2f}"
        text += f"; n = {'-'.join(map(str, (ns[0], ns[-1]) if len(ns) > 1 else ns))} " \
                "evaluation pairs"
        if unident:
            text += f"; {unident} size(s) not identified"
        out.append(text + ".")
    return out


def _verdict_counts(verdicts: Sequence[str]) -> str:
    from collections import Counter

    c = Counter(verdicts)
    return ", ".join(f"{c[v]} {v}" for v in ("supported", "refuted", "insufficient evidence",
                                             "agrees", "disagrees", "insufficient") if c[v])


def specific_line(model: str, claims: pl.DataFrame, table: bool = True) -> str | None:
    """The controls' verdicts: how many memorization circuits are shown specific (linking
    the specificity table, or the claims where the run has no such table)."""
    from vermem.report.claims import SPECIFIC

    names = {SPECIFIC.format(task=_task_name(t)) for t in
             ("branch_comparison", "memorization_decision")}
    rows = claims.filter(pl.col("claim").is_in(list(names)))
    if not rows.height:
        return None
    est = [(r["estimate"], r["estimate_lo"], r["estimate_hi"])
           for r in rows.iter_rows(named=True) if r["estimate"] is not None]
    ns = [r["n_pairs"] for r in rows.iter_rows(named=True) if r["n_pairs"]]
    where = _link("specificity", "specificity", model) if table else \
        _link("claims", "claims", model)
    return (f"- **Specific to memorization?** ({where}): "
            f"of {rows.height} circuits (tasks x meanings, main subset), "
            f"{_verdict_counts(rows['verdict'].to_list())}"
            + (f"; F(memorized) - F(control) {_range(est)}" if est else "")
            + (f"; n >= {min(ns)} pairs a side" if ns else "") + ".")


def claims_lines(model: str, claims: pl.DataFrame) -> list[str]:
    """One line per claim of the paper: each row's meaning (and size) with its verdict and
    the qualifier where its circuits are not shown specific to memorization."""
    from vermem.report.claims import SPECIFIC

    spec = {SPECIFIC.format(task=_task_name(t)) for t in
            ("branch_comparison", "memorization_decision")}
    out = [f"- **The paper's claims** ({_link('claims', 'claims', model)}):"]
    for (claim,), g in claims.filter(~pl.col("claim").is_in(list(spec))).group_by(
            "claim", maintain_order=True):
        parts = []
        for r in g.iter_rows(named=True):
            where = r["semantics"] + (f" at the {r['size']}" if r.get("size") else "")
            est = "" if r["estimate"] is None else f" {_estimate(r)}, n = {r['n_pairs']}"
            parts.append(f"{where}: **{r['verdict']}**{_qualifier(r)}{est}")
        out.append(f"  - {claim}: " + "; ".join(parts) + ".")
    return out if len(out) > 1 else []


def localization_line(model: str, table: pl.DataFrame | None) -> str | None:
    """Where the memory lives, from a localization table (results/circuits/localization*.parquet
    or the injection's location_mass comparison: rows with a `verdict`); None without one."""
    if table is None or not table.height or "verdict" not in table.columns:
        return None
    counts = sorted(table.group_by("verdict").len().iter_rows(), key=lambda vc: -vc[1])
    what = "; ".join(f"{v}: {c}" for v, c in counts if v)
    return (f"- **Where the memory lives** ({_link('where the injection lives', 'location', model)}"
            f"): of {table.height} task x direction cells, {what}.")


def findings_line(found: pl.DataFrame | None) -> str | None:
    """Study B in one line: the findings' verdict counts and which agree or disagree."""
    if found is None or not found.height:
        return None
    parts = [_verdict_counts(found["verdict"].to_list()) + f" of {found.height} findings"]
    for v in ("agrees", "disagrees"):  # every counted row named, the family rows included
        names = found.filter(pl.col("verdict") == v)["finding"].to_list()
        if names:
            parts.append(f"{v}: " + ", ".join(names))
    return (f"- **Study B, against Speicher et al.** ({_link('findings', 'findings')}): "
            + "; ".join(parts) + ".")


def headline(models: Mapping[str, Mapping[str, Any]], main: Mapping[str, str],
             findings: pl.DataFrame | None = None) -> list[str]:
    """The answer first (at most about 15 lines): per model, are there faithful circuits,
    are they specific to memorization, which of the paper's claims hold, where the memory
    lives (with a localization table); then what Study B finds. Each line links its table."""
    out = ["## Headline", ""]
    for name, m in models.items():
        if len(models) > 1:
            out.append(f"- *{name}*")
        out += faithful_lines(name, m["minimal"], main)
        line = specific_line(name, m["claims"], m.get("specificity") is not None)
        out += [line] if line else []
        out += claims_lines(name, m["claims"])
        loc = m.get("localization")
        if loc is None and m.get("location_mass") is not None:
            rows = mass_comparison(m["location_mass"])
            loc = pl.DataFrame({"verdict": [r[-1] for r in rows]}) if rows else None
        line = localization_line(name, loc)
        out += [line] if line else []
    line = findings_line(findings)
    out += [line] if line else []
    return out + [""]


def render(models: Mapping[str, Mapping[str, Any]], dynamics: Mapping[str, Any] | None,
           main: Mapping[str, str], findings: pl.DataFrame | None = None) -> str:
    """The summary of a run. models: name -> {labels, pairs (summary JSONs), minimal (records),
    claims (table), mib (the tasks' mib.parquet tables stacked, or None), methods (quality and
    agreement tables, or None), specificity
    (table or None), checkpoints (summary JSON or None)}."""
    out = ["# What this run gives", "",
           "Written by the `summary` rule from the run's own tables; every number below is "
           "read from the file named in its heading.", ""]
    out += headline(models, main, findings)
    for name, m in models.items():
        out += [f"## Study A: {name}", ""]
        out += labels_section(name, m["labels"])
        out += pairs_section(name, m["pairs"])
        out += circuits_section(name, m["minimal"], main, m["pairs"])
        if m.get("mib") is not None:
            out += mib_section(name, m["mib"], main)
        if m.get("methods") is not None:
            out += methods_section(name, *m["methods"])
        if m.get("specificity") is not None:
            out += specificity_section(name, m["specificity"])
        out += claims_section(name, m["claims"])
        if m.get("checkpoints") is not None:
            out += checkpoints_section(name, m["checkpoints"])
        if m.get("location") is not None:
            out += location_section(name, m["location"], m.get("location_mass"))
    if dynamics:
        out += dynamics_section(dynamics)
    if findings is not None:
        out += findings_section(findings)
    return "\n".join(out).rstrip() + "\n"


_HTML_STYLE = ("<style>.vermem-summary table{border-collapse:collapse;margin:0.4em 0 1em;"
               "font-size:0.85em}.vermem-summary td,.vermem-summary th{border:1px solid #ccc;"
               "padding:2px 6px;text-align:left}.vermem-summary th{background:#f0f0f0}"
               ".vermem-summary code{font-size:0.9em}.vermem-summary code::before,"
               ".vermem-summary code::after{content:none}</style>")


def _inline(text: str) -> str:
    """HTML of one line of the summary's markdown: escaped, `code` and **bold**."""
    import html
    import re

    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\[([^\]]+)\]\(#([a-z0-9-]+)\)", r'<a href="#\2">\1</a>', out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"(?<![*\w])\*([^*]+)\*(?![*\w])", r"<em>\1</em>", out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def to_html(markdown: str) -> str:
    """The summary (render's markdown: headings, paragraphs, pipe tables, `code`, **bold**)
    as a self-contained HTML fragment, for the report's front page and its Summary entry."""
    import re

    out, para, lines = [], [], markdown.splitlines()

    def flush():
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        head = re.match(r"(#{1,6}) (.*)", line)
        target = re.fullmatch(r'<a id="([a-z0-9-]+)"></a>', line.strip())
        item = re.match(r"( *)- (.*)", line)
        if target:
            flush()
            out.append(f'<a id="{target.group(1)}"></a>')
        elif item:
            flush()
            depth = len(item.group(1)) // 2
            out.append(f'<div style="margin-left:{1 + 1.5 * depth}em">&bull; '
                       f"{_inline(item.group(2))}</div>")
        elif head:
            flush()
            n = len(head.group(1))
            out.append(f"<h{n}>{_inline(head.group(2))}</h{n}>")
        elif line.startswith("|") and i + 1 < len(lines) and re.match(r"\|[-| :]+\|$",
                                                                      lines[i + 1].strip()):
            flush()
            rows = [f"<tr>{''.join(f'<th>{_inline(c)}</th>' for c in _cells(line))}</tr>"]
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(f"<tr>{''.join(f'<td>{_inline(c)}</td>' for c in _cells(lines[i]))}"
                            "</tr>")
                i += 1
            out.append("<table>" + "".join(rows) + "</table>")
            continue
        elif not line.strip():
            flush()
        else:
            para.append(line.strip())
        i += 1
    flush()
    return _HTML_STYLE + '<div class="vermem-summary">\n' + "\n".join(out) + "\n</div>\n"


def read_localization(paths) -> pl.DataFrame | None:
    """The localization table(s), stacked; None where no file is there."""
    from pathlib import Path

    found = [p for p in ([paths] if isinstance(paths, str | Path) else paths) if Path(p).exists()]
    return pl.concat([pl.read_parquet(p) for p in found], how="diagonal_relaxed") \
        if found else None


def read_inputs(inputs: Mapping[str, Any], names: Sequence[str]
                ) -> tuple[dict[str, dict[str, Any]], dict | None, pl.DataFrame | None]:
    """What `render` reads, from the summary rule's input files (`inputs`: named by kind and
    model, e.g. "labels.organism"; rules/common.smk `summary_inputs`), for the models
    `names`: ({model: its tables}, the dynamics summary, the dynamics findings)."""
    from vermem.core import files

    def opt(key, read):
        return read(inputs[key]) if key in inputs else None

    models = {}
    for m in names:
        models[m] = {
            "labels": files.read_json(inputs[f"labels.{m}"]),
            "pairs": files.read_json(inputs[f"pairs.{m}"]),
            "minimal": [files.read_json(f) for f in inputs[f"minimal.{m}"]],
            "claims": pl.read_parquet(inputs[f"claims.{m}"]),
            "mib": opt(f"mib.{m}", lambda fs: pl.concat([pl.read_parquet(f) for f in fs])),
            "methods": opt(f"methods.{m}", lambda f, m=m: (
                pl.read_parquet(f), pl.read_parquet(inputs[f"methods_agreement.{m}"]))),
            "specificity": opt(f"specificity.{m}", pl.read_parquet),
            "checkpoints": opt(f"checkpoints.{m}", files.read_json),
            "location": opt(f"location.{m}", stack_location),
            "location_mass": opt(f"location_mass.{m}", stack_location),
            # where the memory lives (results/circuits/localization*.parquet), where run
            "localization": opt(f"localization.{m}", read_localization),
        }
    return (models, opt("dynamics", files.read_json),
            opt("dynamics_findings", pl.read_parquet))
