"""The student's workspace commands: a fresh copy once, and reset without losing work."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from g2c.cli import reset_notebook, workspace


@pytest.fixture
def course(tmp_path):
    kit = tmp_path / "release" / "03b-training"
    (kit / "tests").mkdir(parents=True)
    (kit / "training.ipynb").write_text("fresh")
    (kit / "tests" / "test_training.py").write_text("# tests")
    (tmp_path / "nbgrader_config.py").write_text("")
    spec = tmp_path / "source_notebooks" / "03b-training" / "assignment.toml"
    spec.parent.mkdir(parents=True)
    spec.write_text('notebook = "training.ipynb"\ncontract = "tests/test_training.py"\n')
    return tmp_path


def test_workspace_copies_the_kit_once(course):
    notebook = workspace(course, "03b-training")
    assert notebook == course / "student" / "03b-training" / "training.ipynb"
    assert (notebook.parent / "tests" / "test_training.py").exists()
    notebook.write_text("my work")
    assert workspace(course, "03b-training").read_text() == "my work", "a second call must not overwrite the student's work"


def test_reset_archives_then_restores(course):
    notebook = workspace(course, "03b-training")
    notebook.write_text("my work")
    when = datetime(2026, 11, 25, 9, 30, 0)
    archived, current = reset_notebook(course, "03b-training", now=when)
    assert archived.name == "training-20261125-093000.ipynb" and archived.read_text() == "my work"
    assert current.read_text() == "fresh"
    current.write_text("second try")
    archived2, _ = reset_notebook(course, "03b-training", now=when)
    assert archived2 != archived and archived2.read_text() == "second try" and archived.read_text() == "my work"


def test_missing_kit_is_a_clear_message(course):
    (course / "release" / "03b-training" / "training.ipynb").unlink()
    with pytest.raises(SystemExit, match="make release"):
        reset_notebook(course, "03b-training")


def test_the_assignment_is_named_or_the_only_one(course, capsys):

    with pytest.raises(SystemExit, match="no assignment 'nope' \\(the course has 03b-training\\)"):
        _run_in(course, ["workspace", "nope"])
    _run_in(course, ["workspace"])
    assert capsys.readouterr().out.strip().endswith("student/03b-training/training.ipynb")
    second = course / "source_notebooks" / "momentum" / "assignment.toml"
    second.parent.mkdir()
    second.write_text('notebook = "momentum.ipynb"\n')
    with pytest.raises(SystemExit, match="name an assignment \\(the course has 03b-training, momentum\\)"):
        _run_in(course, ["workspace"])


def _run_in(course, argv):
    import os

    from g2c.cli import main

    here = os.getcwd()
    os.chdir(course)
    try:
        return main(argv)
    finally:
        os.chdir(here)


def test_autograde_with_a_folder_that_is_not_the_course_is_a_clear_message(tmp_path):
    from g2c.grading.autograde import autograde

    (tmp_path / "submitted" / "alice" / "03b-training").mkdir(parents=True)
    with pytest.raises(SystemExit, match="not the course repository .*pass --course"):
        autograde(tmp_path, tmp_path / "submitted", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written before the check


def test_notebook_roots_jupyter_at_the_student_folder_with_the_options_given(course, monkeypatch, capsys):
    """`g2c notebook --port P --no-browser` as root: Jupyter is rooted (and started) in student/, where nbgrader's
    fetch would put the assignment, opens the workspace notebook, and is told --allow-root (it refuses root
    otherwise); as anyone else, no --allow-root and Jupyter's own port and browser."""
    started = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: started.append((os.getcwd(), argv, env)))
    for euid in (0, 1000):
        monkeypatch.setattr(os, "geteuid", lambda euid=euid: euid)
        _run_in(course, ["notebook", "--port", "8890", "--no-browser"] if euid == 0 else ["notebook"])
    (cwd, as_root, env), (_, as_user, _) = started
    student = course / "student"
    assert Path(cwd) == student and str(student / ".jupyter") in env["JUPYTER_CONFIG_PATH"].split(os.pathsep)
    assert as_root[1:] == ["notebook", f"--ServerApp.root_dir={student}", "--ServerApp.port=8890", "--no-browser",
                           "--allow-root", str(student / "03b-training" / "training.ipynb")]
    assert as_user[1:] == ["notebook", f"--ServerApp.root_dir={student}", str(student / "03b-training" / "training.ipynb")]
    assert capsys.readouterr().out.count("--allow-root") == 1  # said once, when it was passed


def test_the_students_nbgrader_reads_the_course_config_and_keeps_assignments_in_the_student_folder(course):
    from traitlets.config.loader import PyFileConfigLoader

    from g2c.cli import student_jupyter_config

    (course / "nbgrader_config.py").write_text('c.CourseDirectory.course_id = "g2c"\nc.Exchange.root = "/srv/exchange"\n')
    folder = student_jupyter_config(course)
    config = PyFileConfigLoader("nbgrader_config.py", path=str(folder)).load_config()
    assert (config.CourseDirectory.course_id, config.Exchange.root) == ("g2c", "/srv/exchange")
    assert config.Exchange.assignment_dir == str(course / "student")


def test_reset_makes_a_tab_still_open_ask_before_it_saves_over_the_fresh_copy(course, capsys):
    """What JupyterLab 4 compares before it saves a tab (the file's content hash, or without one its modification
    time against the tab's last save, with a margin) differs after a reset, even one a moment after a save."""
    from jupyter_server.services.contents.filemanager import FileContentsManager

    from g2c.cli import JUPYTER_CHANGED_ON_DISK_MARGIN

    workspace(course, "03b-training").write_text("my work, saved just now")
    contents = FileContentsManager(root_dir=str(course / "student"))
    tab = contents.get("03b-training/training.ipynb", content=False, require_hash=True)  # what the tab last saw
    _run_in(course, ["reset-notebook"])
    disk = contents.get("03b-training/training.ipynb", content=False, require_hash=True)
    assert disk["hash"] != tab["hash"]
    assert (disk["last_modified"] - tab["last_modified"]).total_seconds() > JUPYTER_CHANGED_ON_DISK_MARGIN
    assert "close that tab without saving, or choose Revert" in capsys.readouterr().out


def test_submit_without_a_workspace_is_a_clear_message(course):
    with pytest.raises(SystemExit, match="nothing to submit .*start with `g2c notebook 03b-training`"):
        _run_in(course, ["submit"])


@pytest.mark.parametrize("target, expected", [
    ("notebook", "g2c notebook 03b-training --port 8890 --no-browser"),
    ("reset-notebook", "g2c reset-notebook 03b-training"),
    ("submit", "g2c submit 03b-training"),
    ("feedback", "g2c feedback 03b-training"),
])
def test_make_passes_the_assignment_and_args_through(target, expected):
    import subprocess

    from conftest import ROOT

    args = ["ARGS=--port 8890 --no-browser"] if target == "notebook" else []
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # also under `make unit`
    command = ["make", "-n", "--no-print-directory", target, "ASSIGNMENT=03b-training", *args]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.rstrip().endswith(expected), run.stdout + run.stderr


def test_git_ignores_what_nbgrader_writes_at_the_course_root():
    """nbgrader export's grades.csv, zip_collect's downloads, a course's local exchange and nbgrader's log file."""
    import subprocess

    from conftest import ROOT
    from nbgrader.apps.zipcollectapp import ZipCollectApp

    written = ["grades.csv", f"{ZipCollectApp.downloaded_directory.default_value}/x.zip", "exchange/g2c/inbound/x",
               ".nbgrader.log", "gradebook.db"]
    run = subprocess.run(["git", "check-ignore", "--no-index", "--verbose", *written], cwd=ROOT, capture_output=True, text=True)
    assert run.stdout.count("\n") == len(written), run.stdout
