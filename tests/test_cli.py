"""The student's workspace commands: a fresh copy once, and reset without losing work."""

from __future__ import annotations

import sys
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


@pytest.mark.slow
def test_the_students_jupyter_hides_nbgrader_instructor_tools(course):
    """A real Jupyter server started as `g2c notebook` starts it: its page config (what the front end
    loads) disables Create Assignment, Formgrader and Courses, and keeps Validate and the assignment list."""
    import json
    import re
    import socket
    import subprocess
    import time
    import urllib.request

    from g2c.cli import INSTRUCTOR_ONLY, student_environment

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("jupyter")), "notebook", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         "--IdentityProvider.token=t", "--allow-root", f"--ServerApp.root_dir={course}"],
        env=student_environment(course), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/tree?token=t", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.5)
        config = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page, re.S)[1])
    finally:
        server.terminate()
        server.wait(timeout=30)
    disabled = config["disabledExtensions"]
    assert set(INSTRUCTOR_ONLY) <= set(disabled)
    assert not {"@jupyter/nbgrader:validate-assignment", "@jupyter/nbgrader:assignment-list"} & set(disabled)
