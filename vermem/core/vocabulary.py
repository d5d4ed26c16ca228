"""The names of the pair-set tasks and of their controls (docs/study-a.md §4, §5).

Standard library only: the Snakefile reads these at parse time (rules/common.smk), and
parsing must not import torch (every job's Snakemake process parses the workflow).
`vermem.data.contrastive` builds the pair sets and re-exports these names.
"""

from __future__ import annotations

BRANCH, DECISION = "branch_comparison", "memorization_decision"
CONTROL = "_control"  # a task's control: the same construction on non-memorized text


def control_task(task: str) -> str:
    """The control of a task: 'branch_comparison' -> 'branch_comparison_control'."""
    return task + CONTROL


def is_control(task: str) -> bool:
    return task.endswith(CONTROL)


def base_task(task: str) -> str:
    """The memorization task a (control) task mirrors."""
    return task[: -len(CONTROL)] if is_control(task) else task
