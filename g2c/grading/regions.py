"""``### BEGIN SOLUTION`` / ``### END SOLUTION`` regions: the single source of every student version.

The reference code in ``g2c/training`` marks the bodies students write. Stripping a region
leaves what nbgrader leaves in a released notebook: ``# YOUR CODE HERE`` and
``raise NotImplementedError()`` at the region's indentation.
"""

from __future__ import annotations

import re

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
_MARK = re.compile(r"^(\s*)(### BEGIN SOLUTION|### END SOLUTION)\s*$")


def _regions(source: str) -> list[tuple[int, int, str]]:
    """(begin line index, end line index, indentation) of every region; ValueError if unbalanced."""
    regions, open_at = [], None
    for i, line in enumerate(source.splitlines()):
        match = _MARK.match(line)
        if not match:
            continue
        if match.group(2) == BEGIN:
            if open_at is not None:
                raise ValueError(f"line {i + 1}: {BEGIN} inside another solution region")
            open_at, indent = i, match.group(1)
        else:
            if open_at is None:
                raise ValueError(f"line {i + 1}: {END} without {BEGIN}")
            regions.append((open_at, i, indent))
            open_at = None
    if open_at is not None:
        raise ValueError(f"line {open_at + 1}: {BEGIN} is never closed")
    return regions


def strip_solutions(source: str) -> str:
    """The student version of ``source``: every region becomes a ``NotImplementedError`` stub."""
    lines = source.splitlines()
    for begin, end, indent in reversed(_regions(source)):
        lines[begin : end + 1] = [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"]
    return "\n".join(lines) + ("\n" if source.endswith("\n") else "")


def solution_lines(source: str) -> list[str]:
    """The code lines inside the regions, stripped, without blanks: what must never be published."""
    lines = source.splitlines()
    inside = [line.strip() for begin, end, _ in _regions(source) for line in lines[begin + 1 : end]]
    return [line for line in inside if line]
