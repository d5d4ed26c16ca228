"""The project's own errors: bad config, corpus, model or data, each one line.

Rule scripts (`scripts/_rule.py`) turn a `VermemError` into that line on stderr and in the
rule's log, without a traceback, and exit non-zero; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class VermemError(Exception):
    """Bad input the user can fix; str() is one line naming the key, file or model."""


def one_line(message: object, limit: int = 400) -> str:
    """The first line of `message`, cut at `limit` characters (for wrapped library errors)."""
    text = str(message).strip()
    first = text.splitlines()[0] if text else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."
