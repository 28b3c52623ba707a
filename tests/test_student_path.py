"""The student's path through a real nbgrader exchange, as the README's Students section tells it.

One temporary course (this repository's nbgrader_config.py, source folder and kit, with a temporary
``Exchange.root``). The instructor releases the assignment (nbgrader's own API, in this process). The student,
whose ``~/.jupyter/nbgrader_config.py`` sets ``CourseDirectory.student_id = "alice"`` while the login is someone
else, runs ``g2c notebook --no-browser --port P`` (the real server, as root here: g2c passes ``--allow-root``),
works, presses the Assignment List's Submit (the server's own API), works on, runs ``g2c submit``. The instructor
collects and releases feedback; the student runs ``g2c feedback``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat
import pytest
from conftest import ASSIGNMENT, ROOT, SPEC

from g2c.cli import INSTRUCTOR_ONLY, INSTRUCTOR_SERVER_EXTENSIONS
from g2c.grading.course import course_config

# a real Jupyter server and three nbgrader commands: about 15 s; through the exchange, beside the shared class
pytestmark = [pytest.mark.slow, pytest.mark.batch]
STUDENT = "alice"  # the id the student's nbgrader config gives
LOGIN = "mallory"  # what USER says: not the submitter's id
NOTEBOOK = SPEC.notebook
TOKEN = "student-path"
FEEDBACK = "<html><body>alice's feedback, released by the instructor</body></html>"


def make_course(tmp: Path) -> Path:
    """This course's configuration, sources and kit, with a temporary exchange every account can write."""
    course = tmp / "course"
    shutil.copytree(ROOT / "source_notebooks", course / "source_notebooks")
    shutil.copytree(ROOT / "release" / ASSIGNMENT, course / "release" / ASSIGNMENT)
    exchange = tmp / "exchange"
    exchange.mkdir(mode=0o777)
    exchange.chmod(0o777)
    config = (ROOT / "nbgrader_config.py").read_text() + f"\nc.Exchange.root = {str(exchange)!r}\n"
    (course / "nbgrader_config.py").write_text(config)
    return course


def instructor(course: Path, action: str) -> None:
    """nbgrader's own release_assignment / collect / release_feedback, with the course's configuration."""
    from nbgrader.apps import NbGraderAPI

    from g2c.grading import path_with_this_environment

    os.environ["PATH"] = path_with_this_environment()  # nbgrader's API runs `alembic` from PATH, as g2c autograde sets it
    result = getattr(NbGraderAPI(config=course_config(course)), action)(ASSIGNMENT)
    assert result["success"], result.get("error") or result.get("log")


def g2c(course: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "g2c.cli", *args]
    run = subprocess.run(command, cwd=course, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"g2c {' '.join(args)}:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    return run


def work(notebook: Path, text: str) -> None:
    """The student's work, saved: a cell of their own at the end."""
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(text))
    nbformat.write(nb, notebook)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, path: str, data: dict | None = None) -> tuple[int, str]:
    """One authenticated request to the student's server (a form POST when ``data`` is given)."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers={"Authorization": f"token {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""


def students_jupyter(course: Path, env: dict[str, str]) -> dict:
    """``g2c notebook --no-browser --port P``, headless: what its pages and APIs say, its Submit button pressed once,
    and its whole log once stopped."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "g2c.cli", "notebook", "--no-browser", "--port", str(port)], cwd=course,
                              env=env | {"JUPYTER_TOKEN": TOKEN}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = {}
    try:
        for _ in range(240):
            try:
                if request(port, "/api/status")[0] == 200:
                    break
            except OSError:
                time.sleep(0.25)
        _, page = request(port, "/tree")
        page_config = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page, re.S)[1]
        seen["disabled"] = json.loads(page_config)["disabledExtensions"]
        seen["formgrader"] = request(port, "/formgrader")[0]
        seen["listed"] = json.loads(request(port, f"/assignments?course_id={course_config(course).CourseDirectory.course_id}")[1])
        work(course / "student" / ASSIGNMENT / NOTEBOOK, "print('submitted with the button')")
        seen["button"] = json.loads(request(port, "/assignments/submit", {"assignment_id": ASSIGNMENT, "course_id": "g2c"})[1])
    finally:
        server.terminate()
        seen["log"] = server.communicate(timeout=30)[0]
    return seen


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("student-path")
    course = make_course(tmp)
    home = tmp / "home"
    (home / ".jupyter").mkdir(parents=True)
    (home / ".jupyter" / "nbgrader_config.py").write_text(f"c.CourseDirectory.student_id = {STUDENT!r}\n")
    env = {**os.environ, "HOME": str(home), "USER": LOGIN, "LOGNAME": LOGIN}
    for variable in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_PATH"):
        env.pop(variable, None)
    timings = {}
    start = time.perf_counter()
    instructor(course, "release_assignment")
    jupyter = students_jupyter(course, env)
    timings["jupyter"] = time.perf_counter() - start
    start = time.perf_counter()
    workspace = course / "student" / ASSIGNMENT / NOTEBOOK
    work(workspace, "print('submitted with g2c submit')")
    submitted = g2c(course, env, "submit")
    timings["g2c submit"] = time.perf_counter() - start
    instructor(course, "collect")
    # what `nbgrader generate_feedback` leaves for release_feedback: the page beside the submission's time and secret
    graded = course / "feedback" / STUDENT / ASSIGNMENT
    graded.mkdir(parents=True)
    (graded / NOTEBOOK.replace(".ipynb", ".html")).write_text(FEEDBACK)
    for name in ("timestamp.txt", "submission_secret.txt"):
        shutil.copyfile(course / "submitted" / STUDENT / ASSIGNMENT / name, graded / name)
    instructor(course, "release_feedback")
    start = time.perf_counter()
    fetched = g2c(course, env, "feedback")
    timings["g2c feedback"] = time.perf_counter() - start
    print("\ntimings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return {"course": course, "exchange": tmp / "exchange", "jupyter": jupyter, "workspace": workspace,
            "submitted": submitted, "fetched": fetched, "env": env}


def inbound(path) -> list[Path]:
    """The exchange's submissions, oldest first (nbgrader names them <student>+<assignment>+<time>+<random>)."""
    return sorted((path["exchange"] / "g2c" / "inbound").iterdir(), key=lambda p: p.name.split("+")[2])


def cells(notebook: Path) -> list[str]:
    return [c.source for c in nbformat.read(notebook, as_version=4).cells]


def test_the_students_jupyter_starts_without_an_error(path):
    """Rooted at the notebook's folder, with formgrader loaded, it logged "The course directory root is not a
    subdirectory of the notebook server root" at every start; no error line at all now, requests and Submit included."""
    log = path["jupyter"]["log"]
    assert f"Serving notebooks from local directory: {path['course'] / 'student'}" in log
    assert "not a subdirectory of the notebook server root" not in log
    assert not re.findall(r"^\[E .*", log, re.M)


def test_the_students_jupyter_hides_nbgrader_instructor_tools(path):
    """Their front ends are disabled in the page config and their server halves not loaded (formgrader: 404); the
    assignment list and Validate stay."""
    disabled, log = path["jupyter"]["disabled"], path["jupyter"]["log"]
    assert set(INSTRUCTOR_ONLY) <= set(disabled)
    assert not {"@jupyter/nbgrader:validate-assignment", "@jupyter/nbgrader:assignment-list"} & set(disabled)
    assert path["jupyter"]["formgrader"] == 404
    assert all(f"{extension} | extension was successfully loaded" not in log for extension in INSTRUCTOR_SERVER_EXTENSIONS)
    assert "nbgrader.server_extensions.assignment_list | extension was successfully loaded" in log


def test_the_assignment_list_shows_the_workspace_as_the_fetched_copy(path):
    """No Fetch button for an assignment whose workspace exists: the list's copy is ``student/<assignment>/``."""
    listed = path["jupyter"]["listed"]
    assert listed["success"], listed
    (entry,) = listed["value"]
    assert (entry["assignment_id"], entry["status"], entry["path"]) == (ASSIGNMENT, "fetched", ASSIGNMENT)
    assert [nb["path"] for nb in entry["notebooks"]] == [f"{ASSIGNMENT}/{NOTEBOOK}"]


def test_the_submit_button_and_g2c_submit_send_the_workspace_as_the_configured_student(path):
    assert path["jupyter"]["button"]["success"], path["jupyter"]["button"]
    by_button, by_command = inbound(path)
    assert all(entry.name.startswith(f"{STUDENT}+{ASSIGNMENT}+") for entry in (by_button, by_command))
    assert cells(by_button / NOTEBOOK)[-1] == "print('submitted with the button')"
    assert cells(by_command / NOTEBOOK) == cells(path["workspace"])
    assert f"submitted student/{ASSIGNMENT}/" in path["submitted"].stdout


def test_collect_files_the_latest_submission_under_the_student_id(path):
    submitted = path["course"] / "submitted"
    assert [p.name for p in submitted.iterdir()] == [STUDENT]
    assert cells(submitted / STUDENT / ASSIGNMENT / NOTEBOOK) == cells(path["workspace"])


def test_g2c_feedback_brings_back_the_released_page_beside_the_workspace(path):
    # filed under the student's own submission time (nbgrader's fetch_feedback); collect's copy holds the server's
    (page,) = (path["workspace"].parent / "feedback").glob(f"*/{NOTEBOOK.replace('.ipynb', '.html')}")
    assert page.read_text() == FEEDBACK
    assert f"feedback: {page.relative_to(path['course'])}" in path["fetched"].stdout


def test_the_assignment_list_shows_the_feedback_g2c_fetched(path, monkeypatch):
    """What the Assignments tab lists (its server's code, here in process, as the student): both submissions, the
    latest with its feedback fetched into the workspace, nothing newer waiting in the exchange."""
    from nbgrader.server_extensions.assignment_list.handlers import AssignmentList

    from g2c.cli import student_environment

    for variable in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_PATH"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", path["env"]["HOME"])  # the student's nbgrader cache and config
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", student_environment(path["course"])["JUPYTER_CONFIG_PATH"])
    manager = AssignmentList()
    manager.root_dir = str(path["course"] / "student")
    listed = manager.list_assignments(course_id="g2c")
    assert listed["success"], listed
    (submitted,) = [entry for entry in listed["value"] if entry["status"] == "submitted"]
    first, latest = submitted["submissions"]
    assert (first["has_local_feedback"], latest["has_local_feedback"], latest["feedback_updated"]) == (False, True, False)
    page = path["workspace"].parent / "feedback" / latest["timestamp"] / NOTEBOOK.replace(".ipynb", ".html")
    assert latest["notebooks"][0]["local_feedback_path"] == str(page)
