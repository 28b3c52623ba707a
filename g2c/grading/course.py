"""Where a grading batch reads and writes: the course's nbgrader folders, or one ``--out`` folder.

One home for every path: the course's ``nbgrader_config.py`` names the gradebook and the
``submitted``/``autograded``/``feedback`` folders, so that ``g2c autograde`` and nbgrader's own
tools (``nbgrader db``, formgrader, ``export``, ``generate_feedback``, ``release_feedback``) see
the same course. ``--out DIR`` keeps a separate batch (its own gradebook and folders) under DIR.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from traitlets.config import Config

CONFIG_FILE = "nbgrader_config.py"
GRADES_FOLDER = "grades"  # in the course: grades.csv, results/ and the class report (beside nbgrader's folders)


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

    @property
    def grades_csv(self) -> Path:
        return self.grades / "grades.csv"

    @property
    def report_html(self) -> Path:
        return self.grades / "report.html"

    @property
    def db_url(self) -> str:
        return self._coursedir().db_url

    @property
    def db_exists(self) -> bool:
        url = self.db_url
        return not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists()

    @property
    def submitted(self) -> Path:
        return Path(self._coursedir().format_path(self._coursedir().submitted_directory, ".", ".")).resolve()

    def folder(self, step: str, student: str, assignment: str) -> Path:
        """``<step>/<student>/<assignment>`` as nbgrader's ``directory_structure`` lays it out."""
        coursedir = self._coursedir()
        return Path(coursedir.format_path(getattr(coursedir, f"{step}_directory"), student, assignment))

    def _coursedir(self):
        from nbgrader.coursedir import CourseDirectory

        return CourseDirectory(config=self.config)


def layout(root: Path, submitted: Path | None = None, out: Path | None = None) -> Layout:
    """The course's own folders and gradebook, or (``out``) a separate batch kept under ``out``."""
    root = root.resolve()
    config = course_config(root)
    config.CourseDirectory.root = str(root)
    if "db_url" not in config.CourseDirectory:
        config.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"  # nbgrader's own default
    grades = root / GRADES_FOLDER
    if out is not None:
        out = out.resolve()
        config.CourseDirectory.db_url = f"sqlite:///{out / 'gradebook.db'}"
        config.CourseDirectory.autograded_directory = str(out / "autograded")
        config.CourseDirectory.feedback_directory = str(out / "feedback")
        grades = out
    if submitted is not None:
        config.CourseDirectory.submitted_directory = str(submitted.resolve())
    return Layout(root, config, grades)
