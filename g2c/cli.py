"""The ``g2c`` command: the student's workspace (any assignment of the course) and the instructor's grading."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from datetime import datetime
from pathlib import Path

from g2c.grading import assignment
from g2c.grading.sandbox.limits import CELL_TIMEOUT, MEMORY_MB, TIMEOUT

# nbgrader's instructor tools: students get the assignment list and Validate, not these.
INSTRUCTOR_ONLY = ("@jupyter/nbgrader:create-assignment", "@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:course-list")


def repo_root() -> Path:
    """The course repository: the nearest folder up from here holding ``nbgrader_config.py``."""
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "nbgrader_config.py").exists():
            return folder
    raise SystemExit("g2c: run this inside the course repository (no nbgrader_config.py found above here)")


def _kit(root: Path, name: str) -> tuple[Path, str]:
    """(the assignment's released kit folder, its notebook's file name)."""
    notebook = assignment.load(name, root).notebook
    kit = root / "release" / name
    if not (kit / notebook).exists():
        raise SystemExit(f"g2c: the student kit {kit / notebook} is missing; an instructor builds it with `make release`")
    return kit, notebook


def workspace(root: Path, name: str) -> Path:
    """The student's own copy of the kit, ``student/<assignment>/``, made from ``release/`` once."""
    kit, notebook = _kit(root, name)
    dest = root / "student" / name
    if not (dest / notebook).exists():
        shutil.copytree(kit, dest, dirs_exist_ok=True)
    return dest / notebook


def student_jupyter_config(root: Path) -> Path:
    """A Jupyter config folder, ``student/.jupyter``, whose page config hides nbgrader's instructor tools
    (Create Assignment, Formgrader, Courses) from the student's Jupyter; added to ``JUPYTER_CONFIG_PATH``."""
    folder = root / "student" / ".jupyter"
    page_config = folder / "labconfig" / "page_config.json"
    page_config.parent.mkdir(parents=True, exist_ok=True)
    page_config.write_text(json.dumps({"disabledExtensions": dict.fromkeys(INSTRUCTOR_ONLY, True)}, indent=2) + "\n")
    return folder


def student_environment(root: Path) -> dict[str, str]:
    """The environment the student's Jupyter runs in: this venv first on PATH, instructor tools hidden."""
    extra = [str(student_jupyter_config(root)), os.environ.get("JUPYTER_CONFIG_PATH", "")]
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "JUPYTER_CONFIG_PATH": os.pathsep.join(filter(None, extra)),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def open_notebook(root: Path, name: str) -> None:
    """``g2c notebook``: the student's workspace notebook in Jupyter Notebook (replaces this process)."""
    notebook = workspace(root, name)
    jupyter = str(Path(sys.executable).with_name("jupyter"))
    os.execve(jupyter, [jupyter, "notebook", str(notebook)], student_environment(root))


def reset_notebook(root: Path, name: str, now: datetime | None = None) -> tuple[Path | None, Path]:
    """Archive the student's notebook under a timestamped name, then restore a fresh copy.

    The archive is written before the fresh copy replaces anything, so no work is lost.
    """
    kit, notebook = _kit(root, name)
    fresh = kit / notebook
    current = root / "student" / name / notebook
    archived = None
    if current.exists():
        stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
        archive_dir = root / "student" / "archive"
        archive_dir.mkdir(parents=True, exist_ok=True)
        stem = Path(notebook).stem
        archived = archive_dir / f"{stem}-{stamp}.ipynb"
        n = 1
        while archived.exists():
            archived = archive_dir / f"{stem}-{stamp}-{n}.ipynb"
            n += 1
        shutil.copy2(current, archived)
    current.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fresh, current)
    return archived, current


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="g2c", description="A student's workspace, an instructor's grading.")
    commands = parser.add_subparsers(dest="command", required=True)
    student_commands = {
        "workspace": "copy the assignment's kit to student/<assignment>/ (once) and print the notebook path",
        "notebook": "open your workspace notebook in Jupyter (nbgrader's instructor tools hidden)",
        "reset-notebook": "archive your notebook under a timestamped name and restore a fresh copy",
    }
    for command, help_text in student_commands.items():
        commands.add_parser(command, help=help_text).add_argument(
            "assignment", nargs="?", help="its folder name under source_notebooks/ (default: the course's only one)")
    grade = commands.add_parser("autograde", help="autograde every submission with nbgrader, in parallel sandboxes: "
                                "grades.csv and redacted feedback")
    grade.add_argument("assignment", help="its folder name under source_notebooks/")
    grade.add_argument("--course", type=Path, help="course root (default: this repository)")
    grade.add_argument("--submitted", type=Path,
                       help="DIR/<student>/<assignment>/ (default: the course's, as nbgrader_config.py names it)")
    grade.add_argument("--out", type=Path, help="grade a separate batch: its gradebook, autograded/, feedback/ and grades.csv "
                       "all under OUT (default: the course's own gradebook and folders, as nbgrader_config.py names them)")
    grade.add_argument("--due", help="the assignment's due date, e.g. '2026-12-01 17:00:00 UTC' (kept in the gradebook)")
    grade.add_argument("--jobs", type=_positive_int, help="submissions graded at once (default: all cores)")
    grade.add_argument("--scheduler", help="address of a Dask scheduler (tcp://host:8786) to grade on its workers")
    grade.add_argument("--timeout", type=_positive_float, default=TIMEOUT,
                       help="seconds allowed per submission (default %(default)g)")
    grade.add_argument("--cell-timeout", type=_positive_float, default=CELL_TIMEOUT,
                       help="seconds allowed per notebook cell; later cells still run (default %(default)g)")
    grade.add_argument("--memory", type=_positive_int, default=MEMORY_MB,
                       help="memory limit in MB for student code (default %(default)d)")
    grade.add_argument("--force", action="store_true", help="regrade everyone, not only submissions without a result")
    grade.add_argument("--no-sandbox", action="store_true", help="run student code without isolation (trusted code only)")
    report = commands.add_parser("report", help="write the class report (report.html beside grades.csv) of a graded batch")
    report.add_argument("assignment", help="its folder name under source_notebooks/")
    report.add_argument("--course", type=Path, help="course root (default: this repository)")
    report.add_argument("--out", type=Path, help="the folder of a separate batch graded with --out")
    args = parser.parse_args(argv)
    root = (getattr(args, "course", None) or repo_root()).resolve()
    try:
        name = assignment.chosen(root, args.assignment)
    except ValueError as err:
        raise SystemExit(f"g2c {args.command}: {err}") from None
    if args.command == "autograde":
        from g2c.grading.autograde import autograde, flagged_timestamps
        from g2c.grading.course import layout

        results = autograde(root, args.submitted, args.out, jobs=args.jobs, timeout=args.timeout, memory_mb=args.memory,
                            scheduler=args.scheduler, force=args.force, isolate=not args.no_sandbox,
                            cell_timeout=args.cell_timeout, due=args.due, assignment=name)
        for r in results:
            detail = f"  ({r.detail})" if r.detail and r.status != "graded" else ""
            print(f"{r.student_id}: {r.score:g}/{r.max_score:g} {r.status} in {r.seconds:.1f} s{detail}")
        lay = layout(root, args.submitted, args.out, name)
        for line in flagged_timestamps(lay):
            print(f"flagged timestamp: {line}")
        print(f"wrote {lay.grades_csv}, {lay.report_html}, {lay.folder('feedback', '*', name)} "
              f"and the gradebook {lay.db_url}")
        return 0
    if args.command == "report":
        from g2c.grading.course import layout
        from g2c.grading.report import write_report

        lay = layout(root, None, args.out, name)
        if not lay.grades_csv.exists():
            raise SystemExit(f"g2c report: nothing graded yet ({lay.grades_csv} is missing); run g2c autograde first")
        print(f"wrote {write_report(lay)}")
        return 0
    if args.command == "workspace":
        print(workspace(root, name))
    elif args.command == "notebook":
        open_notebook(root, name)
    elif args.command == "reset-notebook":
        archived, current = reset_notebook(root, name)
        if archived:
            print(f"archived your notebook as {archived.relative_to(root)}")
        print(f"fresh notebook at {current.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
