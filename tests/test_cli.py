"""The student's workspace commands: a fresh copy once, and reset without losing work."""

from __future__ import annotations

from datetime import datetime

import pytest

from g2c.cli import reset_notebook, workspace


@pytest.fixture
def course(tmp_path):
    kit = tmp_path / "release" / "03b-training"
    (kit / "tests").mkdir(parents=True)
    (kit / "training.ipynb").write_text("fresh")
    (kit / "tests" / "test_training.py").write_text("# tests")
    (tmp_path / "nbgrader_config.py").write_text("")
    return tmp_path


def test_workspace_copies_the_kit_once(course):
    notebook = workspace(course)
    assert notebook == course / "student" / "03b-training" / "training.ipynb"
    assert (notebook.parent / "tests" / "test_training.py").exists()
    notebook.write_text("my work")
    assert workspace(course).read_text() == "my work", "a second call must not overwrite the student's work"


def test_reset_archives_then_restores(course):
    notebook = workspace(course)
    notebook.write_text("my work")
    when = datetime(2026, 11, 25, 9, 30, 0)
    archived, current = reset_notebook(course, now=when)
    assert archived.name == "training-20261125-093000.ipynb" and archived.read_text() == "my work"
    assert current.read_text() == "fresh"
    current.write_text("second try")
    archived2, _ = reset_notebook(course, now=when)
    assert archived2 != archived and archived2.read_text() == "second try" and archived.read_text() == "my work"


def test_missing_kit_is_a_clear_message(tmp_path):
    with pytest.raises(SystemExit, match="make release"):
        reset_notebook(tmp_path)


def test_autograde_with_a_folder_that_is_not_the_course_is_a_clear_message(tmp_path):
    from g2c.grading.autograde import autograde

    (tmp_path / "submitted" / "alice" / "03b-training").mkdir(parents=True)
    with pytest.raises(SystemExit, match="not the course repository .*pass --course"):
        autograde(tmp_path, tmp_path / "submitted", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written before the check
