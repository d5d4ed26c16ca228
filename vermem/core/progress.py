"""Progress of long computations as lines a person reads: items done of the total, time
spent, time left, at a steady rate.

    attribution: 120 of 480 pairs (25%), 42 s elapsed, about 2.1 min left

The science functions (labels, divergence, attribution, circuits, Study B training) take
an optional keyword `progress`, silent by default so that library use stays quiet. It is

- None: nothing is written;
- a callable taking one line (`print`, a logger's `info`): the function keeps its own
  `Progress` and writes to it, a first line with the total, then a line every `EVERY_S`
  seconds and at every further `EVERY_SHARE` of the work (never two within `MIN_S`;
  lines are written as items complete, so one item longer than `EVERY_S` delays the
  next), and a last line with the time taken;
- a `Progress` of the caller's: the function advances it by the work it does (the caller
  counted that work in its total; work found on the way, a search's extra round, the
  function adds with `expect`), and writes no lines of its own.

The rule scripts pass their log's `info` (scripts/_rule.py), so every long job's log
shows where it is.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

EVERY_S = 10.0     # a line at least this often while the work goes on
EVERY_SHARE = 0.1  # and one at every further tenth of it
MIN_S = 1.0        # but never two within a second (the last line excepted)


def count(x: float) -> str:
    """A number of items as read: whole, with thousands separators (12,000)."""
    return f"{round(x):,}"


def number(x: float | None, digits: int = 3) -> str:
    """A measured value as read: `digits` significant digits (0.823, 15, 1.2e+04); '-' for
    none."""
    return "-" if x is None else f"{x:.{digits}g}"


def duration(seconds: float) -> str:
    """A duration as read: 4.2 s, 42 s, 3.5 min, 12 min, 2.3 h, 14 h, 3.1 days."""
    s = max(0.0, seconds)
    for unit, size, limit in (("s", 1, 90), ("min", 60, 90 * 60), ("h", 3600, 48 * 3600)):
        if s < limit:
            v = s / size
            return f"{v:.1f} {unit}" if v < 10 else f"{round(v)} {unit}"
    return f"{s / 86400:.1f} days"


def units(n: float, unit: str) -> str:
    """`unit` for `n` items: its plural word made singular for one ('1 pair', '1 circuit
    evaluation', '1 epoch (all seeds)')."""
    if round(n) != 1:
        return unit
    head, sep, tail = unit.partition(" (")
    if head.endswith("s") and not head.endswith("ss"):
        head = head[:-1]
    return head + sep + tail


class Progress:
    """`total` items of `unit` done by `advance`, reported to `emit` as lines (see the
    module's doc for the rate); `expect` adds (or, negative, removes) work. A context
    manager: the last line is written on leaving it (also by `close`). `note` ends the
    first line (e.g. that a search adds work as it goes)."""

    def __init__(self, emit: Callable[[str], object] | None, what: str, total: float,
                 unit: str = "items", *, every_s: float = EVERY_S,
                 every_share: float = EVERY_SHARE, min_s: float = MIN_S,
                 clock: Callable[[], float] = time.monotonic, note: str = "") -> None:
        self.emit, self.what, self.unit = emit, what, unit
        self.total, self.done = float(total), 0.0
        self.every_s, self.every_share, self.min_s, self.clock = every_s, every_share, min_s, clock
        self.start = self.last = clock()
        self.step = 0  # tenths (every_share steps) done at the last line
        self.closed = False
        if self.total > 0:  # (nothing to do: no lines at all)
            self._write(f"{what}: {count(self.total)} {units(self.total, unit)} to do{note}")

    def _write(self, line: str) -> None:
        if self.emit is not None:
            self.emit(line)

    def expect(self, n: float) -> None:
        """More work found on the way (n < 0: less than counted)."""
        self.total = max(self.done, self.total + n)

    def advance(self, n: float = 1) -> None:
        self.done += n
        now = self.clock()
        step = math.floor(self.share() / self.every_share) if self.every_share else 0
        since = now - self.last
        if since >= self.every_s or (step > self.step and since >= self.min_s):
            self._write(self.line(now))
            self.last, self.step = now, step

    def share(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 1.0

    def line(self, now: float | None = None) -> str:
        """'what: done of total unit (p%), elapsed, about ... left'."""
        elapsed = (self.clock() if now is None else now) - self.start
        pct = math.floor(100 * self.share())
        if self.done < self.total:
            pct = min(pct, 99)   # 100% only when done
        left = ("time left unknown" if self.done <= 0 else
                f"about {duration(elapsed * (self.total - self.done) / self.done)} left")
        return (f"{self.what}: {count(self.done)} of {count(self.total)} "
                f"{units(self.total, self.unit)} ({pct}%), {duration(elapsed)} elapsed, {left}")

    def close(self) -> None:
        """The last line: what was done, in how long."""
        if self.closed:
            return
        self.closed = True
        if self.total > 0 or self.done > 0:
            elapsed = self.clock() - self.start
            self._write(f"{self.what}: {count(self.done)} {units(self.done, self.unit)} done "
                        f"in {duration(elapsed)}")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind, *_) -> None:
        if kind is None:
            self.close()


class _Shared(Progress):
    """A caller's Progress as a function sees it: advancing and `expect` reach the
    caller's, no lines of its own, closing leaves the caller's open."""

    def __init__(self, parent: Progress) -> None:  # no lines, no clock of its own
        self.parent = parent

    def expect(self, n: float) -> None:
        self.parent.expect(n)

    def advance(self, n: float = 1) -> None:
        self.parent.advance(n)

    def close(self) -> None:
        pass


class _Silent(_Shared):
    def __init__(self) -> None:
        pass

    def expect(self, n: float) -> None:
        pass

    def advance(self, n: float = 1) -> None:
        pass


SILENT = _Silent()

# the type of the science functions' `progress` argument
ProgressArg = Progress | Callable[[str], object] | None


def track(progress: ProgressArg, what: str, total: float, unit: str = "items",
          note: str = "") -> Progress:
    """What a function does with its `progress` argument (the module's doc): None, silent;
    a caller's Progress, shared; a callable, a new Progress of `total` `unit` writing to
    it (`note` ends its first line)."""
    if progress is None:
        return SILENT
    if isinstance(progress, Progress):
        return _Shared(progress)
    return Progress(progress, what, total, unit, note=note)


def emitter(progress: ProgressArg) -> Callable[[str], object] | None:
    """Where the lines of `progress` go: for a function that hands its stages a callable,
    so that each stage keeps its own count (its own unit) in the same log."""
    if isinstance(progress, _Shared):
        return emitter(getattr(progress, "parent", None))
    if isinstance(progress, Progress):
        return progress.emit
    return progress


def prefixed(emit: Callable[[str], object] | None, prefix: str
             ) -> Callable[[str], object] | None:
    """`emit` with `prefix` before each line (which of several runs a line is about)."""
    if emit is None:
        return None
    return lambda line: emit(prefix + line)
