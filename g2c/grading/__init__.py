"""Grading tools: solution regions, the student kit, and nbgrader autograding."""

import os
import sys
from pathlib import Path


def path_with_this_environment() -> str:
    """PATH with this interpreter's bin first: nbgrader runs `alembic` and kernels from PATH."""
    return f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
