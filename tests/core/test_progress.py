"""Progress lines of long jobs (vermem.core.progress): their rate, their numbers, and the science
functions that report through a callback."""

from __future__ import annotations

import re

import torch

from vermem.core import progress as P


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def run(total: int, seconds_each: float, **kw) -> tuple[list[str], list[float]]:
    """Lines of `total` items at `seconds_each`, and the clock time of each line."""
    lines, times, clock = [], [], Clock()

    def emit(line):
        lines.append(line)
        times.append(clock.t)

    with P.Progress(emit, "job", total, "pairs", clock=clock, **kw) as p:
        for _ in range(total):
            clock.t += seconds_each
            p.advance()
    return lines, times


def test_numbers_read_as_a_person_reads_them():
    assert [P.count(x) for x in (0, 7.6, 12000, 1_234_567.4)] == ["0", "8", "12,000",
                                                                   "1,234,567"]
    assert [P.duration(s) for s in (0.04, 4.24, 42.4, 89, 210, 725, 5400 + 1080, 7 * 3600,
                                    30 * 3600, 3 * 86400)] == [
        "0.0 s", "4.2 s", "42 s", "89 s", "3.5 min", "12 min", "1.8 h", "7.0 h", "30 h",
        "3.0 days"]
    assert [P.number(x) for x in (None, 0.823456, 15.0, 12345.6)] == ["-", "0.823", "15",
                                                                      "1.23e+04"]
    assert [P.units(n, u) for n, u in ((1, "pairs"), (2, "pairs"), (1, "circuit evaluations"),
                                       (1, "epochs (all seeds)"), (0, "steps"))] == [
        "pair", "pairs", "circuit evaluation", "epoch (all seeds)", "steps"]


def test_a_line_tells_done_of_total_elapsed_and_time_left():
    clock = Clock()
    lines: list[str] = []
    p = P.Progress(lines.append, "attribution", 480, "pairs", clock=clock)
    assert lines == ["attribution: 480 pairs to do"]
    clock.t = 42
    p.done = 120
    assert p.line() == ("attribution: 120 of 480 pairs (25%), 42 s elapsed, "
                        "about 2.1 min left")
    p.done = 479.6   # not done yet: never 100%
    assert "(99%)" in p.line()
    p.close()
    p.close()        # once
    assert lines[-1] == "attribution: 480 pairs done in 42 s" and len(lines) == 2


def test_fast_work_writes_few_lines_never_two_within_a_second():
    lines, times = run(100, 0.05)        # 5 s in all, a tenth every 0.5 s
    body = lines[1:-1]
    assert 2 <= len(body) <= 5, lines
    assert all(b - a >= P.MIN_S for a, b in zip(times[1:-1], times[2:-1], strict=False))
    assert lines[-1] == "job: 100 pairs done in 5.0 s"
    assert [int(re.search(r"\((\d+)%\)", line).group(1)) for line in body] == sorted(
        int(re.search(r"\((\d+)%\)", line).group(1)) for line in body)


def test_slow_work_writes_a_line_every_ten_seconds_and_at_each_tenth():
    lines, times = run(50, 3.0)          # 150 s; a tenth (5 items) every 15 s
    gaps = [b - a for a, b in zip(times[1:-1], times[2:-1], strict=False)]
    assert gaps and all(gap <= P.EVERY_S + 3 for gap in gaps), gaps
    assert all(gap >= P.MIN_S for gap in gaps)
    assert 150 / (P.EVERY_S + 3) <= len(lines) - 2 <= 150 / P.EVERY_S + 10, lines
    assert lines[1] == "job: 4 of 50 pairs (8%), 12 s elapsed, about 2.3 min left"


def test_nothing_to_do_writes_nothing():
    lines: list[str] = []
    with P.Progress(lines.append, "matched transfer", 0, "circuit evaluations"):
        pass
    assert lines == []


def test_expect_changes_the_total_and_nothing_is_written_without_a_callback():
    lines, clock = [], Clock()
    p = P.Progress(lines.append, "sequential", 10, "epochs", clock=clock)
    p.advance(4)
    p.expect(-3)             # a stage stopped early
    assert p.total == 7
    p.expect(-100)           # never below what is done
    assert p.total == p.done == 4
    quiet = P.track(None, "x", 10)
    quiet.advance(5)
    quiet.close()
    assert P.track(None, "x", 10) is P.SILENT


def test_a_shared_progress_advances_its_caller_and_writes_nothing_of_its_own():
    lines, clock = [], Clock()
    outer = P.Progress(lines.append, "sweep", 10, "circuit evaluations", clock=clock)
    inner = P.track(outer, "circuits", 4)
    inner.advance(4)
    inner.expect(2)
    inner.close()
    assert (outer.done, outer.total, outer.closed) == (4, 12, False)
    assert lines == ["sweep: 10 circuit evaluations to do"]
    assert P.emitter(inner) == lines.append
    pre = P.prefixed(lines.append, "EAP ")
    pre("x")
    assert lines[-1] == "EAP x" and P.prefixed(None, "EAP ") is None


def pairs(n: int = 5):
    g = torch.Generator().manual_seed(0)
    clean = [torch.randint(3, 200, (6 + i % 3,), generator=g).tolist() for i in range(n)]
    corrupt = [[t + 1 for t in c] for c in clean]
    return clean, corrupt, [5] * n, [7] * n


def test_attribution_reports_its_pairs_through_the_callback(tiny_model):
    from vermem.attribution import scoring
    from vermem.attribution.graph import Graph, Shape
    from vermem.attribution.settings import AttributionSettings

    g = Graph(Shape.from_config(tiny_model.config))
    clean, corrupt, answer, wrong = pairs()
    lines: list[str] = []
    st = AttributionSettings(steps=2, batch_size=2, backend="hooks")
    out, n = scoring.run(tiny_model, g, clean, corrupt, answer, wrong, st,
                         progress=lines.append)
    assert n == 5
    assert lines[0] == "attribution: 5 pairs to do"
    assert re.fullmatch(r"attribution: 5 pairs done in [\d.]+ s", lines[-1]), lines
    quiet, _ = scoring.run(tiny_model, g, clean, corrupt, answer, wrong, st)
    assert torch.equal(quiet["scores"], out["scores"])


def test_circuit_evaluations_advance_the_caller_s_count(tiny_model):
    from vermem.attribution.graph import Graph, Shape
    from vermem.circuits import evaluation

    g = Graph(Shape.from_config(tiny_model.config))
    ev = evaluation.EvalSet.make(tiny_model, *pairs(), batch_size=2)
    mode = evaluation.Mode("noising", "outside", "resample")
    jobs = [
        (mode, evaluation.circuit(g, evaluation.ranking(g, torch.rand(g.mask.shape)), k))
        for k in (0, 5, 9)
    ]
    lines: list[str] = []
    outer = P.Progress(lines.append, "sweep", len(jobs), evaluation.EVALUATIONS)
    evaluation.evaluate_many(tiny_model, g, ev, jobs, progress=outer)
    assert outer.done == outer.total == 3 and len(ev.batches) > 1
    own: list[str] = []
    evaluation.evaluate_many(tiny_model, g, ev, jobs, progress=own.append)
    assert own[0] == "circuits: 3 circuit evaluations to do"
    assert own[-1].startswith("circuits: 3 circuit evaluations done in ")


def test_a_note_ends_the_first_line_only():
    lines: list[str] = []
    with P.track(lines.append, "circuit sweep", 4, "circuit evaluations",
                 note=", the search adds more") as p:
        p.expect(2)
        p.advance(6)
    assert lines[0] == "circuit sweep: 4 circuit evaluations to do, the search adds more"
    assert lines[-1].startswith("circuit sweep: 6 circuit evaluations done in ")
    assert not any("search adds" in x for x in lines[1:])
