"""The names every stage shares: the pair-set tasks and their controls (docs/study-a.md
§4, §5), what a circuit means, a claim's verdicts, the attribution directions and the
parts of a pair set's split. Their one home: other modules import them from here.

Standard library only: the Snakefile reads these at parse time (rules/common.smk), and
parsing must not import torch (every job's Snakemake process parses the workflow).
"""

from __future__ import annotations

BRANCH, DECISION = "branch_comparison", "memorization_decision"
TASKS = (BRANCH, DECISION)  # the memorization tasks, in the order tables and figures show them
# the third task (vermem.data.context): clean and corrupt differ only in the distant prefix
DISTANT = "distant_context"
CONTROL = "_control"  # a task's control: the same construction on non-memorized text


def control_task(task: str) -> str:
    """The control of a task: 'branch_comparison' -> 'branch_comparison_control'."""
    return task + CONTROL


def is_control(task: str) -> bool:
    return task.endswith(CONTROL)


def base_task(task: str) -> str:
    """The memorization task a (control) task mirrors."""
    return task[: -len(CONTROL)] if is_control(task) else task


# what a circuit does to memorization: the direction that removes it on a task, and the one
# that restores it (vermem.circuits.transfer.SEMANTICS)
MEANINGS = ("prevention", "induction")
# the verdicts of a claim (vermem.report.claims), in the order tables list them
VERDICTS = ("supported", "refuted", "insufficient evidence")

# the two directions of an attribution and of a circuit's patching (docs/study-a.md §7, §8)
DIRECTIONS = ("noising", "denoising")
# the parts of a pair set's document split, in the order their fractions are cut
# (vermem.data.contrastive.document_parts)
PARTS = ("attribution", "selection", "evaluation")
