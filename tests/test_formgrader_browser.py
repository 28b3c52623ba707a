"""Where the instructor looks, in a real browser logged in as the instructor: no student byte runs as script.

One student joins the shared graded class (conftest.py ``batch``, graded by ``g2c autograde``), and
carries 55 payloads: intake's whole corpus (tests/test_intake.py) of 44 markdown payloads (in
ordinary cells and in the written answers formgrader shows for hand grading) and 10 kernel
output payloads (the error one raised by the kernel, its class name and message markup), and an
answer cell whose exception message (quoted in the reasons) is markup (a student id that is markup
is refused by ``g2c autograde``: tests/test_everyday.py). Every payload's script, if it ran, would
call ``fetch('/formgrader/api/g2c-pwned')``, or load a URL holding ``g2c-pwned``.

``g2c formgrader`` then starts the course's Jupyter server (127.0.0.1, a free port, a token) over
the class, and chromium (playwright), logged in with the token, opens formgrader's students page,
the submission's grading view, the feedback page and the class report, recording every request,
console message and inline event handler. No request carries the marker; the only handlers in
formgrader's pages are nbgrader's own; and formgrader still works under the policy:
its own script loads the grades through its API, and a hand grade given with its "Full credit"
button reaches the gradebook.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pytest
from conftest import ASSIGNMENT, SPEC, TEST_CELLS, cell_of, grade_id, solution, without_demos
from test_book_browser import CHROMIUM, CHROMIUM_ARGS
from test_intake import ACT, MARKDOWN_PAYLOADS, MARKER, OUTPUT_PAYLOADS

from g2c.grading import path_with_this_environment

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs {CHROMIUM}")]

CARRIER = "carrier"
ANSWER_ERROR = f"<img src=x onerror=\"{ACT}\"> $\\href{{javascript:{ACT}}}{{x}}$"
OUTPUTS_CELL = """import json
from IPython.display import display
for output in json.loads({payloads!r}):
    if output["output_type"] == "stream":
        print(output["text"])
    elif output["output_type"] != "error":
        display(output["data"], raw=True, metadata=output.get("metadata", {{}}))
raise type({name!r}, (Exception,), {{}})({message!r})
"""
NBGRADER_HANDLERS = ("toggle_name(true);", "toggle_name(false);", "createStudentModal();", "toggleAllNames()")  # its templates'
PATIENCE_MS = 90_000  # a page of a loaded machine (see test_book_browser.py)


def carrier_notebook() -> nbformat.NotebookNode:
    """The solution with every payload: markdown cells, written answers, outputs, an answer's exception."""
    nb = without_demos(solution())
    written = [c for c in nb.cells if grade_id(c) in SPEC.manual]
    payloads = list(MARKDOWN_PAYLOADS.values())
    for cell, payload in zip(written, payloads):
        cell.source = payload
    extra = [nbformat.v4.new_markdown_cell(p) for p in payloads[len(written):]]
    errors = [o for o in OUTPUT_PAYLOADS.values() if o["output_type"] == "error"]
    extra.append(nbformat.v4.new_code_cell(OUTPUTS_CELL.format(
        payloads=json.dumps(list(OUTPUT_PAYLOADS.values())), name=errors[0]["ename"], message=errors[0]["evalue"])))
    nb.cells[1:1] = extra
    raising = f"raise ValueError({ANSWER_ERROR!r})"
    cell_of(nb, "adamw").source = f"class AdamW:\n    def __init__(self, *args, **kwargs):\n        {raising}\n"
    return nb


def batch_submissions(paths) -> dict[str, nbformat.NotebookNode]:
    """This module's students in the shared class batch (conftest.py)."""
    return {CARRIER: carrier_notebook()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def formgrader(batch, tmp_path_factory):
    """``g2c formgrader`` over the graded class, from a course folder whose nbgrader_config.py names the batch's
    gradebook and folders."""
    assert batch.run.returncode == 0, batch.run.stderr[-3000:]
    course = tmp_path_factory.mktemp("formgrader")
    out = batch.out
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        "c.CourseDirectory.course_id = 'g2c'\n"
        f"c.CourseDirectory.db_url = {'sqlite:///' + str(out / 'gradebook.db')!r}\n"
        f"c.CourseDirectory.source_directory = {str(batch.course / 'source_notebooks')!r}\n"
        f"c.CourseDirectory.submitted_directory = {str(batch.submitted)!r}\n"
        f"c.CourseDirectory.autograded_directory = {str(out / 'autograded')!r}\n"
        f"c.CourseDirectory.feedback_directory = {str(out / 'feedback')!r}\n")
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "PATH": path_with_this_environment(), "JUPYTER_TOKEN": token, "JUPYTER_RUNTIME_DIR": str(course / ".rt")}
    log = (course / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "g2c.cli", "formgrader", "--course", str(course), "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (course / "server.log").read_text()[-3000:]
                time.sleep(0.3)
        yield {"base": base, "token": token, "out": out, "log": course / "server.log"}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


class Recorder:
    """Every request, console message and page error of a browser context."""

    def __init__(self, context) -> None:
        self.requests: list[str] = []
        self.console: list[str] = []
        self.errors: list[str] = []
        self.failed: list[str] = []
        context.on("request", lambda r: self.requests.append(r.url))
        context.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.status} {r.request.method} {r.url}"))
        context.on("page", self.watch)

    def watch(self, page) -> None:
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def marked(self, opened: list[str]) -> list[str]:
        """Requests that carry the marker, but for the pages the test opened (the hostile id is in a feedback page's path)."""
        mine = {unquote(url) for url in opened}
        return [url for url in self.requests if MARKER in url and unquote(url) not in mine]


# every inline event handler in the page as it stands: (attribute, its code)
HANDLERS = """() => [...document.querySelectorAll('*')].flatMap(e => [...e.attributes]
    .filter(a => a.name.startsWith('on')).map(a => [a.name, a.value]))"""


def submission_id(out: Path) -> str:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        return gb.find_submission_notebook(SPEC.stem, ASSIGNMENT, CARRIER).id


def test_no_student_byte_runs_where_the_instructor_looks(formgrader):
    from playwright.sync_api import sync_playwright

    base, out = formgrader["base"], formgrader["out"]
    submission = submission_id(out)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.set_default_timeout(PATIENCE_MS)
        seen = Recorder(context)
        page = context.new_page()
        # logged in: the token sets the session cookie, as the link the server prints does
        page.goto(f"{base}/formgrader/manage_students?token={formgrader['token']}", wait_until="networkidle")
        page.wait_for_selector("text=carrier")
        handlers = page.evaluate(HANDLERS)
        response = page.goto(f"{base}/formgrader/submissions/{submission}/", wait_until="networkidle")
        policy = response.headers.get("content-security-policy", "")
        handlers += page.evaluate(HANDLERS)
        # formgrader's own script works under the policy: the hand grade of a written answer, by its button
        written = next(g for g in SPEC.manual)
        page.locator(f"#{written}").locator("xpath=ancestor::div[contains(@class,'panel-heading')]").locator(
            "button.full-credit").click()
        page.wait_for_function(f"document.getElementById('{written}').value === '{SPEC.manual[written]:g}'")
        page.wait_for_load_state("networkidle")
        files = [(out / "feedback" / CARRIER / ASSIGNMENT / f"{SPEC.stem}.html").as_uri(), (out / "report.html").as_uri()]
        for url in files:
            page.goto(url, wait_until="load")
        page.wait_for_timeout(500)  # a script scheduled by a page would have run
        browser.close()

    assert not seen.marked(files), seen.marked(files)
    assert "script-src 'self' 'nonce-" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0], policy
    # intake's wall: no handler of the notebook's payloads reached the pages
    assert {code for _, code in handlers} <= set(NBGRADER_HANDLERS), handlers
    refused = [m for m in seen.console if "Content Security Policy" in m]
    assert all("inline event handler" in m for m in refused), refused
    assert not seen.errors, seen.errors
    assert any("/formgrader/api/grades?submission_id=" in url for url in seen.requests)  # formgrader's JS ran
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        grade = gb.find_grade(written, SPEC.stem, ASSIGNMENT, CARRIER)
        assert grade.manual_score == SPEC.manual[written]


def test_payloads_change_neither_status_nor_the_other_points(batch):
    """Graded as any other student: only the answer cell that raises loses its points."""
    row = batch.rows[CARRIER]
    assert row["status"] == "graded"
    from g2c.grading import notebook_build as build

    points = build.autograded_points(SPEC)
    lost = {c for c in points if float(row[c]) < points[c]}
    assert lost and lost <= {gid for gid, _, _, _ in TEST_CELLS["adamw"]}, lost
