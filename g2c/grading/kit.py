"""The student's build of the ``g2c`` package: what a sandbox may import.

Every module with its ``### BEGIN SOLUTION`` regions replaced by the stubs students receive,
and without ``g2c.grading`` (answer keys, the comparator, the pitfall catalogue). Sandboxes
mount it read-only where ``g2c`` lives, so ``import g2c.training`` inside gives the stubs, and
nothing importable or readable there holds a solution or an expected value.
"""

from __future__ import annotations

from pathlib import Path

from g2c.grading.regions import strip_solutions

PACKAGE = Path(__file__).resolve().parents[1]
LEFT_OUT = {"grading", "__pycache__"}


def build_kit_package(dest: Path) -> Path:
    """Write the kit package into ``dest`` (a new folder, readable by everyone); returns it."""
    dest.mkdir(mode=0o755)
    for source in sorted(PACKAGE.rglob("*")):
        relative = source.relative_to(PACKAGE)
        if LEFT_OUT & set(relative.parts):
            continue
        target = dest / relative
        if source.is_dir():
            target.mkdir(mode=0o755)
        elif source.suffix == ".py":
            target.write_text(strip_solutions(source.read_text()))
            target.chmod(0o644)
        elif source.is_file():
            target.write_bytes(source.read_bytes())
            target.chmod(0o644)
    return dest
