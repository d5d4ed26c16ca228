"""Study B's run next to Speicher et al. (2024)'s findings (docs/study-b.md, "Findings").

One row per finding the paper reports for Q1 (what makes memorization slower or faster)
and Q3 (sequential exposure), with what the run shows and a verdict, "agrees",
"disagrees" or "insufficient", by a stated rule:

- Q1 factors (alphabet size, entropy, length, model size): a stratified concordance
  between the factor and the epochs to memorize. Two strings are compared when they differ
  in the factor and agree in every other factor (model, training run, alphabet size,
  entropy fraction, length): +1 when the one at the higher level took longer, -1 when
  shorter, 0 for a tie; a never-memorized string is censored at the horizon and so took
  longer than any memorized one (two censored strings tie). The estimate is the mean over
  the compared pairs, signed so that +1 is the paper's direction. Its one-sided p-values
  come from permuting the factor's levels among the strings of each stratum
  (`PERMUTATIONS`, seeded): "agrees" when p <= `ALPHA` in the paper's direction,
  "disagrees" when p <= `ALPHA` in the other, "insufficient" otherwise, and when the grid
  has one level of the factor or no two strings to compare. These generalise over strings
  within the runs, not over initialisations.
- Q1 "pretrained models memorize faster than randomly initialised ones": the unit is the
  training run, not the string (the strings of one run share its initialisation, so they
  are not independent draws of "a random initialisation"). A run is one model from one
  init: 'pretrained' (the model's own weights: one fixed object, one run) or 'random-{s}'
  for each seed s of dynamics.init_seed (a sample of the population of random
  initialisations). Per run, the restricted mean epochs to memorize over its strings
  (never memorized: the horizon; every run trains the same strings). Per model, the
  differences random run - pretrained run, a one-sample Student t test and interval over
  the random runs (df = n - 1): "agrees" when p <= `ALPHA` that random runs take longer,
  "disagrees" when p <= `ALPHA` the other way, "insufficient" otherwise, and
  "insufficient: runs per arm ..." with fewer than `MIN_RUNS` random runs. With several
  models, agrees/disagrees only when every tested model does.
- Q3 "later strings are memorized faster": the concordance between the stage and its
  epochs to memorize, strata the training runs (one sequence each).
- Q3 "earlier strings are forgotten": per run, the mean drop of the accuracy on the
  earlier strings from the end of their own stage to the end of the last learning stage;
  "a forgotten string is re-learned faster": per run, the epochs to memorize the first
  string the first time minus the second time (never memorized: the horizon,
  dynamics.sequential.epochs). Both over runs (`over_runs`): per arm (model, pretrained or
  random) with at least `MIN_RUNS` runs, the mean and its Student t interval over the
  runs; the arm agrees when the interval lies above the threshold (`margin`,
  dynamics.phases.accuracy_rise, for forgetting; 0 for re-learning), disagrees when below;
  the verdict agrees or disagrees when every such arm does, "insufficient" otherwise, and
  "insufficient: runs per arm ..." when no arm has `MIN_RUNS` runs (the pretrained arm is
  one run: shown, never tested).
- Families "the phases occur in every family of models" (Pythia, Phi and Llama-2 in the
  paper; `family_rows`): models are grouped into families by the config's
  `dynamics.families` (model -> family name), else their model_type (the organism and
  Pythia are both gpt_neox). The unit of replication is the initialisation, one model
  with one init (pretrained or random): every string fine-tunes a fresh copy of that
  same initialisation, so its strings are replicate runs of one initialisation and say
  nothing about other initialisations. Per
  initialisation, the share of its strings with the phases (a guessing plateau at the
  string's own entropy H(q), then memorization: `strings.detect_phases`) has a Wilson
  interval over its strings (`LEVEL`); the initialisation *shows* the phases when the
  interval lies above `UNIT_SHARE`, *lacks* them when it lies below, and is undetermined
  otherwise. Per family, the share of its initialisations that show them has a Wilson
  interval over initialisations: it generalises over initialisations of that family like
  the run's (its sizes, pretrained and random), not over strings of one run. Verdict:
  "insufficient" with fewer than 2 families; "disagrees" when some family's
  initialisations all lack the phases; "agrees" when every initialisation of every
  family shows them; "insufficient" otherwise (an undetermined or a mixed family).
  With more than one family, the alphabet-size and length findings are also given per
  family (`FAMILY_FACTORS`, the Q1 rule within the family).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from vermem.core.naming import init_arm
from vermem.core.stats import mean_t, wilson
from vermem.dynamics.strings import IN_ORDER, time_to_memorize

ALPHA = 0.05          # one-sided level of the permutation tests
PERMUTATIONS = 9999   # seeded Monte Carlo permutations per test
AGREES, DISAGREES, INSUFFICIENT = "agrees", "disagrees", "insufficient"

SCHEMA = {"question": pl.String, "finding": pl.String, "factor": pl.String,
          "shows": pl.String, "estimate": pl.Float64, "compared": pl.Int64,
          "p_agrees": pl.Float64, "p_disagrees": pl.Float64, "lo": pl.Float64,
          "hi": pl.Float64, "over": pl.String, "verdict": pl.String, "reason": pl.String}

Q1_FACTORS = ("model", "init", "alphabet_size", "entropy_fraction", "length")
# factor, the paper's finding, the sign of the association with epochs to memorize
Q1_FINDINGS = (
    ("alphabet_size", "memorization is slower for larger alphabets", 1),
    ("entropy_fraction", "memorization is slower for higher-entropy strings", 1),
    ("length", "memorization is slower for longer strings", 1),
    ("n_params", "larger models memorize faster", -1),
    ("init", "pretrained models memorize faster than randomly initialised ones", -1),
)
CENSORED = 1e18       # a never-memorized string: later than any epoch
MIN_RUNS = 3          # training runs of an arm needed for an interval or test over runs
UNIT_SHARE = 0.5      # an initialisation shows the phases when its interval is above this
LEVEL = 0.95          # the Wilson intervals' level (z = 1.96)
FAMILY_FACTORS = ("alphabet_size", "length")  # the Q1 findings given per family
FAMILY_FINDING = "the phases (guessing at the strings' own entropy, then memorization) " \
    "occur in every family of models"
FAMILY_COLUMNS = {"family": pl.String, "models": pl.String, "inits": pl.Int64,
                  "inits_showing": pl.Int64, "inits_lacking": pl.Int64,
                  "share": pl.Float64, "share_lo": pl.Float64, "share_hi": pl.Float64,
                  "strings": pl.Int64, "strings_with_phases": pl.Int64,
                  "string_share": pl.Float64}


def _signs(t: np.ndarray) -> np.ndarray:
    """[n, n] sign(t_j - t_i)."""
    return np.sign(t[None, :] - t[:, None])


def concordance(times: Sequence[float | None], levels: Sequence[float],
                strata: Sequence[Any], expected: int, seed: int,
                permutations: int = PERMUTATIONS) -> dict[str, Any]:
    """Stratified concordance of `levels` with `times` (None: censored), signed by
    `expected` (+1: times rise with the level), with one-sided permutation p-values
    (levels permuted within strata). `compared`: the pairs of one stratum with different
    levels; estimate and p-values None when there are none."""
    t = np.array([CENSORED if v is None else float(v) for v in times])
    lv = np.asarray(levels, dtype=float)
    groups: dict[Any, list[int]] = {}
    for i, s in enumerate(strata):
        groups.setdefault(s, []).append(i)
    rng = np.random.default_rng(seed)
    stat, compared = 0.0, 0
    perm_stats = np.zeros(permutations)
    for idx in groups.values():
        if len(idx) < 2:
            continue
        sig = np.triu(_signs(t[idx]), 1)                              # i < j
        lvl = lv[idx]
        compared += int(np.triu(_signs(lvl) != 0, 1).sum())
        stat += float((np.sign(lvl[None, :] - lvl[:, None]) * sig).sum())
        perm = np.argsort(rng.random((permutations, len(idx))), axis=1)
        pl_ = lvl[perm]                                               # [R, n]
        perm_stats += (np.sign(pl_[:, None, :] - pl_[:, :, None]) * sig[None]).sum((1, 2))
    if not compared:
        return {"estimate": None, "compared": 0, "p_agrees": None, "p_disagrees": None}
    stat, perm_stats = expected * stat, expected * perm_stats
    return {"estimate": stat / compared, "compared": compared,
            "p_agrees": float((1 + (perm_stats >= stat - 1e-9).sum()) / (permutations + 1)),
            "p_disagrees": float((1 + (perm_stats <= stat + 1e-9).sum()) / (permutations + 1))}


def _verdict(c: Mapping[str, Any]) -> tuple[str, str]:
    if c["estimate"] is None:
        return INSUFFICIENT, "no two strings differ in the factor alone"
    p = f"p = {c['p_agrees']:.3g} for the paper's direction, {c['p_disagrees']:.3g} against it"
    if c["p_agrees"] <= ALPHA:
        return AGREES, f"{p} (permutation, one-sided, level {ALPHA})"
    if c["p_disagrees"] <= ALPHA:
        return DISAGREES, f"{p} (permutation, one-sided, level {ALPHA})"
    return INSUFFICIENT, f"no ordering at level {ALPHA}: {p}"


def _median_text(t: Mapping[str, Any]) -> str:
    if t["median_censored"]:
        return f"> {t['horizon']}"
    return "n/a" if t["median_epochs"] is None else f"{t['median_epochs']:g}"


def _level_text(factor: str, v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def q1_rows(phases: pl.DataFrame, seed: int, which: Sequence[tuple] = Q1_FINDINGS,
            label: str = "") -> list[dict[str, Any]]:
    """The Q1 findings (`which`, default all) against the phases table (one row per string);
    `label` follows each finding's text (e.g. " (family phi)")."""
    rows = []
    for factor, finding, expected in which:
        finding = finding + label
        if factor == "init":
            rows.append(init_row(phases, finding))
            continue
        levels = sorted(phases[factor].unique().to_list()) if phases.height else []
        per = []
        for v in levels:
            t = time_to_memorize(phases.filter(pl.col(factor) == v))
            per.append(f"{_level_text(factor, v)}: {_median_text(t)} ({t['strings']})")
        shows = ("median epochs to memorize (strings), pooled over the other factors: "
                 + ", ".join(per)) if per else "no strings"
        row = {"question": "Q1", "finding": finding, "factor": factor, "shows": shows}
        if len(levels) < 2:
            one = f" ({_level_text(factor, levels[0])})" if levels else ""
            rows.append({**row, "estimate": None, "compared": 0, "p_agrees": None,
                         "p_disagrees": None, "verdict": INSUFFICIENT,
                         "reason": f"the run has one level of {factor}{one}: nothing to "
                                   "compare", "over": "nothing compared"})
            continue
        others = [k for k in Q1_FACTORS if k != factor and not (
            factor == "n_params" and k == "model")]
        lv = (phases[factor] == "pretrained").cast(pl.Int8).to_list() if factor == "init" \
            else phases[factor].to_list()
        c = concordance(phases["memorized"].to_list(), lv,
                        list(phases.select(others).iter_rows()), expected, seed)
        verdict, reason = _verdict(c)
        rows.append({**row, **c, "verdict": verdict, "reason": reason,
                     "over": f"strings within each of the {_n_runs(phases)} training runs "
                             "(compared within a run and equal other factors); not over "
                             "initialisations"})
    return rows


def _n_runs(df: pl.DataFrame) -> int:
    return df.select("model", "init").unique().height if df.height else 0


def run_means(phases: pl.DataFrame) -> pl.DataFrame:
    """One row per training run (model, init: 'pretrained' or 'random-{seed}'): its arm and
    the restricted mean epochs to memorize over its strings, a never-memorized string
    counted at the horizon (so the runs, which train the same strings, are comparable)."""
    return (phases.with_columns(pl.coalesce("memorized", "horizon").alias("t"))
            .group_by("model", "init", maintain_order=True)
            .agg(pl.col("t").cast(pl.Float64).mean().alias("mean_epochs"),
                 pl.len().alias("strings"))
            .with_columns(pl.col("init").map_elements(init_arm, return_dtype=pl.String)
                          .alias("arm")).sort("model", "init"))


def _combine(verdicts: Sequence[str]) -> str:
    if verdicts and all(v == AGREES for v in verdicts):
        return AGREES
    if verdicts and all(v == DISAGREES for v in verdicts):
        return DISAGREES
    return INSUFFICIENT


def init_row(phases: pl.DataFrame, finding: str) -> dict[str, Any]:
    """Pretrained against random initialisation, at the level of the training run: per
    model, the restricted mean epochs to memorize of each run (`run_means`); the pretrained
    model is one fixed object (one run), the random init a population sampled by
    dynamics.init_seed. Per model with >= `MIN_RUNS` random runs: the differences random
    run - pretrained, their mean with a Student t interval over the random runs (df n - 1)
    and one-sided t p-values; "agrees" when p <= `ALPHA` that random runs take longer.
    Over models: "agrees"/"disagrees" when every tested model does; with no model tested:
    "insufficient: N runs per arm"."""
    row = {"question": "Q1", "finding": finding, "factor": "init", "p_agrees": None,
           "p_disagrees": None, "estimate": None, "lo": None, "hi": None, "compared": 0}
    runs = run_means(phases) if phases.height else pl.DataFrame()
    texts, verdicts, tests, counts = [], [], [], []
    for (model,), g in (runs.group_by("model", maintain_order=True) if runs.height else []):
        pre = g.filter(pl.col("arm") == "pretrained")["mean_epochs"].to_list()
        rnd = g.filter(pl.col("arm") == "random")
        counts.append(f"{model}: pretrained {len(pre)}, random {rnd.height}")
        runs_text = ", ".join(f"{i} {v:.1f}" for i, v in zip(g["init"], g["mean_epochs"],
                                                            strict=True))
        if len(pre) != 1 or rnd.height < MIN_RUNS:
            texts.append(f"{model}: {runs_text}")
            continue
        t = mean_t([v - pre[0] for v in rnd["mean_epochs"]], LEVEL)
        texts.append(f"{model}: {runs_text}; random - pretrained {t['mean']:+.1f} "
                     f"[{t['lo']:+.1f}, {t['hi']:+.1f}] epochs")
        verdicts.append(AGREES if t["p_above"] <= ALPHA else
                        DISAGREES if t["p_below"] <= ALPHA else INSUFFICIENT)
        tests.append((model, t))
    row["shows"] = ("restricted mean epochs to memorize per training run (never-memorized "
                    "strings at the horizon): " + ("; ".join(texts) or "no strings"))
    n_random = [t["n"] for _, t in tests]
    row["over"] = ("random initialisations (training runs: "
                   + (", ".join(f"{m} n = {t['n']}" for m, t in tests) or "none tested")
                   + ") against the one pretrained model of each; not over strings")
    if not tests:
        return {**row, "verdict": INSUFFICIENT,
                "reason": f"insufficient: runs per arm {'; '.join(counts) or 'none'} (a "
                          f"test over initialisations needs one pretrained and at least "
                          f"{MIN_RUNS} random runs: dynamics.init_seed)"}
    if len(tests) == 1:
        t = tests[0][1]
        row.update(estimate=t["mean"], lo=t["lo"], hi=t["hi"], p_agrees=t["p_above"],
                   p_disagrees=t["p_below"])
    row["compared"] = sum(n_random)
    ps = "; ".join(f"{m}: p = {t['p_above']:.3g} for the paper's direction, "
                   f"{t['p_below']:.3g} against it" + (" (the random runs are equal: "
                                                        "no spread)" if t["sd"] == 0 else "")
                   for m, t in tests)
    return {**row, "verdict": _combine(verdicts),
            "reason": f"{ps} (one-sample t over the random runs against the pretrained "
                      f"run, one-sided, level {ALPHA}; {LEVEL:.0%} t interval)"}


def q3_rows(q3: pl.DataFrame, margin: float, seed: int, horizon: int = 150
            ) -> list[dict[str, Any]]:
    """The Q3 findings against the Q3 table (one row per model, run and stage); a stage
    never memorized counts as `horizon` epochs (dynamics.sequential.epochs) in the
    re-learning gains."""
    runs = [(key, g.sort("stage")) for key, g in
            q3.sort("model", "init", "stage").group_by("model", "init", maintain_order=True)]
    learn = {key: g.filter(~pl.col("relearn")) for key, g in runs}
    rows = []

    def name(key):
        return f"{key[0]}/{key[1]}"

    def epochs(v):
        return "never" if v is None else str(v)
    # later strings faster
    row = {"question": "Q3", "finding": "later strings are memorized faster",
           "factor": "stage",
           "shows": "epochs to memorize per stage: " + "; ".join(
               f"{name(k)} {', '.join(epochs(v) for v in g['epochs_to_memorize'])}"
               for k, g in learn.items())}
    if not learn or max(g.height for g in learn.values()) < 2:
        rows.append({**row, "estimate": None, "compared": 0, "p_agrees": None,
                     "p_disagrees": None, "verdict": INSUFFICIENT,
                     "reason": "fewer than 2 strings learned one after another",
                     "over": "nothing compared"})
    else:
        parts = pl.concat(learn.values())
        c = concordance(parts["epochs_to_memorize"].to_list(), parts["stage"].to_list(),
                        list(parts.select("model", "init").iter_rows()), -1, seed)
        rows.append({**row, **c, **dict(zip(("verdict", "reason"), _verdict(c), strict=True)),
                     "over": f"stages within each of {len(learn)} sequences (one per "
                             "training run; stages permuted within a run)"})
    # earlier strings forgotten
    drops, texts = {}, []
    for key, g in learn.items():
        if g.height < 2:
            continue
        end = g["end_accuracy"].to_list()
        own = [end[i][g["trained"][i]] for i in range(g.height - 1)]
        last = [end[-1][g["trained"][i]] for i in range(g.height - 1)]
        drops[key] = float(np.mean(own) - np.mean(last))
        texts.append(f"{name(key)} {np.mean(own):.2f} -> {np.mean(last):.2f}")
    row = {"question": "Q3", "finding": "earlier strings are forgotten when later ones are "
           "learned", "factor": "stage",
           "shows": "mean accuracy on the earlier strings at the end of their own stage -> at "
                    "the end of the last: " + ("; ".join(texts) or "none")}
    rows.append({**row, **over_runs(drops, margin, "the accuracy fell by more than "
                                    f"{margin}", "fewer than 2 strings learned one after "
                                    "another")})
    # re-learned faster
    gains, texts = {}, []
    for key, g in runs:
        again = g.filter(pl.col("relearn"))
        first = g.filter(~pl.col("relearn") & (pl.col("trained") == 0))
        if again.height and first.height:
            a, b = first["epochs_to_memorize"][0], again["epochs_to_memorize"][-1]
            gains[key] = float((horizon if a is None else a) - (horizon if b is None else b))
            texts.append(f"{name(key)} {epochs(a)} then {epochs(b)} "
                         f"(from accuracy {again['start_accuracy'][-1]:.2f})")
    row = {"question": "Q3", "finding": "a forgotten string is re-learned faster than it was "
           "first learned", "factor": "relearn",
           "shows": "epochs to memorize the first string, first time then again: "
                    + ("; ".join(texts) or "no re-learning stage")}
    rows.append({**row, **over_runs(gains, 0.0, "fewer epochs the second time (never "
                                    f"memorized: {horizon})", "no re-learning stage "
                                    "(dynamics.sequential.relearn)")})
    return rows


def over_runs(values: Mapping[tuple[str, str], float], threshold: float, what: str,
              none: str) -> dict[str, Any]:
    """A sequential finding over training runs (`values`: (model, run) -> its value, one
    sequence per run): per arm (model, pretrained or random) with >= `MIN_RUNS` runs, the
    mean with its Student t interval over the runs (`LEVEL`); the arm agrees when the
    interval lies above `threshold`, disagrees when below, else is undetermined. The
    verdict: "agrees"/"disagrees" when every such arm does; "insufficient: N runs per arm"
    when no arm has `MIN_RUNS` runs (`none` when there are no values)."""
    arms: dict[tuple[str, str], list[float]] = {}
    for (model, run), v in values.items():
        arms.setdefault((model, init_arm(run)), []).append(v)
    out = {"estimate": None, "lo": None, "hi": None, "compared": len(values),
           "p_agrees": None, "p_disagrees": None}
    if not values:
        return {**out, "over": "no runs", "verdict": INSUFFICIENT, "reason": none}
    tested = {k: mean_t(v, LEVEL) for k, v in arms.items() if len(v) >= MIN_RUNS}
    counts = ", ".join(f"{m}/{a} {len(v)}" for (m, a), v in arms.items())
    if not tested:
        return {**out, "over": f"training runs per arm: {counts}", "verdict": INSUFFICIENT,
                "reason": f"insufficient: runs per arm {counts} (an interval over runs "
                          f"needs {MIN_RUNS}: dynamics.init_seed)"}
    calls = {k: AGREES if t["lo"] > threshold else DISAGREES if t["hi"] < threshold
             else INSUFFICIENT for k, t in tested.items()}
    if len(tested) == 1:
        t = next(iter(tested.values()))
        out.update(estimate=t["mean"], lo=t["lo"], hi=t["hi"])
    text = "; ".join(f"{m}/{a}: mean {t['mean']:+.2f} [{t['lo']:+.2f}, {t['hi']:+.2f}] over "
                     f"{t['n']} runs, {calls[m, a]}" for (m, a), t in tested.items())
    verdict = _combine(list(calls.values()))
    return {**out, "over": "training runs of " + ", ".join(f"{m}/{a} (n = {t['n']})" for
                                                           (m, a), t in tested.items())
            + "; an arm with fewer runs is shown, not tested",
            "verdict": verdict,
            "reason": f"{what}: {text} ({LEVEL:.0%} t interval against {threshold:g}; "
                      f"runs per arm {counts})"}


def unit_call(k: int, n: int) -> str:
    """"shows", "lacks" or "undetermined": an initialisation with k of its n strings in
    the phases, by its Wilson interval against `UNIT_SHARE`."""
    lo, hi = wilson(k, n)
    if lo is not None and lo > UNIT_SHARE:
        return "shows"
    if hi is not None and hi < UNIT_SHARE:
        return "lacks"
    return "undetermined"


def families_of(records: Sequence[str], dyn: Mapping[str, Any]) -> dict[str, str]:
    """Each Study B model's family: `dyn["families"][model]` where the config names one,
    else the model_type in its record (`records`: results/models/{model}/model.json)."""
    from pathlib import Path

    from vermem.core import files

    named = dyn.get("families") or {}
    return {Path(f).parts[-2]: named.get(Path(f).parts[-2]) or files.read_json(f)["model_type"]
            for f in records}


def family_table(phases: pl.DataFrame, families: Mapping[str, str]) -> pl.DataFrame:
    """One row per family (`families`: model -> family): its models, initialisations
    (model and init), how many show and lack the phases (`unit_call`), the share that show
    them with its Wilson interval over initialisations, and its strings pooled."""
    rows = []
    if not phases.height:
        return pl.DataFrame([], schema=FAMILY_COLUMNS)
    tagged = phases.with_columns(pl.col("model").replace_strict(
        dict(families), return_dtype=pl.String).alias("family"))
    for (fam,), g in tagged.sort("family", "model", "init").group_by("family",
                                                                     maintain_order=True):
        units = g.group_by("model", "init", maintain_order=True).agg(
            (pl.col("phase_order") == IN_ORDER).sum().alias("k"), pl.len().alias("n"))
        calls = [unit_call(k, n) for k, n in zip(units["k"], units["n"], strict=True)]
        n, show = units.height, calls.count("shows")
        lo, hi = wilson(show, n)
        rows.append({"family": fam, "models": ", ".join(g["model"].unique(maintain_order=True)),
                     "inits": n, "inits_showing": show, "inits_lacking": calls.count("lacks"),
                     "share": show / n, "share_lo": lo, "share_hi": hi,
                     "strings": g.height, "strings_with_phases": int(units["k"].sum()),
                     "string_share": float(units["k"].sum()) / g.height})
    return pl.DataFrame(rows, schema=FAMILY_COLUMNS)


def family_rows(phases: pl.DataFrame, families: Mapping[str, str],
                seed: int) -> list[dict[str, Any]]:
    """The family finding (module docstring: its rule): one row per family, then the
    verdict over families; with more than one family, `FAMILY_FACTORS` per family."""
    fams = family_table(phases, families)
    rows = []
    for r in fams.iter_rows(named=True):
        text = (f"{r['family']} ({r['models']}): initialisations showing the phases "
                f"{r['inits_showing']} of {r['inits']} (Wilson {LEVEL:.0%} "
                f"{r['share_lo']:.2f}-{r['share_hi']:.2f}, over initialisations), lacking "
                f"{r['inits_lacking']}; strings {r['strings_with_phases']} of {r['strings']}")
        if r["inits_showing"] == r["inits"]:
            verdict, why = AGREES, "every initialisation shows the phases"
        elif r["inits_lacking"] == r["inits"]:
            verdict, why = DISAGREES, "every initialisation lacks the phases"
        else:
            verdict, why = INSUFFICIENT, "some initialisation does not clearly show them"
        rows.append({"question": "families", "finding": f"the phases occur in family "
                     f"{r['family']}", "factor": "family", "shows": text,
                     "estimate": r["share"], "compared": r["inits"], "p_agrees": None,
                     "p_disagrees": None, "lo": r["share_lo"], "hi": r["share_hi"],
                     "over": f"initialisations (training runs) of family {r['family']}",
                     "verdict": verdict,
                     "reason": f"{why} (an initialisation shows them when the Wilson "
                               f"interval of its strings' share lies above {UNIT_SHARE})"})
    n = fams.height
    shows = "; ".join(f"{r['family']} {r['inits_showing']}/{r['inits']}"
                      for r in fams.iter_rows(named=True)) or "no strings"
    row = {"question": "families", "finding": FAMILY_FINDING, "factor": "family",
           "shows": f"initialisations showing the phases per family: {shows}",
           "estimate": float(fams["share"].min()) if n else None, "compared": n,
           "p_agrees": None, "p_disagrees": None, "over": f"{n} families"}
    lacking = [r["family"] for r in fams.iter_rows(named=True)
               if r["inits_lacking"] == r["inits"]]
    if n < 2:
        verdict, reason = INSUFFICIENT, (f"one family in the run ({fams['family'][0]})" if n
                                         else "no strings")
    elif lacking:
        verdict, reason = DISAGREES, (f"every initialisation of {', '.join(lacking)} lacks "
                                      f"the phases")
    elif all(r["inits_showing"] == r["inits"] for r in fams.iter_rows(named=True)):
        verdict, reason = AGREES, f"every initialisation of all {n} families shows the phases"
    else:
        verdict, reason = INSUFFICIENT, ("some family has an initialisation that does not "
                                         "clearly show or lack the phases")
    rows.append({**row, "verdict": verdict, "reason": reason + " (rule: docs/study-b.md, "
                 "Findings; estimate: the smallest family share)"})
    if n > 1:
        which = [f for f in Q1_FINDINGS if f[0] in FAMILY_FACTORS]
        tagged = phases.with_columns(pl.col("model").replace_strict(
            dict(families), return_dtype=pl.String).alias("family"))
        for fam in fams["family"]:
            rows += q1_rows(tagged.filter(pl.col("family") == fam).drop("family"), seed,
                            which, f" (family {fam})")
    return rows


def table(phases: pl.DataFrame, q3: pl.DataFrame, margin: float, seed: int,
          families: Mapping[str, str] | None = None, horizon: int = 150) -> pl.DataFrame:
    """Every finding's row: Q1 from the phases table, Q3 from the Q3 table (`horizon`: the
    sequential stages' epochs), and with `families` (model -> family: `families_of`) the
    family finding from the phases table."""
    family = [] if families is None else family_rows(phases, families, seed)
    rows = q1_rows(phases, seed) + q3_rows(q3, margin, seed, horizon) + family
    return pl.DataFrame([{k: r.get(k) for k in SCHEMA} for r in rows], schema=SCHEMA)


def _tagged(path: str) -> pl.DataFrame:
    """A per-run table with its model and init (from results/dynamics/{model}/{init}/...)."""
    from pathlib import Path

    model, init = Path(path).parts[-3:-1]
    return pl.read_parquet(path).select(pl.lit(model).alias("model"), pl.lit(init).alias("init"),
                                        pl.all())


def study_tables(inputs: Mapping[str, Sequence[str]], dyn: Mapping[str, Any], seed: int
                 ) -> tuple[dict[str, pl.DataFrame], dict[str, Any]]:
    """Rule dynamics_tables' tables over every model and init, from its input files
    (`inputs`: strings, summaries and model records per model; curves, q2 and sequential
    per model and init): per-epoch curves, phase boundaries, the Q1 table, Q2 accuracy per
    condition and k, Q3 stages, the sequential runs and the findings (config `dynamics`: `dyn`; the
    findings' bootstrap `seed`). Returns ({name: table}, the summary)."""
    from pathlib import Path

    from vermem.core import files
    from vermem.dynamics import strings

    keys = ["model", "init"]
    texts = pl.concat([pl.read_parquet(f).select(pl.lit(Path(f).parts[-2]).alias("model"),
                                                 pl.all()) for f in inputs["strings"]])
    n_params = {files.read_json(f)["model"]: files.read_json(f)["n_params"]
                for f in inputs["summaries"]}
    curves = pl.concat([strings.epoch_curves(_tagged(f), [*keys, "string_id", "seed"])
                        for f in inputs["curves"]])
    phases = pl.concat([
        strings.phases_table(g, texts.filter((pl.col("model") == m) & (pl.col("study") == "q1")),
                             keys, dyn["phases"])
        for (m,), g in curves.group_by("model", maintain_order=True)])
    phases = phases.with_columns(pl.col("model").replace_strict(n_params, return_dtype=pl.Int64)
                                 .alias("n_params")).sort(*keys, "string_id", "seed")
    q1 = strings.q1_table(phases)
    lengths = texts.filter(pl.col("study") == "q1").select("model", "string_id", "seed",
                                                           "length")
    q2 = strings.q2_table(pl.concat([_tagged(f) for f in inputs["q2"]]).join(
        lengths, on=["model", "string_id", "seed"]), keys)
    seq = pl.concat([_tagged(f) for f in inputs["sequential"]])
    q3 = strings.q3_table(seq, keys, dyn["sequential"]["hold_epochs"])
    found = table(phases, q3, dyn["phases"]["accuracy_rise"], seed,
                  families_of(inputs["records"], dyn), dyn["sequential"]["epochs"])
    tables = {"curves": curves, "phases": phases, "q1": q1, "q2": q2, "q3": q3,
              "sequential": seq, "findings": found}
    return tables, strings.summarize(phases, q1, q2, q3)
