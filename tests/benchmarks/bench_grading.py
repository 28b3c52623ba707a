"""Batch grading speed: `g2c autograde --jobs 2` against stock sequential `nbgrader autograde`.

Both grade the same N honest submissions (the solution notebook) in this one run, each from a
cold start of its command; the speedup is the ratio of their wall-clock times. Both must agree
on every score. Usage: python tests/benchmarks/bench_grading.py [N]  (default 8)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from g2c.grading import path_with_this_environment

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "source_notebooks" / "03b-training" / "training.ipynb"


def stock_config(course: Path) -> str:
    """The stock run's own course configuration: nbgrader reads `nbgrader_config.py` from its working folder, and
    the repository's names the repository's gradebook (run from there, stock nbgrader graded into it)."""
    return (f"c = get_config()  # noqa: F821\nc.CourseDirectory.root = {str(course)!r}\n"
            f"c.CourseDirectory.source_directory = 'source_notebooks'\n"
            f"c.CourseDirectory.db_url = {'sqlite:///' + str(course / 'gradebook.db')!r}\n")


def stock(course: Path, students: list[str]) -> tuple[float, dict[str, float]]:
    """Stock nbgrader, as its documentation runs it: one `nbgrader autograde` call, sequential, in its own course."""
    from nbgrader.api import Gradebook

    (course / "nbgrader_config.py").write_text(stock_config(course))
    nbgrader = [sys.executable, "-m", "nbgrader"]
    for step in ("generate_assignment", "autograde"):
        start = time.perf_counter()
        subprocess.run([*nbgrader, step, "03b-training", "--log-level=ERROR"], check=True, capture_output=True, cwd=course)
    seconds = time.perf_counter() - start  # autograde's
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {s.student.id: s.score for s in gb.assignment_submissions("03b-training")}
    return seconds, scores


def ours(course: Path, out: Path) -> tuple[float, dict[str, float]]:
    from g2c.grading.course import layout, load_results

    command = [sys.executable, "-m", "g2c.cli", "autograde", "03b-training", "--course", str(ROOT),
               "--submitted", str(course / "submitted"), "--out", str(out), "--jobs", "2"]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    return seconds, {s: r["score"] for s, r in load_results(layout(ROOT, None, out)).items()}


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    os.environ["PATH"] = path_with_this_environment()
    with tempfile.TemporaryDirectory(prefix="g2c-bench-grading-") as tmp:
        course = Path(tmp) / "course"
        shutil.copytree(ROOT / "source_notebooks", course / "source_notebooks")
        students = [f"student-{i:03d}" for i in range(n)]
        for student in students:
            folder = course / "submitted" / student / "03b-training"
            folder.mkdir(parents=True)
            shutil.copyfile(SOURCE, folder / "training.ipynb")
        ours_s, ours_scores = ours(course, Path(tmp) / "out")
        stock_s, stock_scores = stock(course, students)
    if ours_scores != stock_scores:
        print(f"scores differ: g2c {ours_scores} vs nbgrader {stock_scores}")
        return 1
    print(f"{n} honest submissions, {os.cpu_count()} cores")
    print(f"stock nbgrader autograde (sequential): {stock_s:6.1f} s  {stock_s / n:5.2f} s/submission")
    print(f"g2c autograde --jobs 2 (sandboxed)   : {ours_s:6.1f} s  {ours_s / n:5.2f} s/submission")
    print(f"speedup: {stock_s / ours_s:.2f}x (target >= 3x); load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
