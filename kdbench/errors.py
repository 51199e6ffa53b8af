"""The ground floor every kdbench module may import: the user-error type and its message helper.

``kdbench.api.KDBenchError`` is this class (plugins import it from there).
"""

from __future__ import annotations

import difflib


class KDBenchError(Exception):
    """An error caused by the user's input or environment; the CLI prints it on one line, exit 2."""


def did_you_mean(kind: str, name: str, choices: list[str]) -> str:
    """One-line message for an unknown ``name`` with the closest valid choice, if any."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    shown = " ".join(repr(name if len(name) <= 60 else name[:59] + "…").split())
    return f"unknown {kind} {shown}{hint} (choose from: {', '.join(sorted(choices))})"
