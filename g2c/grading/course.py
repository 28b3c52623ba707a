"""Where a grading batch reads and writes: the course's nbgrader folders, or one ``--out`` folder.

One home for every path: the course's ``nbgrader_config.py`` names the gradebook and the
``submitted``/``autograded``/``feedback`` folders, so that ``g2c autograde`` and nbgrader's own
tools (``nbgrader db``, formgrader, ``export``, ``generate_feedback``, ``release_feedback``) see
the same course. ``--out DIR`` keeps a separate batch (its own gradebook and folders) under DIR.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from traitlets.config import Config

from g2c.grading.assignment import Assignment, chosen, load

GRADES_COLUMNS = ("student_id", "assignment", "score", "max_score", "status", "timestamp", "late_penalty",
                  "minutes_late", "timestamp_source", "timestamp_claimed", "timestamp_flag")  # then one per cell
CONFIG_FILE = "nbgrader_config.py"
GRADES_FOLDER = "grades"  # in the course: <assignment>/ with grades.csv, results/ and the class report


def course_config(root: Path) -> Config:
    """The course's ``nbgrader_config.py`` as nbgrader loads it (empty when there is none)."""
    from traitlets.config.loader import PyFileConfigLoader

    if not (root / CONFIG_FILE).is_file():
        return Config()
    return PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config()


@dataclass(frozen=True)
class Layout:
    root: Path  # the course (source notebooks, nbgrader_config.py)
    config: Config  # the course's configuration, with this batch's folders and gradebook in it
    grades: Path  # grades.csv, results/<student>.json, report.html
    spec: Assignment  # the assignment graded
    received: Path  # when each submission of ``submitted`` reached the course: <student>.json (g2c.grading.received)

    @property
    def assignment(self) -> str:
        return self.spec.name

    @property
    def feedback_name(self) -> str:
        """nbgrader's name for the notebook's feedback page."""
        return f"{self.spec.stem}.html"

    def submission(self, step: str, student: str) -> Path:
        """The student's notebook in ``step`` (submitted, autograded)."""
        return self.folder(step, student, self.assignment) / self.spec.notebook

    @property
    def grades_csv(self) -> Path:
        return self.grades / "grades.csv"

    @property
    def report_html(self) -> Path:
        return self.grades / "report.html"

    @property
    def db_url(self) -> str:
        return self._coursedir.db_url

    @property
    def db_exists(self) -> bool:
        url = self.db_url
        return not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists()

    @property
    def course_id(self) -> str:
        """nbgrader's course id (the exchange's folder of the course; "" when none is set)."""
        return self._coursedir.course_id

    @property
    def submitted(self) -> Path:
        return submitted_root(self._coursedir)

    def folder(self, step: str, student: str, assignment: str) -> Path:
        """``<step>/<student>/<assignment>`` as nbgrader's ``directory_structure`` lays it out."""
        coursedir = self._coursedir
        return Path(coursedir.format_path(getattr(coursedir, f"{step}_directory"), student, assignment))

    @functools.cached_property
    def _coursedir(self):
        """nbgrader's view of the folders, built once per layout (10 ms each, and a batch asks hundreds of times)."""
        from nbgrader.coursedir import CourseDirectory

        return CourseDirectory(config=self.config)


def submitted_root(coursedir) -> Path:
    """The folder of ``<student>/<assignment>/`` submissions that nbgrader's ``CourseDirectory`` names."""
    return Path(coursedir.format_path(coursedir.submitted_directory, ".", ".")).resolve()


def course_grades(root: Path, assignment: str) -> Path:
    """The course's own grades folder of ``assignment``; its ``received/`` records what nbgrader's collect brought in."""
    return root / GRADES_FOLDER / assignment


def layout(root: Path, submitted: Path | None = None, out: Path | None = None, assignment: str | None = None) -> Layout:
    """The course's own folders and gradebook, or (``out``) a separate batch kept under ``out``, for
    ``assignment`` (default: the course's only one; ValueError when there is none or several)."""
    root = root.resolve()
    spec = load(chosen(root, assignment), root)
    config = course_config(root)
    config.CourseDirectory.root = str(root)
    if "db_url" not in config.CourseDirectory:
        config.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"  # nbgrader's own default
    grades = course_grades(root, spec.name)
    received = grades / "received"  # the course's submitted/ (collect records there too); another one's: under out
    if out is not None:
        out = out.resolve()
        config.CourseDirectory.db_url = f"sqlite:///{out / 'gradebook.db'}"
        config.CourseDirectory.autograded_directory = str(out / "autograded")
        config.CourseDirectory.feedback_directory = str(out / "feedback")
        grades = out
    if submitted is not None:
        config.CourseDirectory.submitted_directory = str(submitted.resolve())
        received = grades / "received"
    return Layout(root, config, grades, spec, received)


# ---------------------------------------------------------------- what a batch has written


def load_results(lay: Layout) -> dict[str, dict]:
    results = {}
    for path in sorted((lay.grades / "results").glob("*.json")):
        try:
            results[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            pass  # torn by a crash before the rename cannot happen; anything else is regraded
    return results


def grade_cells(lay: Layout) -> dict[str, float]:
    """The assignment's graded cells, in notebook order, and their points."""
    from nbgrader.api import Gradebook

    with Gradebook(lay.db_url) as gb:
        return {c.name: float(c.max_score) for c in gb.find_notebook(lay.spec.stem, lay.assignment).grade_cells}


def atomic_write(path: Path, data: bytes) -> None:
    """``data`` in ``path`` whole or not at all: written beside it, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
