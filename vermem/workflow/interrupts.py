"""Ctrl-C ends a local run within seconds (docs/running.md, "Interrupted runs").

Snakemake alone did not, with this workflow: its main thread waits on a lock while jobs
run, and Python runs a signal handler in the main thread only, once it runs Python code
again; when the kernel hands SIGINT to another thread (one of the threads that wait for
the jobs), the lock wait goes on and the handler runs only when a job ends (minutes, for
a training or circuit job), if at all. When the handler does run, Snakemake waits for the
running jobs to end. A job that the terminal's Ctrl-C reached (it signals the whole
process group) died with a KeyboardInterrupt traceback, and its rule's `retries` started
it again.

Here, on a local run (`stop_on_interrupt`, from `onstart`):

- whichever of Snakemake's threads the kernel hands SIGINT to, a thread of ours learns of
  it at once (Python's wakeup file descriptor), sends SIGTERM to the running jobs (this
  process's child processes) and asks Snakemake's scheduler for its graceful exit: no job
  is started, or retried, after that, and the run ends once the stopped jobs have, with
  Snakemake's usual clean-up of the failed jobs' outputs;
- the jobs' shell ignores SIGINT (rules/common.smk, `JOB_SHELL_PREFIX`), so the terminal's
  Ctrl-C does not reach the job scripts; a job script stops on SIGTERM with one line, no
  traceback (scripts/_rule.py); its outputs are written atomically (vermem.core.files), so
  a job stopped midway leaves none, and the next run does it again;
- a second Ctrl-C kills the jobs (SIGKILL) and raises Snakemake's own KeyboardInterrupt.
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
from typing import Any

# the jobs' shell: Snakemake's default prefix (bash strict mode), and SIGINT ignored, which
# the job's processes inherit (Python then raises no KeyboardInterrupt)
JOB_SHELL_PREFIX = "set -euo pipefail; trap '' INT; "


def _say(line: str) -> None:
    # os.write, not print: the main thread may be inside a print to the same stream
    os.write(2, (line + "\n").encode())


def stop_jobs(sig: int = signal.SIGTERM) -> int:
    """`sig` to every process this one started (its jobs and theirs); how many."""
    import psutil

    procs = psutil.Process().children(recursive=True)
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.Error:  # ended meanwhile
            pass
    return len(procs)


def stop_on_interrupt(workflow: Any) -> None:
    """Make SIGINT (Ctrl-C) stop this Snakemake process's local run: the running jobs get
    SIGTERM, the scheduler starts and retries nothing more, and the run ends when the jobs
    have. A second SIGINT kills the jobs and raises KeyboardInterrupt in the main thread.
    Call it from the main thread before the jobs start (`onstart`).

    Whichever thread the kernel hands SIGINT to, Python's C-level handler writes its
    number to the wakeup file descriptor (`signal.set_wakeup_fd`); a thread of ours reads
    it and acts at once. The Python-level handler, which runs in the main thread only
    when that thread runs Python code again, only raises KeyboardInterrupt once forced."""
    lock, state = threading.Lock(), {"count": 0, "forced": False}

    def interrupted() -> None:
        with lock:
            state["count"] += 1
            n = state["count"]
        scheduler = workflow.scheduler
        if n == 1 and scheduler is not None:
            for rule in workflow.rules:  # the stopped jobs fail: none is retried
                rule.restart_times = 0
            k = stop_jobs(signal.SIGTERM)
            _say(f"Interrupted (SIGINT): stopping the run and its {k} job process(es); the next "
                 f"run does the stopped jobs again. Ctrl-C again to kill them at once.")
            scheduler.exit_gracefully()  # from this thread: it takes the scheduler's lock
        elif not state["forced"]:
            state["forced"] = True
            stop_jobs(signal.SIGKILL)
            _say("Interrupted again (SIGINT): jobs killed")
            _thread.interrupt_main(signal.SIGINT)  # `in_main` raises KeyboardInterrupt
            if scheduler is not None:
                scheduler.exit_gracefully()  # wakes the main thread: it waits on the scheduler

    def in_main(signum, frame):
        if state["forced"]:
            signal.default_int_handler(signum, frame)

    def watch(fd: int) -> None:
        while True:
            for number in os.read(fd, 64):
                if number == signal.SIGINT:
                    interrupted()

    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    signal.signal(signal.SIGINT, in_main)
    threading.Thread(target=watch, args=(read,), daemon=True, name="vermem-interrupts").start()
