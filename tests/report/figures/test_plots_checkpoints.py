"""Figures of Study A across training checkpoints, drawn from synthetic gathered tables
(the columns of results/checkpoints/{model}/memorization.parquet and circuits.parquet)."""

import math
from pathlib import Path
from types import SimpleNamespace

import matplotlib.colors as mcolors
import polars as pl
import pytest

from vermem.report.figures import checkpoints, study_a

REPO = Path(__file__).resolve().parents[3]
ORGANISM_STEPS = [150, 300, 450, 600, 750, 900]  # 5 checkpoints + the final model
PYTHIA_STEPS = [1000, 2000, 4000, 8000, 16000, 32000, 64000, 143000]
DUPS = {"0": 2141, "1": 18963, "4": 96, "16": 192, "32": 1440, "64": 192}
FINAL_RATE = {"0": 0.0, "1": 0.001, "4": 0.0, "16": 0.69, "32": 0.97, "64": 1.0}  # fresh run
SUBSETS = ["Python Reference", "StdLib Code", "StdLib Docstrings"]
MEM_SCHEMA = {"model": pl.String, "checkpoint": pl.String, "step": pl.Int64,
              "final": pl.Boolean, "by": pl.String, "group": pl.String, "n": pl.Int64,
              "memorized": pl.Int64, "share": pl.Float64, "share_lo": pl.Float64,
              "share_hi": pl.Float64}
FLOATS = ["logit_gap", "logit_gap_lo", "logit_gap_hi", "k", "k_lo", "k_hi", "faithfulness",
          "faithfulness_lo", "faithfulness_hi", "final_faithfulness", "final_faithfulness_lo",
          "final_faithfulness_hi", "final_random_faithfulness", "jaccard", "rank_corr"]
CIRCUIT_SCHEMA = {"model": pl.String, "checkpoint": pl.String, "step": pl.Int64,
                  "final": pl.Boolean, "task": pl.String, "subset": pl.String,
                  "direction": pl.String, "semantics": pl.String, "n_pairs": pl.Int64,
                  "n_selection": pl.Int64, "n_edges": pl.Int64, "final_k": pl.Int64,
                  **dict.fromkeys(FLOATS, pl.Float64)}
MEANING = {("branch_comparison", "noising"): "prevention",
           ("branch_comparison", "denoising"): "induction",
           ("memorization_decision", "noising"): "induction",
           ("memorization_decision", "denoising"): "prevention"}


@pytest.fixture(autouse=True)
def _close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def _wilson(m: int, n: int) -> tuple[float | None, float | None, float | None]:
    if n == 0:
        return None, None, None
    z, p = 1.959964, m / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, mid - half), min(1.0, mid + half)


def _checkpoint(step: int, steps: list[int], model: str) -> str:
    if step == steps[-1]:
        return "final" if model == "organism" else "main"
    return f"t{steps.index(step)}" if model == "organism" else f"step{step}"


def memorization(steps=ORGANISM_STEPS, model="organism", dup_counts=True,
                 subsets=("StdLib Code",), empty_group: str | None = None) -> pl.DataFrame:
    """Shares that rise with training, faster the more often a document was seen."""
    rows = []
    for step in steps:
        t = steps.index(step) / (len(steps) - 1)
        groups = ([("dup_count", g, n, FINAL_RATE[g] * t ** (32 / max(1, int(g))) ** 0.5)
                   for g, n in DUPS.items()]
                  if dup_counts else [])
        groups += [("subset", s, 400 + 50 * i, 0.05 * (i + 1) * t)
                   for i, s in enumerate(subsets)]
        for by, group, n, rate in groups:
            n = 0 if group == empty_group else n
            m = round(rate * n)
            share, lo, hi = _wilson(m, n)
            rows.append({"model": model, "checkpoint": _checkpoint(step, steps, model),
                         "step": step, "final": step == steps[-1], "by": by, "group": group,
                         "n": n, "memorized": m, "share": share, "share_lo": lo,
                         "share_hi": hi})
    return pl.DataFrame(rows, schema=MEM_SCHEMA)


def circuits(steps=ORGANISM_STEPS, model="organism", subsets=("StdLib Code",),
             tasks=("branch_comparison", "memorization_decision")) -> pl.DataFrame:
    """The final circuit becomes faithful late in training; early checkpoints find no
    circuit of their own (k, F and Jaccard null at the first step)."""
    rows = []
    for step in steps:
        t = steps.index(step) / (len(steps) - 1)
        first = step == steps[0]
        for task in tasks:
            for s, subset in enumerate(subsets):
                for direction in ("noising", "denoising"):
                    sem = MEANING[(task, direction)]
                    k = None if first else 400 * (1 - t) + 12 + 5 * s
                    f = 0.05 + (0.85 - 0.15 * s) * t ** (2 + s) + (
                        0.1 if sem == "induction" else 0.0)
                    gap = 0.2 + (4 - s) * t
                    late = 0.5 if sem == "induction" else 0.0
                    rows.append({
                        "model": model, "checkpoint": _checkpoint(step, steps, model),
                        "step": step, "final": step == steps[-1], "task": task,
                        "subset": subset, "direction": direction, "semantics": sem,
                        "n_pairs": 30, "n_selection": 16 - s, "n_edges": 463,
                        "final_k": 16 + 5 * s,
                        "logit_gap": gap, "logit_gap_lo": gap - 0.3, "logit_gap_hi": gap + 0.3,
                        "k": k, "k_lo": None if k is None else 0.5 * k,
                        "k_hi": None if k is None else 1.6 * k,
                        "faithfulness": None if k is None else 0.9,
                        "faithfulness_lo": None if k is None else 0.8,
                        "faithfulness_hi": None if k is None else 1.0,
                        "final_faithfulness": f, "final_faithfulness_lo": f - 0.15,
                        "final_faithfulness_hi": f + 0.15,
                        "final_random_faithfulness": 0.02 * t,
                        "jaccard": None if k is None else t ** (1 + s + late),
                        "rank_corr": 2 * t ** (0.5 + s / 2 + late) - 1})
    return pl.DataFrame(rows, schema=CIRCUIT_SCHEMA)


def _texts(fig) -> str:
    return " | ".join(t.get_text() for ax in fig.axes for t in ax.texts + [ax.title]) + (
        " | " + fig._suptitle.get_text() if fig._suptitle else "")


def _legend_labels(holder) -> list[str]:
    """The labels of an axes' legend, or of a figure's (one legend below all panels)."""
    legend = holder.legends[0] if hasattr(holder, "legends") else holder.get_legend()
    return [t.get_text() for t in legend.get_texts()]


def _data_lines(ax):
    """Lines drawn from the table: markers on (one shape per line), more than zero points."""
    return [ln for ln in ax.get_lines() if ln.get_marker() in checkpoints._MARKERS
            and len(ln.get_xdata())]


def _vertical_at(ax, x) -> bool:
    return any(list(ln.get_xdata()) == [x, x] and ln.get_linestyle() == ":"
               for ln in ax.get_lines())


def _horizontal_levels(ax, ls="--") -> list[float]:
    return sorted(ln.get_ydata()[0] for ln in ax.get_lines()
                  if ln.get_linestyle() == ls and len(set(ln.get_ydata())) == 1
                  and list(ln.get_xdata()) == [0, 1])


# -- memorization ----------------------------------------------------------------------------

def test_organism_memorization_has_a_line_per_duplicate_count_in_numeric_order():
    fig = checkpoints.checkpoint_memorization(memorization(), "organism")
    ax = fig.axes[0]
    labels = _legend_labels(ax)
    assert labels == ["unseen (n = 2141)", "seen 1× (n = 18963)", "seen 4× (n = 96)",
                      "seen 16× (n = 192)", "seen 32× (n = 1440)", "seen 64× (n = 192)"]
    lines = _data_lines(ax)
    assert len(lines) == 6 and all(len(ln.get_xdata()) == 6 for ln in lines)
    # the line of 64x ends at the share of the final row, 32x below it, unseen at 0
    final = memorization().filter(pl.col("final") & (pl.col("by") == "dup_count"))
    want = dict(zip(final["group"], final["share"], strict=True))
    assert lines[-1].get_ydata()[-1] == pytest.approx(want["64"])
    assert lines[0].get_ydata()[-1] == pytest.approx(0.0)
    assert lines[4].get_ydata()[-1] == pytest.approx(want["32"])
    assert 0.9 < want["32"] < 1.0
    assert ax.get_ylim()[0] <= 0 and ax.get_ylim()[1] >= 1 and ax.get_ylim()[1] < 1.1
    assert ax.get_xscale() == "linear"
    assert [int(x) for x in ax.get_xticks()] == ORGANISM_STEPS
    assert _vertical_at(ax, 900) and "final" in _texts(fig)
    assert "n = 23024 documents" in _texts(fig) and "organism" in _texts(fig)
    # one set of Wilson error bars per group (bands of several groups merged into one
    # block), the final 32x bar's top at its upper bound, every point at its own step
    bars = ax.collections
    assert len(bars) == 6
    top = bars[4].get_paths()[-1].vertices[:, 1].max()
    assert top == pytest.approx(final.filter(pl.col("group") == "32")["share_hi"][0])
    assert all(list(ln.get_xdata()) == ORGANISM_STEPS for ln in lines)


def test_hub_memorization_has_a_line_per_subset_and_a_log_step_axis():
    df = memorization(PYTHIA_STEPS, "pythia-160m", dup_counts=False, subsets=SUBSETS)
    fig = checkpoints.checkpoint_memorization(df, "pythia-160m")
    ax = fig.axes[0]
    assert _legend_labels(ax) == ["Python Reference (n = 400)", "StdLib Code (n = 450)",
                                  "StdLib Docstrings (n = 500)"]
    assert len(_data_lines(ax)) == 3
    assert ax.get_xscale() == "log"
    assert _vertical_at(ax, 143000)


def test_unknown_duplicate_counts_fall_back_to_subsets_or_are_named():
    hub = memorization(PYTHIA_STEPS, "pythia-160m", dup_counts=False, subsets=SUBSETS)
    unknown = hub.filter(pl.col("group") == SUBSETS[0]).with_columns(
        pl.lit("dup_count").alias("by"), pl.lit("None").alias("group"))
    ax = checkpoints.checkpoint_memorization(pl.concat([hub, unknown]), "p").axes[0]
    assert _legend_labels(ax) == ["Python Reference (n = 400)", "StdLib Code (n = 450)",
                                  "StdLib Docstrings (n = 500)"]
    organism = memorization()
    mixed = pl.concat([organism, unknown.with_columns(
        pl.lit(900, dtype=pl.Int64).alias("step"), pl.lit(True).alias("final"))])
    labels = _legend_labels(checkpoints.checkpoint_memorization(mixed, "organism").axes[0])
    assert labels[0] == "unseen (n = 2141)" and labels[-1] == "count unknown (n = 400)"
    assert len(labels) == 7


def test_a_group_with_no_samples_draws_nothing_and_says_n_0():
    df = memorization(empty_group="4")
    fig = checkpoints.checkpoint_memorization(df, "organism")
    ax = fig.axes[0]
    assert "seen 4× (n = 0)" in _legend_labels(ax)
    assert sorted(len(ln.get_xdata()) for ln in _data_lines(ax)) == [6] * 5
    everything = df.with_columns(pl.lit(0, dtype=pl.Int64).alias("n"),
                                 *[pl.lit(None, dtype=pl.Float64).alias(c)
                                   for c in ("share", "share_lo", "share_hi")])
    fig = checkpoints.checkpoint_memorization(everything, "organism")
    assert "every group has n = 0" in _texts(fig)


def test_empty_tables_give_a_figure_that_says_n_0():
    for fig in (checkpoints.checkpoint_memorization(pl.DataFrame(schema=MEM_SCHEMA), "m"),
                checkpoints.checkpoint_circuits(pl.DataFrame(schema=CIRCUIT_SCHEMA), "m", 0.85),
                checkpoints.checkpoint_overlap(pl.DataFrame(schema=CIRCUIT_SCHEMA), "m")):
        assert "(n = 0)" in _texts(fig)


# -- circuits --------------------------------------------------------------------------------

def test_organism_circuits_columns_are_tasks_and_lines_are_semantics():
    df = circuits()
    fig = checkpoints.checkpoint_circuits(df, "organism", 0.85)
    grid = [ax for ax in fig.axes if ax.get_visible()]
    assert len(grid) == 6  # 3 rows x 2 tasks
    k_ax, f_ax, g_ax = grid[0], grid[2], grid[4]
    assert grid[0].get_title().startswith("branch comparison")
    assert grid[1].get_title().startswith("memorization decision")
    assert "n = 30 evaluation, 16 selection pairs" in grid[0].get_title()
    labels = _legend_labels(fig)
    assert labels[0].startswith("prevention") and labels[1].startswith("induction")
    assert "branch comparison: noising" in labels[0]
    assert "memorization decision: denoising" in labels[0]
    # the faithfulness band at target and 2 - target, a zero line, the random circuits
    assert _horizontal_levels(f_ax) == pytest.approx([0.85, 1.15])
    assert _horizontal_levels(f_ax, "-") == [0]
    dotted = [ln for ln in f_ax.get_lines() if ln.get_linestyle() == ":"
              and len(ln.get_xdata()) > 2]
    assert len(dotted) == 2
    # k is null at the first checkpoint: 5 of 6 points, the y axis log (sizes span > 20x)
    k_lines = _data_lines(k_ax)
    assert sorted(len(ln.get_xdata()) for ln in k_lines) == [5, 5]
    assert k_ax.get_yscale() == "log"
    # F of the final circuit: the 5 steps where it is defined (at step 150 the logit gap's
    # interval [-0.1, 0.5] contains 0: not drawn, and said so), prevention's last point as
    # in the table
    f_lines = _data_lines(f_ax)
    assert [list(ln.get_xdata()) for ln in f_lines] == [ORGANISM_STEPS[1:]] * 2
    assert "F undefined (not drawn) at step 150" in _texts(fig)
    want = df.filter(pl.col("final") & (pl.col("task") == "branch_comparison")
                     & (pl.col("semantics") == "prevention"))["final_faithfulness"][0]
    assert mcolors.same_color(f_lines[0].get_color(), "C0")
    assert f_lines[0].get_ydata()[-1] == pytest.approx(want)
    assert all(ax.get_xscale() == "linear" for ax in grid)
    assert all(_vertical_at(ax, 900) for ax in grid)
    # both meanings of a task share their pairs, hence their logit gap: drawn once, in grey
    gap = _data_lines(g_ax)
    assert len(gap) == 1 and mcolors.same_color(gap[0].get_color(), "0.25")
    assert gap[0].get_ydata()[-1] == pytest.approx(4.2)
    assert "logit gap: both meanings\n(the same pairs)" in labels
    differ = df.with_columns(pl.when(pl.col("semantics") == "induction")
                             .then(pl.col("logit_gap") + 1).otherwise(pl.col("logit_gap"))
                             .alias("logit_gap"))
    g_ax = checkpoints.checkpoint_circuits(differ, "organism", 0.85).axes[4]
    assert [ln.get_ydata()[-1] for ln in _data_lines(g_ax)] == pytest.approx([4.2, 5.2])


def test_small_size_range_keeps_a_linear_size_axis():
    df = circuits().with_columns(pl.col("k_lo").clip(10, 30), pl.col("k").clip(10, 30),
                                 pl.col("k_hi").clip(10, 30))
    fig = checkpoints.checkpoint_circuits(df, "organism", 0.8)
    assert fig.axes[0].get_yscale() == "linear"
    assert _horizontal_levels(fig.axes[2]) == pytest.approx([0.8, 1.2])


def test_pythia_circuits_facet_by_semantics_with_a_line_per_subset_on_a_log_step_axis():
    df = circuits(PYTHIA_STEPS, "pythia-160m", subsets=SUBSETS)
    fig = checkpoints.checkpoint_circuits(df, "pythia-160m", 0.85)
    grid = [ax for ax in fig.axes if ax.get_visible()]
    assert len(grid) == 12  # 3 rows x (2 tasks x 2 meanings)
    titles = [ax.get_title() for ax in grid[:4]]
    assert "branch comparison\nprevention (noising)" in titles[0]
    assert "memorization decision\ninduction (noising)" in titles[3]
    assert "14–16 selection pairs" in titles[0]
    assert _legend_labels(fig)[:3] == SUBSETS
    assert all(ax.get_xscale() == "log" for ax in grid)
    assert all(_vertical_at(ax, 143000) for ax in grid)
    assert [len(_data_lines(ax)) for ax in grid] == [3] * 12


def test_null_circuit_values_do_not_crash_and_an_empty_panel_says_so():
    df = circuits().with_columns(
        pl.when(pl.col("task") == "memorization_decision").then(None)
        .otherwise(pl.col(c)).alias(c) for c in FLOATS)
    fig = checkpoints.checkpoint_circuits(df, "organism", 0.85)
    text = _texts(fig)
    assert "no minimal circuit reached the band" in text
    assert "no F of the final circuit" in text and "no logit gap" in text
    assert text.count("no minimal circuit reached the band") == 1
    assert len(_data_lines(fig.axes[1])) == 0 and len(_data_lines(fig.axes[0])) == 2
    fig = checkpoints.checkpoint_overlap(df, "organism")
    assert "no Jaccard" in _texts(fig) and "no rank correlation" in _texts(fig)


def test_one_task_few_checkpoints_and_a_row_without_a_step_are_drawn():
    df = circuits(tasks=("memorization_decision",)).filter(pl.col("step") >= 750)
    df = pl.concat([df, df.head(1).with_columns(pl.lit(None, dtype=pl.Int64).alias("step"))])
    # bottom rows: the shared logit gap (one line), the rank correlation (one per meaning)
    for fig, lines in ((checkpoints.checkpoint_circuits(df, "organism", 0.85), [2]),
                       (checkpoints.checkpoint_overlap(df, "organism"), [2, 2])):
        assert fig.axes[0].get_title().startswith("memorization decision")
        assert _vertical_at(fig.axes[0], 900)
        assert [int(x) for x in fig.axes[-1].get_xticks()] == [750, 900]
        assert [len(ln.get_xdata()) for ln in _data_lines(fig.axes[-1])] == lines
    mem = memorization().filter(pl.col("final"))
    ax = checkpoints.checkpoint_memorization(mem, "organism").axes[0]
    assert [int(x) for x in ax.get_xticks()] == [900]
    assert [len(ln.get_xdata()) for ln in _data_lines(ax)] == [1] * 6


def test_faithfulness_beyond_the_axis_is_marked_at_its_edge():
    df = circuits().with_columns(pl.when(pl.col("step") == 300).then(-40.0)
                                 .otherwise(pl.col("final_faithfulness"))
                                 .alias("final_faithfulness"))
    f_ax = checkpoints.checkpoint_circuits(df, "organism", 0.85).axes[2]
    low = f_ax.get_ylim()[0]
    assert -2 < low < -1
    marks = [ln for ln in f_ax.get_lines() if ln.get_marker() == "v"]
    assert marks and list(marks[0].get_xdata()) == [300]


def test_overlap_has_jaccard_and_rank_correlation_rows_with_their_ranges():
    df = circuits()
    fig = checkpoints.checkpoint_overlap(df, "organism")
    j_ax, r_ax = fig.axes[0], fig.axes[2]
    assert j_ax.get_ylim() == pytest.approx((-0.03, 1.03))
    assert r_ax.get_ylim() == pytest.approx((-1.05, 1.05))
    assert [len(ln.get_xdata()) for ln in _data_lines(j_ax)] == [5, 5]  # undefined at 150
    assert [len(ln.get_xdata()) for ln in _data_lines(r_ax)] == [6, 6]
    assert _data_lines(r_ax)[0].get_ydata()[0] == pytest.approx(-1.0)
    assert _vertical_at(j_ax, 900)
    pythia = checkpoints.checkpoint_overlap(circuits(PYTHIA_STEPS, "p", subsets=SUBSETS), "p")
    assert all(ax.get_xscale() == "log" for ax in pythia.axes)


def test_step_axis_is_log_only_beyond_a_twenty_fold_span():
    import matplotlib.pyplot as plt

    for steps, scale in (([1000, 20000], "linear"), ([1000, 21000], "log"),
                         ([0, 1000, 143000], "symlog")):
        fig, ax = plt.subplots()
        checkpoints._step_axis(ax, steps, steps[-1])
        assert ax.get_xscale() == scale
        plt.close(fig)


# -- the rule script -------------------------------------------------------------------------

class _Wildcards(dict):
    """Snakemake's wildcards: a mapping whose keys are also attributes."""

    __getattr__ = dict.__getitem__


def test_rule_script_writes_three_pngs(tmp_path, monkeypatch):
    mem, circ = tmp_path / "memorization.parquet", tmp_path / "circuits.parquet"
    memorization().write_parquet(mem)
    circuits().write_parquet(circ)
    out = {k: tmp_path / f"{k}.png" for k in ("memorization", "circuits", "overlap")}
    snakemake = SimpleNamespace(
        input=SimpleNamespace(memorization=str(mem), circuits=str(circ)),
        output=SimpleNamespace(**{k: str(v) for k, v in out.items()}),
        params=SimpleNamespace(target=0.85), log=[str(tmp_path / "log")],
        wildcards=_Wildcards(model="organism"), rule="figure_checkpoints", threads=1)
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    script = REPO / "scripts" / "figure_checkpoints.py"
    exec(compile(script.read_text(), str(script), "exec"), {"snakemake": snakemake})
    for path in out.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert "done" in (tmp_path / "log").read_text()


def test_graded_scores_get_panels_below_the_share_with_their_own_values():
    mem = memorization().with_columns(
        (pl.col("share") * 0.9 + 0.05).alias("match_fraction"),
        (pl.col("share") * 0.8).alias("match_fraction_lo"),
        (pl.col("share") + 0.1).clip(upper_bound=1.0).alias("match_fraction_hi"),
        (pl.col("share") * 32).alias("exact_prefix"),
        (pl.col("share") * 30).alias("exact_prefix_lo"),
        (pl.col("share") * 32 + 1).alias("exact_prefix_hi"))
    fig = checkpoints.checkpoint_memorization(mem, "organism")
    share, match, prefix = fig.axes[:3]
    assert "match fraction" in match.get_ylabel() and "exact prefix" in prefix.get_ylabel()
    want = mem.filter(pl.col("final") & (pl.col("by") == "dup_count") & (pl.col("group") == "64"))
    assert _data_lines(match)[-1].get_ydata()[-1] == pytest.approx(want["match_fraction"][0])
    assert _data_lines(prefix)[-1].get_ydata()[-1] == pytest.approx(want["exact_prefix"][0])
    assert prefix.get_ylim()[1] > 30 and match.get_ylim() == pytest.approx((-0.03, 1.03))
    # a table without the graded columns (or with them all null) keeps the one panel
    assert len(checkpoints.checkpoint_memorization(memorization(), "organism").axes) == 1
    nulls = mem.with_columns(pl.lit(None, pl.Float64).alias(c) for c in mem.columns
                             if c.startswith(("match_fraction", "exact_prefix")))
    assert len(checkpoints.checkpoint_memorization(nulls, "organism").axes) == 1


def test_overlap_coefficient_is_drawn_dashed_next_to_jaccard():
    df = circuits().with_columns(
        pl.when(pl.col("jaccard").is_null()).then(None).otherwise(1.0)
        .alias("overlap_coefficient"))
    j_ax = checkpoints.checkpoint_overlap(df, "organism").axes[0]
    dashed = [ln for ln in _data_lines(j_ax) if ln.get_linestyle() == "--"]
    solid = [ln for ln in _data_lines(j_ax) if ln.get_linestyle() == "-"]
    assert len(dashed) == len(solid) == 2
    assert all(list(ln.get_ydata()) == [1.0] * 5 for ln in dashed)


def test_each_memorization_figure_names_its_own_definition_of_memorized():
    ax = checkpoints.checkpoint_memorization(memorization(), "organism").axes[0]
    assert "threshold label" in ax.get_ylabel() and "start" in ax.get_ylabel()
    assert "k-extractable" not in ax.get_ylabel()
    labels = pl.DataFrame({"subset": ["A"] * 4, "dup_count": [0, 0, 16, 16],
                           "extractable": [False, False, True, False],
                           "label": ["non-memorized"] * 2 + ["memorized", "ambiguous"]})
    dup = study_a.rate_by_duplicates(labels, "m").axes[0]
    assert "k-extractable" in dup.get_ylabel() and "all windows" in dup.get_ylabel()
    assert "threshold" not in dup.get_ylabel()


@pytest.mark.parametrize("steps", [[0, 302, 604, 906, 1208, 1509], [0, *PYTHIA_STEPS]])
def test_circuit_points_sit_at_their_steps_and_undefined_steps_draw_no_size_or_f(steps):
    """Issue 31: a log-axis offset (a factor of max/min step) on a linear axis moved the
    final point to 1377 or 1654 instead of 1509. Every size and F point lies at its step;
    at step 0, where the model does not tell clean from corrupt (gap interval contains 0),
    neither k nor F is drawn."""
    df = circuits(steps).with_columns(
        pl.when(pl.col("step") == 0).then(0.0).otherwise(pl.col("logit_gap")).alias("logit_gap"),
        pl.when(pl.col("step") == 0).then(-0.2).otherwise(pl.col("logit_gap_lo"))
        .alias("logit_gap_lo"),
        pl.when(pl.col("step") == 0).then(0.2).otherwise(pl.col("logit_gap_hi"))
        .alias("logit_gap_hi"),
        pl.when(pl.col("step") == 0).then(50.0).otherwise(pl.col("k")).alias("k"))
    fig = checkpoints.checkpoint_circuits(df, "organism", 0.85)
    k_ax, f_ax = fig.axes[0], fig.axes[2]
    for ax in (k_ax, f_ax):
        lines = _data_lines(ax)
        assert len(lines) == 2
        for ln in lines:
            assert [float(x) for x in ln.get_xdata()] == [float(s) for s in steps[1:]]
    # the error bars of the sizes too: each vertical bar at its point's step
    for bars in k_ax.collections:
        xs = {float(v) for p in bars.get_paths() for v in p.vertices[:, 0]}
        assert xs <= {float(s) for s in steps[1:]}
    assert "F undefined (not drawn) at step 0" in _texts(fig)
