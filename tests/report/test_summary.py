"""results/summary.md (vermem.report.summary), and the rule that README.md and docs/ quote no result
of their own: they link the generated summary."""

import re
from pathlib import Path

import polars as pl

from vermem.core.stats import wilson
from vermem.report import claims as CL
from vermem.report import summary

REPO = Path(__file__).resolve().parents[2]


def test_summary_reads_every_number_from_the_tables_with_n_and_interval():
    labels = {"samples": 110, "by_dup_count": [
        {"dup_count": 0, "n": 100, "extractable_share": 0.0},
        {"dup_count": 32, "n": 10, "extractable_share": 0.7}],
        "labels_per_subset": {"W": {"memorized": 7, "non-memorized": 90, "ambiguous": 13}}}
    pairs = {"split": {}, "divergence": {},
             "branch_comparison": {"W": {"pairs": 5, "attribution": 1, "selection": 1,
                                         "evaluation": 3, "d_mean": 4.0,
                                         "documents": {"evaluation": 2}}},
             "branch_comparison_control": {"W": {"pairs": 4, "attribution": 1, "selection": 1,
                                                 "evaluation": 2, "d_mean": 4.0,
                                                 "memorized_pairs": 5, "documents": {}}}}
    main = {"placement": "outside", "ablation": "resample"}
    minimal = [{"task": "branch_comparison", "subset": "W", "n_selection": 8, "n_pairs": 30,
                "circuits": [{"direction": "noising", "placement": "outside",
                              "ablation": "resample", "semantics": "prevention", "k": 16,
                              "n_edges": 463, "k_lo": 5.0, "k_hi": 60.0, "faithfulness": 0.83,
                              "faithfulness_lo": 0.77, "faithfulness_hi": 0.88,
                              "random_faithfulness": 0.0, "random_faithfulness_lo": 0.0,
                              "random_faithfulness_hi": 0.01}]}]
    claims = pl.DataFrame([{**{k: None for k in CL.CLAIM_SCHEMA}, "claim": "X", "semantics":
                            "prevention", "estimate": 0.5, "estimate_lo": 0.4,
                            "estimate_hi": 0.6, "n_pairs": 30, "verdict": "refuted",
                            "reason": "because"}], schema=CL.CLAIM_SCHEMA).with_columns(
                                pl.lit(7, dtype=pl.Int32).alias("min_documents"))
    from vermem.circuits import mib
    base = {"task": "branch_comparison", "subset": "W", "method": "EAP-IG",
            "direction": "noising", "placement": "outside", "ablation": "resample",
            "n_pairs": 30, "n_docs": 9, "faithfulness": None}
    mibt = pl.DataFrame([
        {**base, "circuit": "attribution", "cpr": 0.912, "cpr_lo": 0.881, "cpr_hi": 0.934,
         "cmd": 0.101, "cmd_lo": 0.08, "cmd_hi": 0.13, "log_area": 0.55, "log_area_lo": 0.5,
         "log_area_hi": 0.6},
        {**base, "circuit": "random", "cpr": 0.301, "cpr_lo": 0.25, "cpr_hi": 0.35,
         "cmd": 0.7, "cmd_lo": 0.65, "cmd_hi": 0.75, "log_area": 0.08, "log_area_lo": 0.07,
         "log_area_hi": 0.09},
        {**base, "placement": "inside", "circuit": "attribution", "cpr": 0.5, "cpr_lo": 0.4,
         "cpr_hi": 0.6, "cmd": 0.5, "cmd_lo": 0.4, "cmd_hi": 0.6}],
        schema={"task": pl.String, "subset": pl.String, **mib.SCHEMA})
    from vermem.circuits import method_comparison as M
    quality = pl.DataFrame([{"task": "branch_comparison", "subset": "W", "method": "exact",
                             "direction": "noising", "n_attribution": 40, "n_selection": 10,
                             "n_pairs": 30, "cpr": 0.97, "cpr_lo": 0.96,
                             "cpr_hi": 0.98, "cmd": 0.03, "cmd_lo": 0.02, "cmd_hi": 0.04,
                             "k": 16, "k_lo": 5.0, "k_hi": 40.0, "faithfulness": 0.83,
                             "faithfulness_lo": 0.8, "faithfulness_hi": 0.86}],
                           schema={"task": pl.String, "subset": pl.String, **M.QUALITY_SCHEMA})
    agree = pl.DataFrame([{"task": "branch_comparison", "subset": "W", "method_a": "EAP",
                           "method_b": "exact", "n_pairs": 40, "n_docs": 9,
                           "statistic": "spearman |score|", "k": 0, "value": 0.904,
                           "value_lo": 0.865, "value_hi": 0.927}],
                         schema={"task": pl.String, "subset": pl.String, **M.AGREEMENT_SCHEMA})
    text = summary.render({"organism": {"labels": labels, "pairs": pairs, "minimal": minimal,
                                        "claims": claims, "mib": mibt,
                                        "methods": (quality, agree)}}, None, main)
    assert ("| branch_comparison | W | noising | exact | 0.97 [0.96, 0.98] | 0.03 [0.02, 0.04] "
            "| 16 [5, 40] | 40 / 10 / 30 |") in text
    assert "| branch_comparison | EAP vs exact | 0.90 [0.86, 0.93] | 9 |" in text
    # the main mode's CPR / CMD next to the random rankings'; other modes are not shown
    assert ("| branch_comparison | W | noising | EAP-IG | 0.91 [0.88, 0.93] | 0.10 [0.08, "
            "0.13] | 0.30 [0.25, 0.35] | 0.70 [0.65, 0.75] | 0.55 [0.50, 0.60] | "
            "0.08 [0.07, 0.09] | 30 |") in text
    assert "0.50 [0.40, 0.60]" not in text
    lo, hi = wilson(7, 10)
    assert f"70.0% [{100 * lo:.1f}, {100 * hi:.1f}]" in text
    assert "0.0% [0.0, 3.7]" in text                      # 0 of 100, Wilson upper 3.7%
    assert "16 of 463 [5, 60]" in text and "0.83 [0.77, 0.88]" in text
    assert "noising (prevention)" in text and "denoising | none in the band" in text
    assert "| branch_comparison_control | W | 4 |" in text and "| 5 |" in text
    assert "**refuted**" in text and "0.500 [0.400, 0.600]" in text
    assert "| X | prevention | 0.500 [0.400, 0.600] | 30 | 7 | **refuted** | because |" in text


def test_circuit_rows_count_their_direction_s_small_gap_modes():
    c = {"direction": "noising", "placement": "outside", "ablation": "resample",
         "semantics": "prevention", "k": 16, "n_edges": 463, "k_lo": 5.0, "k_hi": 60.0}
    where = ["|M(full) - M(empty)| = 0.03 < 0.1 (noising/outside/resample, evaluation pairs)",
             "|M(full) - M(empty)| = 0.05 < 0.1 (noising/inside/zero, selection pairs)",
             "|M(full) - M(empty)| = 0.01 < 0.1 (denoising/outside/mean, evaluation pairs)"]
    rec = {"task": "branch_comparison", "subset": "W", "n_selection": 8, "n_pairs": 30,
           "circuits": [c, {**c, "direction": "denoising", "semantics": "induction"}],
           "small_gap": {"threshold": 0.1, "count": 3, "where": where}}
    lines = summary.circuits_section("m", [rec], {"placement": "outside",
                                                 "ablation": "resample"})
    text = "\n".join(lines)
    assert "| small gap |" in text and "< 0.1" in text
    rows = [ln for ln in lines if ln.startswith("| branch_comparison")]
    assert rows[0].startswith("| branch_comparison | W | noising") and rows[0].endswith("| 2 |")
    assert rows[1].startswith("| branch_comparison | W | denoising")
    assert rows[1].endswith("| 1 |")
    # a run whose minimal.json predates the record: no column rather than made-up zeros
    old = {k: v for k, v in rec.items() if k != "small_gap"}
    assert "small gap" not in "\n".join(summary.circuits_section(
        "m", [old], {"placement": "outside", "ablation": "resample"}))


INTERVAL = re.compile(r"-?\d+\.\d+ \[-?\d+\.\d+, -?\d+\.\d+\]")


def test_readme_and_docs_link_the_generated_summary_and_quote_no_interval():
    readme = (REPO / "README.md").read_text()
    assert "results/summary.md" in readme
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        found = INTERVAL.findall(path.read_text())
        assert not found, f"{path.name} quotes run results {found[:3]}: link results/summary.md"


def test_checkpoint_section_states_the_rules_and_shows_from_first_and_overlap():
    ck = {"target": 0.85, "min_documents": 3,
          "memorization": [{"by": "dup_count", "group": "4", "n": 6, "final_share": 1 / 6,
                            "emerges": None, "half": None},
                           {"by": "dup_count", "group": "2", "n": 2, "final_share": 1.0,
                            "emerges": None, "half": 10}],
          "graded": [{"by": "dup_count", "group": "4", "step": 20, "final": True, "n": 6,
                      "memorized": 1, "share": 1 / 6, "share_lo": 0.03, "share_hi": 0.56,
                      "match_fraction": 0.18, "match_fraction_lo": 0.02,
                      "match_fraction_hi": 0.49, "exact_prefix": 1.5, "exact_prefix_lo": 0.2,
                      "exact_prefix_hi": 3.8}],
          "circuits": [{"task": "bc", "subset": "W", "direction": "noising",
                        "semantics": "prevention", "n_pairs": 30, "final_k": 16,
                        "final_faithful": 10, "final_faithful_from": None,
                        "final_in_band": 10, "final_in_band_from": 20, "own_circuit": 10,
                        "overlap": [{"step": 10, "k": 4.0, "jaccard": 0.25,
                                     "overlap_coefficient": 1.0}]}]}
    text = "\n".join(summary.checkpoints_section("organism", ck))
    assert "with at least 3 documents memorized" in text
    assert "| dup_count 4 | 6 | 0.17 | none | none |" in text
    assert "| dup_count 2 | 2 | 1.00 | none (n = 2 < 3) | 10 |" in text
    assert ("| dup_count 4 | 20 (final) | 6 | 0.17 [0.03, 0.56] | 0.18 [0.02, 0.49] "
            "| 1.5 [0.2, 3.8] |") in text
    assert "| bc | W | prevention | 16 | 10 | none | 10 | 20 | 10 |" in text
    assert "| bc | prevention | 10 | 4 | 0.25 | 1.00 |" in text


def test_findings_section_puts_each_finding_next_to_the_run_with_its_verdict():
    from vermem.dynamics import findings as F

    rows = [{"question": "Q1", "finding": "longer strings are slower",
             "factor": "length", "shows": "16: 22 (16), 64: 54 (16)",
             "estimate": 1.0, "compared": 32, "p_agrees": 0.0001,
             "p_disagrees": 1.0, "over": "strings within each of the 4 training runs",
             "verdict": "agrees", "reason": "p = 0.0001"},
            {"question": "Q1", "finding": "larger models are faster",
             "factor": "n_params", "shows": "1: 35 (32)", "estimate": None,
             "compared": 0, "p_agrees": None, "p_disagrees": None,
             "verdict": "insufficient", "reason": "one level"},
            {"question": "Q1", "finding": "pretrained faster", "factor": "init",
             "shows": "runs", "estimate": 31.25, "lo": 12.5, "hi": 50.0, "compared": 3,
             "over": "random initialisations (n = 3)", "verdict": "agrees",
             "reason": "p = 0.01"}]
    found = pl.DataFrame([{k: r.get(k) for k in F.SCHEMA} for r in rows], schema=F.SCHEMA)
    text = "\n".join(summary.findings_section(found))
    assert ("| Q1 | longer strings are slower | 16: 22 (16), 64: 54 (16) | +1.00 | 32 | "
            "strings within each of the 4 training runs | **agrees** | p = 0.0001 |") in text
    assert "| Q1 | larger models are faster | 1: 35 (32) | n/a | 0 |  | **insufficient** |" \
        in text
    # a row with an interval over runs shows it next to its estimate
    assert ("| pretrained faster | runs | +31.25 [+12.50, +50.00] | 3 | random "
            "initialisations (n = 3) | **agrees** |") in text


def test_summary_html_keeps_headings_tables_and_escapes_text():
    md = "\n".join(["# What this run gives", "", "A `file` and **bold** <b>x</b>.", "",
                    "| a | b |", "|---|---|", "| 1 | 2 [0, 3] |", "| x<y | z |", "",
                    "### Next", "more"])
    html = summary.to_html(md)
    assert "<h1>What this run gives</h1>" in html and "<h3>Next</h3>" in html
    assert "<code>file</code>" in html and "<strong>bold</strong>" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert "<tr><th>a</th><th>b</th></tr>" in html
    assert "<tr><td>1</td><td>2 [0, 3]</td></tr><tr><td>x&lt;y</td><td>z</td></tr>" in html
    assert "|---|" not in html and html.count("<table>") == 1


def test_claims_html_is_a_table_of_every_claim_with_its_verdict():
    rows = [{**{k: None for k in CL.CLAIM_SCHEMA}, "claim": f"claim {i}", "semantics": "both",
             "estimate": 0.5, "estimate_lo": 0.4, "estimate_hi": 0.6, "n_pairs": 30,
             "verdict": v, "reason": "r & s", "test": "t"}
            for i, v in enumerate(CL.VERDICTS)]
    html = CL.to_html(pl.DataFrame(rows, schema=CL.CLAIM_SCHEMA), "m: claims")
    assert html.count("<tr") == 1 + len(CL.VERDICTS)
    assert "0.500 [0.400, 0.600]" in html and "r &amp; s" in html
    for v in CL.VERDICTS:
        assert f"<td>{v}</td>" in html


def test_mass_comparison_puts_each_task_against_its_control():
    from vermem.circuits.location import MASS_SCHEMA

    def row(task, subset, mass, reps, docs):
        return {"task": task, "subset": subset, "direction": "noising", "mass": mass,
                "mass_lo": min(reps), "mass_hi": max(reps), "edge_share": 0.22,
                "n_docs": docs, "n_pairs": 3 * docs, "replicates": reps, "injected": "m1"}

    mass = pl.DataFrame([
        row("bc", "A", 0.7, [0.68, 0.7, 0.72] * 10, 5),
        row("bc_control", "A", 0.5, [0.45, 0.5, 0.55] * 10, 9),
        row("bc", "B", 0.6, [0.5, 0.6, 0.7] * 10, 5),
        row("bc_control", "B", 0.6, [0.5, 0.6, 0.7][::-1] * 10, 9),
        row("bc", "C", 0.9, [0.9] * 30, 2),
        row("bc_control", "C", 0.1, [0.1] * 30, 9)],
        schema={"task": pl.String, "subset": pl.String, **MASS_SCHEMA})
    got = {r[1]: r for r in summary.mass_comparison(mass)}
    # replicate by replicate: 0.23, 0.20, 0.17
    assert got["A"][5] == "0.20 [0.17, 0.23]" and got["A"][8] == "more on the memorized pairs"
    assert got["B"][8] == "no difference shown (interval contains 0)"
    # two documents: the difference is shown, no verdict drawn from it
    assert got["C"][7] == "2 / 9" and got["C"][8].startswith("insufficient evidence: 2")


def test_location_section_shows_the_listed_sizes_with_the_random_range(tmp_path):
    from vermem.circuits.location import RECALL_SCHEMA

    rows = [{"size": s, "k": k, "touched": t, "recall": r, "recall_lo": r / 2, "recall_hi": r,
             "n_docs": 7, "random_recall": 0.25, "random_lo": 0.0, "random_hi": 0.5,
             "random_at_least": p}
            for s, k, t, r, p in (("minimal", 12, 9, 1.0, 0.03), ("0.001", 1, 2, 0.0, 1.0),
                                  ("0.01", 4, 5, 0.5, 0.4))]
    paths = []
    for task in ("branch_comparison_control", "branch_comparison"):
        path = tmp_path / "m" / task / "docs" / "location.parquet"
        path.parent.mkdir(parents=True)
        pl.DataFrame(rows, schema=RECALL_SCHEMA).with_columns(
            pl.lit("noising").alias("direction"), pl.lit("a1.h2,m2").alias("injected"),
            pl.lit(40).alias("attribution_pairs")).write_parquet(path)
        paths.append(path)
    loc = summary.stack_location(paths)
    text = "\n".join(summary.location_section("m", loc))
    assert "Injected components: a1.h2, m2." in text
    assert ("| branch_comparison | docs | noising | minimal | 12 | 9 | 1.00 [0.50, 1.00] | "
            "0.25 [0.00, 0.50] | 0.03 | 40 | 7 |") in text
    assert "| 1% of edges | 4 | 5 | 0.50 [0.25, 0.50] |" in text
    # each task's row, then its control's at the same size
    lines = [x for x in text.splitlines() if "| minimal |" in x]
    assert [x.split(" | ")[0] for x in lines] == ["| branch_comparison",
                                                  "| branch_comparison_control"]
    assert "0.1% of edges" not in text   # sizes outside LOCATION_SIZES are left to the table
    # a ranking from no attribution pairs is no ranking: no recall, no p
    none = loc.with_columns(pl.lit(0).alias("attribution_pairs"))
    text = "\n".join(summary.location_section("m", none))
    assert "| minimal | 12 | 9 | n/a (no attribution pairs) | 0.25 [0.00, 0.50] | n/a" in text
    assert "| 1.00 |" not in text


def _headline_models():
    claims = pl.DataFrame([
        {**{k: None for k in CL.CLAIM_SCHEMA}, "claim": CL.CLAIM_1, "semantics": "prevention",
         "estimate": 0.01, "estimate_lo": -0.02, "estimate_hi": 0.03, "n_pairs": 30,
         "verdict": "supported", "reason": "r", "size": "MD minimal size", "specific": "no"},
        {**{k: None for k in CL.CLAIM_SCHEMA},
         "claim": CL.SPECIFIC.format(task="Branch Comparison"), "semantics": "prevention",
         "estimate": 0.0, "estimate_lo": -0.05, "estimate_hi": 0.04, "n_pairs": 30,
         "verdict": "refuted", "reason": "as faithful"}], schema=CL.CLAIM_SCHEMA)
    c = {"direction": "noising", "placement": "outside", "ablation": "resample",
         "semantics": "prevention", "k": 265, "n_edges": 463, "k_lo": 26.0, "k_hi": 463.0,
         "k_unresolved_share": 0.0, "faithfulness": 0.80, "faithfulness_lo": 0.74,
         "faithfulness_hi": 0.86, "band": "below", "selection_faithfulness": 0.86,
         "random_faithfulness": 0.25, "random_faithfulness_lo": 0.2,
         "random_faithfulness_hi": 0.3}
    minimal = [{"task": "branch_comparison", "subset": "W", "n_selection": 24, "n_pairs": 30,
                "band": [0.85, 1.15], "circuits": [c]}]
    pairs = {"split": {}, "branch_comparison": {"W": {"pairs": 160, "attribution": 40,
                                                      "selection": 60, "evaluation": 60}}}
    labels = {"samples": 1, "by_dup_count": [], "labels_per_subset": {}}
    return {"organism": {"labels": labels, "pairs": pairs, "minimal": minimal,
                         "claims": claims}}


def test_headline_comes_first_and_links_its_tables():
    main = {"placement": "outside", "ablation": "resample"}
    text = summary.render(_headline_models(), None, main)
    lines = text.splitlines()
    head = lines[:20]
    assert "## Headline" in head
    i = head.index("## Headline")
    block = lines[i + 1:lines.index("## Study A: organism")]
    assert 3 <= len([ln for ln in block if ln.strip()]) <= 15
    body = "\n".join(block)
    # faithful circuits: the evaluation F below the band, above random, the size unidentified
    assert "0 of 1 with evaluation F in the band [0.85, 1.15]" in body
    assert "1 of 1 above random" in body and "0.80 [0.74, 0.86]" in body
    assert "1 size(s) not identified" in body
    # specificity counts, and the qualifier on the claim
    assert "1 refuted" in body
    assert "**supported** (not specific to memorization)" in body
    # every link points at an anchor the summary has
    links = re.findall(r"\]\(#([a-z0-9-]+)\)", body)
    assert {"minimal-circuits-organism", "claims-organism"} <= set(links)
    for a in links:
        assert f'<a id="{a}"></a>' in text, a
    # the tables say what they mean: selection and evaluation F, the band, the rule, the cap
    assert "| 265 of 463 [26, 463] | no: size interval [26, 463] spans more than a decade |" \
        " 0.86 | 0.80 [0.74, 0.86] | no (below) |" in text
    assert "circuits.max_pairs" in text and "evaluation: 30 of 60" in text
    # the HTML front page keeps the headline's links and anchors
    html = summary.to_html(text)
    assert '<a href="#claims-organism">' in html and '<a id="claims-organism"></a>' in html
    assert html.index("Headline") < html.index("Study A: organism")


def test_localization_line_only_with_a_table():
    assert summary.localization_line("m", None) is None
    assert summary.localization_line("m", pl.DataFrame({"verdict": []}, schema={
        "verdict": pl.String})) is None
    line = summary.localization_line("m", pl.DataFrame(
        {"verdict": ["more on the memorized pairs", "more on the memorized pairs", "no"]}))
    assert "more on the memorized pairs: 2" in line and "#location-m" in line


def test_model_sizes_and_counts_read_as_people_read_them():
    assert summary.human(1_300_000) == "1.3M" and summary.human(45_100) == "45.1k"
    assert summary.human(950) == "950"
    assert summary._k(44.0) == "44" and summary._k(89.6) == "90"


def test_study_b_headline_names_every_finding_it_counts():
    """The Study B line counts each verdict over all findings, family rows included, and
    names exactly the rows behind the agree and disagree counts."""
    found = pl.DataFrame({
        "question": ["Q1", "Q1", "Q3", "families"],
        "finding": ["slower for longer strings", "slower for larger alphabets",
                    "re-learned faster", "the phases occur in family gpt_neox"],
        "verdict": ["agrees", "disagrees", "insufficient", "disagrees"]})
    line = summary.findings_line(found)
    counts = dict((v, int(n)) for n, v in re.findall(r"(\d+) (agrees|disagrees|insufficient)",
                                                     line))
    assert counts == {"agrees": 1, "disagrees": 2, "insufficient": 1}
    named = line.split("disagrees: ")[1]
    assert "slower for larger alphabets" in named and "family gpt_neox" in named
    assert "re-learned faster" not in line
