"""The ``g2c`` command: the student's workspace (any assignment of the course) and the instructor's grading."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from g2c.grading import assignment
from g2c.grading.sandbox.limits import CELL_TIMEOUT, MEMORY_MB, TIMEOUT

# nbgrader's instructor tools: students get the assignment list and Validate, not these.
INSTRUCTOR_ONLY = ("@jupyter/nbgrader:create-assignment", "@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:course-list")
# Their server halves, not loaded in the student's Jupyter either: formgrader serves the instructor's course and its
# gradebook's API, and checks that course against the server's root; rooted at the notebook's folder (Jupyter's default
# for a server opened on a file), it logged "The course directory root is not a subdirectory of the notebook server
# root" at every start of the student's Jupyter.
INSTRUCTOR_SERVER_EXTENSIONS = ("nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.course_list")
# JupyterLab's "File Changed" check falls back to comparing modification times when the server gives no content hash,
# and lets a file on disk be up to this much newer than the tab's last save (its `lastModifiedCheckMargin`, 500 ms).
JUPYTER_CHANGED_ON_DISK_MARGIN = 0.5


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


def student_folder(root: Path) -> Path:
    """``student/``: the student's Jupyter root and nbgrader's assignment folder, so ``student/<assignment>/`` is both
    the workspace and the copy nbgrader's Assignment List, ``submit`` and ``fetch_feedback`` work on."""
    return root / "student"


def workspace(root: Path, name: str) -> Path:
    """The student's own copy of the kit, ``student/<assignment>/``, made from ``release/`` once."""
    kit, notebook = _kit(root, name)
    dest = student_folder(root) / name
    if not (dest / notebook).exists():
        shutil.copytree(kit, dest, dirs_exist_ok=True)
    return dest / notebook


def student_jupyter_config(root: Path) -> Path:
    """``student/.jupyter``, first on the student's ``JUPYTER_CONFIG_PATH``. Its page config hides nbgrader's
    instructor tools (Create Assignment, Formgrader, Courses); its server config does not load their server halves;
    its ``nbgrader_config.py`` loads the course's, so that the Assignment List, ``g2c submit`` and ``g2c feedback``
    use the course's id and exchange (``Exchange.root``) from the student's folder, where no config file is, and
    names that folder nbgrader's ``Exchange.assignment_dir`` (by default ".", the process's working folder: the
    Assignment List otherwise looked for assignments wherever ``g2c notebook`` was started)."""
    from g2c.grading.course import CONFIG_FILE

    folder = student_folder(root) / ".jupyter"
    page_config = folder / "labconfig" / "page_config.json"
    page_config.parent.mkdir(parents=True, exist_ok=True)
    page_config.write_text(json.dumps({"disabledExtensions": dict.fromkeys(INSTRUCTOR_ONLY, True)}, indent=2) + "\n")
    server_config = {"ServerApp": {"jpserver_extensions": dict.fromkeys(INSTRUCTOR_SERVER_EXTENSIONS, False)}}
    (folder / "jupyter_server_config.json").write_text(json.dumps(server_config, indent=2) + "\n")
    (folder / "nbgrader_config.py").write_text(
        "# Written by g2c: the student's nbgrader reads the course's configuration (course id, Exchange.root)\n"
        "# and keeps assignments in the student's folder, wherever it runs from.\n"
        f"load_subconfig({CONFIG_FILE!r}, path={str(root)!r})  # noqa: F821 (traitlets injects load_subconfig)\n"
        f"c.Exchange.assignment_dir = {str(student_folder(root))!r}  # noqa: F821\n")
    return folder


def student_environment(root: Path) -> dict[str, str]:
    """The environment the student's Jupyter and nbgrader run in: this venv first on PATH, the student's config."""
    extra = [str(student_jupyter_config(root)), os.environ.get("JUPYTER_CONFIG_PATH", "")]
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "JUPYTER_CONFIG_PATH": os.pathsep.join(filter(None, extra)),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def notebook_command(root: Path, name: str, port: int | None = None, browser: bool = True,
                     as_root: bool = False) -> list[str]:
    """The student's Jupyter Notebook, rooted at ``student/``, opening the workspace notebook. Jupyter refuses to run
    as root unless given ``--allow-root``."""
    notebook = workspace(root, name)
    command = [str(Path(sys.executable).with_name("jupyter")), "notebook", f"--ServerApp.root_dir={student_folder(root)}"]
    if port is not None:
        command.append(f"--ServerApp.port={port}")
    if not browser:
        command.append("--no-browser")
    if as_root:
        command.append("--allow-root")
    return [*command, str(notebook)]


def open_notebook(root: Path, name: str, port: int | None = None, browser: bool = True) -> None:
    """``g2c notebook``: the student's workspace notebook in Jupyter Notebook (replaces this process)."""
    as_root = os.geteuid() == 0
    if as_root:
        print("g2c notebook: running as root, so Jupyter is given --allow-root", flush=True)
    command = notebook_command(root, name, port, browser, as_root)
    environment = student_environment(root)
    os.chdir(student_folder(root))  # the server's root is its working folder, as nbgrader's extensions expect
    os.execve(command[0], command, environment)


def nbgrader_as_student(root: Path, *args: str) -> int:
    """Run nbgrader's own command as the student does: from ``student/`` (nbgrader's exchange commands work on
    ``./<assignment>/``) with the student's configuration. Its messages go to the terminal; returns its exit code."""
    command = [sys.executable, "-m", "nbgrader", *args]
    return subprocess.run(command, cwd=student_folder(root), env=student_environment(root), check=False).returncode


def submit(root: Path, name: str) -> Path:
    """``g2c submit``: the workspace, ``student/<assignment>/``, through nbgrader's exchange, as the Assignment List's
    Submit button sends it. nbgrader names the submitter by ``CourseDirectory.student_id`` when a config sets it, else
    by the login name."""
    notebook = _kit(root, name)[1]
    folder = student_folder(root) / name
    if not (folder / notebook).exists():
        raise SystemExit(f"g2c submit: nothing to submit ({folder / notebook} is missing); start with `g2c notebook {name}`")
    if nbgrader_as_student(root, "submit", name) != 0:
        raise SystemExit(f"g2c submit: nbgrader could not submit {folder.relative_to(root)}/ (its message is above)")
    return folder


def fetch_feedback(root: Path, name: str) -> list[Path]:
    """``g2c feedback``: the feedback pages released for your submissions, into ``student/<assignment>/feedback/
    <submission time>/`` (where the Assignment List's Fetch Feedback puts them). Returns every page there, oldest first."""
    notebook = _kit(root, name)[1]
    if nbgrader_as_student(root, "fetch_feedback", name) != 0:
        raise SystemExit(f"g2c feedback: nbgrader fetched no feedback for {name} (its message is above; \"Assignment not "
                         "found at <exchange>/feedback\" means none has been released in the course yet)")
    return sorted((student_folder(root) / name / "feedback").glob(f"*/{Path(notebook).stem}.html"))


def reset_notebook(root: Path, name: str, now: datetime | None = None) -> tuple[Path | None, Path]:
    """Archive the student's notebook under a timestamped name, then restore a fresh copy.

    The archive is written before the fresh copy replaces anything, so no work is lost. A tab still open on the old
    notebook must not save it over the fresh copy unasked: Jupyter asks first ("File Changed": Revert or Overwrite)
    when the file's content hash differs from what the tab last loaded or saved or, where the server gives no hash,
    when the file is newer than the tab's last save by more than JupyterLab's margin; the fresh copy is made newer than
    the last save by twice that margin, even when that save was a moment ago.
    """
    kit, notebook = _kit(root, name)
    fresh = kit / notebook
    current = student_folder(root) / name / notebook
    archived = None
    last_saved = 0.0
    if current.exists():
        last_saved = current.stat().st_mtime
        stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
        archive_dir = student_folder(root) / "archive"
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
    modified = max(time.time(), last_saved + 2 * JUPYTER_CHANGED_ON_DISK_MARGIN)
    os.utime(current, (modified, modified))
    return archived, current


def formgrader(root: Path, port: int) -> None:
    """``g2c formgrader``: the course's Jupyter server, formgrader's pages under a Content-Security-Policy
    (``g2c/grading/jupyter_server_config.py``), on the loopback; replaces this process."""
    from g2c.grading import path_with_this_environment

    config = Path(__file__).resolve().parent / "grading" / "jupyter_server_config.py"
    jupyter = str(Path(sys.executable).with_name("jupyter"))
    os.chdir(root)  # formgrader reads the course's nbgrader_config.py from here
    print(f"formgrader: http://127.0.0.1:{port}/formgrader (the server prints the address with its token)", flush=True)
    as_root = ["--allow-root"] if os.geteuid() == 0 else []  # the sandboxed grader runs as root on the same machine
    os.execve(jupyter, [jupyter, "server", f"--config={config}", f"--ServerApp.root_dir={root}", f"--port={port}", *as_root],
              {**os.environ, "PATH": path_with_this_environment()})


class OneLinePerPrint:
    """A text stream that shows every control character written to it as ``\\xNN`` (newlines too), except the newline
    ``print`` ends a line with: student ids, file names and details are the students' text, and a terminal obeys its
    escape sequences; an embedded newline could forge a summary line."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        from g2c.grading.autograde import printable

        return self.stream.write(text if text == "\n" else printable(text))

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)  # encoding, isatty, fileno: as the terminal's


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
        "submit": "submit your workspace, student/<assignment>/, through the course's nbgrader exchange",
        "feedback": "fetch the feedback released for your submissions into student/<assignment>/feedback/",
    }
    student_parsers = {}
    for command, help_text in student_commands.items():
        student_parsers[command] = commands.add_parser(command, help=help_text)
        student_parsers[command].add_argument(
            "assignment", nargs="?", help="its folder name under source_notebooks/ (default: the course's only one)")
    student_parsers["notebook"].add_argument("--port", type=_positive_int, help="the port Jupyter listens on")
    student_parsers["notebook"].add_argument("--no-browser", action="store_true", help="do not open a browser (print the URL)")
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
    grade.add_argument("--wait", action="store_true", help="when another g2c autograde is grading the course, wait for it "
                       "to finish (default: stop and say who holds the gradebook's lock)")
    grade.add_argument("--no-sandbox", action="store_true", help="run student code without isolation (trusted code only)")
    report = commands.add_parser("report", help="write the class report (report.html beside grades.csv) of a graded batch")
    report.add_argument("assignment", help="its folder name under source_notebooks/")
    report.add_argument("--course", type=Path, help="course root (default: this repository)")
    report.add_argument("--out", type=Path, help="the folder of a separate batch graded with --out")
    serve = commands.add_parser("formgrader", help="start the course's Jupyter server for formgrader (hand grading), "
                                "its pages under a Content-Security-Policy")
    serve.add_argument("--course", type=Path, help="course root (default: this repository)")
    serve.add_argument("--port", type=_positive_int, default=8888, help="port on 127.0.0.1 (default %(default)d)")
    listing = commands.add_parser("mistakes", help="list the mistakes the pitfall catalogue does not name in a graded batch, "
                                  "grouped by cell and what failed, with a count and one student each")
    listing.add_argument("assignment", help="its folder name under source_notebooks/")
    listing.add_argument("--course", type=Path, help="course root (default: this repository)")
    listing.add_argument("--out", type=Path, help="the folder of a separate batch graded with --out")
    args = parser.parse_args(argv)
    root = (getattr(args, "course", None) or repo_root()).resolve()
    if args.command == "formgrader":
        formgrader(root, args.port)
    try:
        name = assignment.chosen(root, args.assignment)
    except ValueError as err:
        raise SystemExit(f"g2c {args.command}: {err}") from None
    if args.command == "autograde":
        from g2c.grading.autograde import REFUSED, autograde, flagged_timestamps, renamed_notebooks, summary_lines
        from g2c.grading.course import layout

        sys.stdout = OneLinePerPrint(sys.stdout)  # the command's last act; each print below is one line
        results = autograde(root, args.submitted, args.out, jobs=args.jobs, timeout=args.timeout, memory_mb=args.memory,
                            scheduler=args.scheduler, force=args.force, isolate=not args.no_sandbox,
                            cell_timeout=args.cell_timeout, due=args.due, assignment=name, wait=args.wait)
        lay = layout(root, args.submitted, args.out, name)
        for line in summary_lines(lay, [r.student_id for r in results]):  # grades.csv's scores: hand grades, penalties
            print(line)
        for r in results:  # ids refused before grading have no row in grades.csv (the id is shown as repr)
            if r.status == REFUSED:
                print(f"{r.student_id}: 0/0 {r.status}  ({r.detail})")
        for line in renamed_notebooks(results):
            print(f"renamed notebook: {line}")
        for line in flagged_timestamps(lay):
            print(f"flagged: {line}")
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
    if args.command == "mistakes":
        return list_mistakes(root, name, args.out)
    if args.command == "workspace":
        print(workspace(root, name))
    elif args.command == "notebook":
        open_notebook(root, name, args.port, not args.no_browser)
    elif args.command == "reset-notebook":
        archived, current = reset_notebook(root, name)
        if archived:
            print(f"archived your notebook as {archived.relative_to(root)}")
        print(f"fresh notebook at {current.relative_to(root)}")
        print("If it is still open in Jupyter, close that tab without saving, or choose Revert when Jupyter says the "
              "file changed on disk: Overwrite would put your old notebook back over the fresh copy.")
    elif args.command == "submit":
        folder = submit(root, name)
        print(f"submitted {folder.relative_to(root)}/ as saved on disk (nbgrader's Destination line names you and the course); "
              f"`g2c feedback {name}` fetches your feedback once it is released")
    elif args.command == "feedback":
        pages = fetch_feedback(root, name)
        print("\n".join(f"feedback: {page.relative_to(root)}" for page in pages) or "no feedback released to you yet")
    return 0


def list_mistakes(root: Path, name: str, out: Path | None) -> int:
    """Print the unnamed mistakes of a graded batch, one group a paragraph: count, cell, what failed, one student's reason."""
    from g2c.grading.course import layout, load_results
    from g2c.grading.pitfalls import catalogue
    from g2c.grading.report import mistakes

    lay = layout(root, None, out, name)
    results = load_results(lay)
    if not results:
        raise SystemExit(f"g2c mistakes: nothing graded yet in {lay.grades}; run g2c autograde first")
    groups = mistakes(results, catalogue(lay.spec))
    for g in groups:
        print(f"{len(g.students)} student(s), {g.cell}: {g.what}\n  e.g. {g.students[0]}: " + g.example.replace("\n", "\n  "))
    print(f"{len(groups)} group(s) of mistakes the catalogue does not name" if groups else "no mistake outside the catalogue")
    return 0


if __name__ == "__main__":
    sys.exit(main())
