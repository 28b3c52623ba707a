"""A hostile class, graded in one batch beside honest students: every submission gets its row.

Each hostile notebook is the solution with one cell of mischief added (or a broken file), so
anything beyond its own status and lost part would show up as lost marks. The batch runs in the
sandbox (root in CI): the hostile cells report what they managed to read, write or reach, and
the tests check they managed nothing.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from g2c.grading import notebook_build as build
from g2c.grading.sandbox import UID_BASE, isolation_available

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "source_notebooks" / "03b-training" / "training.ipynb"
RELEASED = ROOT / "release" / "03b-training" / "training.ipynb"
AUTOGRADED = [gid for cells in build.TEST_CELLS.values() for gid, _, _ in cells] + list(build.AUTOGRADED_EXERCISES)
FULL = sum(pts for cells in build.TEST_CELLS.values() for _, pts, _ in cells) + sum(build.AUTOGRADED_EXERCISES.values())
TIMEOUT = 60

pytestmark = pytest.mark.skipif(isolation_available() is not None, reason=f"no sandbox here: {isolation_available()}")


def probe(paths: dict[str, Path], write: bool = False) -> str:
    """Cell source that tries each path and prints OPENED or BLOCKED (never raises)."""
    mode, action = ("ab", "f.write(b'x')") if write else ("rb", "f.read(64)")
    lines = []
    for label, path in paths.items():
        lines.append(
            f"try:\n    with open({str(path)!r}, {mode!r}) as f:\n        {action}\n"
            f"    print('OPENED {label}')\nexcept Exception as e:\n    print('BLOCKED {label}', type(e).__name__)")
    return "\n".join(lines)


def mischief(course: Path, out: Path, submitted: Path, port: int) -> dict[str, str]:
    """student -> the cell of mischief added after the setup cell."""
    return {
        "infinite-loop": "while True:\n    pass",
        "ignores-sigterm": "import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass",
        "memory-bomb": "hog = []\nwhile True:\n    hog.append(bytearray(2**28))",
        "kernel-crash": "import os\nos.abort()",
        "gigabyte-of-output": "import sys\nchunk = 'x' * 2**20\nfor _ in range(1024):\n    sys.stdout.write(chunk)",
        "orphans": "import os, subprocess\nopen('/tmp/g2c-hostile-marker', 'w').write('left behind')\n"
                   "subprocess.Popen(['sleep', '987654'], start_new_session=True)\n"
                   "if os.fork() == 0:\n    os.setsid()\n    os.execvp('sleep', ['sleep', '987655'])",
        "network": f"import socket, urllib.request\nfor target in [('127.0.0.1', {port}), ('pypi.org', 443)]:\n    try:\n"
                   f"        socket.create_connection(target, timeout=3).close()\n        print('OPENED', target)\n"
                   f"    except Exception as e:\n        print('BLOCKED', target, type(e).__name__)",
        "reads-secrets": "import os\ndef leaks(path):\n    try:\n        return b'g2c-secret-token' in open(path, 'rb').read()\n    except OSError:\n        return False\n"
                         "found = [p for p in ('/proc/self/environ', '/proc/1/environ') if leaks(p)]\n"
                         "print('OPENED instructor environment' if found or 'g2c-secret-token' in str(os.environ) else 'BLOCKED instructor environment')\n"
                         + probe({"source notebook": course / "source_notebooks" / "03b-training" / "training.ipynb",
                                "gradebook": out / "gradebook.db", "other student": submitted / "honest" / "03b-training" / "training.ipynb",
                                "course git": course / ".git" / "HEAD", "root home": Path("/root/.bashrc")}),
        "writes-grades": probe({"gradebook": out / "gradebook.db", "grades file": out / "grades.csv",
                                "other feedback": out / "feedback" / "honest" / "03b-training" / "training.html"}, write=True),
        "fakes-verdicts": "import json, os\nimport g2c.grading.verdict as v\nv.check = lambda *names: None\n"
                          "try:\n    open(os.environ['G2C_VERDICTS_FILE'], 'w').write('{}')\n    print('OPENED verdicts')\n"
                          "except Exception as e:\n    print('BLOCKED verdicts', type(e).__name__)",
    }


GAMING = """import math, torch, pytest
from IPython import get_ipython
get_ipython().showtraceback = lambda *args, **kwargs: None  # silenced tracebacks
torch.testing.assert_close = lambda *a, **k: None
torch.allclose = lambda *a, **k: True
math.isclose = lambda *a, **k: True
pytest.approx = lambda expected, *a, **k: expected"""


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def with_cell(nb, source: str):
    nb = copy.deepcopy(nb)
    nb.cells.insert(2, nbformat.v4.new_code_cell(source))
    return nb


def write(submitted: Path, student: str, data: bytes | None) -> None:
    folder = submitted / student / "03b-training"
    folder.mkdir(parents=True)
    if data is not None:
        (folder / "training.ipynb").write_bytes(data)


class Listener:
    """A TCP server on the host's loopback that counts who reaches it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


def grade_batch(course: Path, submitted: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "g2c.cli", "autograde", "03b-training", "--course", str(course), "--submitted", str(submitted),
               "--out", str(out), "--jobs", "2", "--timeout", str(TIMEOUT), "--memory", "6000", *extra]
    env = {**os.environ, "G2C_INSTRUCTOR_TOKEN": "g2c-secret-token"}  # must not reach student code
    return subprocess.run(command, capture_output=True, text=True, timeout=1200, env=env)


def rows(out: Path) -> dict[str, dict]:
    with (out / "grades.csv").open() as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def running(text: str, grace: float = 15.0) -> list[str]:
    """Processes whose command line holds ``text``, after ``grace`` s to finish exiting."""
    deadline = time.monotonic() + grace
    while True:
        ps = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True).stdout
        found = [line[:200] for line in ps.splitlines() if text in line]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def sandbox_processes(grace: float = 10.0) -> list[str]:
    """Processes of sandbox uids (or the orphans' sleeps), after ``grace`` s to finish exiting."""
    deadline = time.monotonic() + grace
    while True:
        ps = subprocess.run(["ps", "-eo", "uid=,stat=,args="], capture_output=True, text=True).stdout
        found = [line[:300] for line in ps.splitlines() if int(line.split()[0]) >= UID_BASE or "sleep 98765" in line]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    submitted, out = tmp / "submitted", tmp / "out"
    listener = Listener()
    solution = nbformat.read(SOURCE, as_version=4)
    honest = nbformat.writes(solution).encode()
    write(submitted, "honest", honest)
    write(submitted, "honest-2", honest)
    for student, cell in mischief(ROOT, out, submitted, listener.port).items():
        write(submitted, student, nbformat.writes(with_cell(solution, cell)).encode())
    broken = copy.deepcopy(solution)
    clip = next(c for c in broken.cells if grade_id(c) == "clip")
    clip.source = clip.source.replace("def clip_grad_norm_(", "def clip_grad_norm_((", 1)
    write(submitted, "syntax-error", nbformat.writes(broken).encode())
    cut = copy.deepcopy(solution)  # AdamW's answer cell deleted, clip's duplicated
    index = next(i for i, c in enumerate(cut.cells) if grade_id(c) == "clip")
    twin = copy.deepcopy(cut.cells[index])
    twin.id = "clip-twin"
    cut.cells.insert(index, twin)
    cut.cells = [c for c in cut.cells if grade_id(c) != "adamw"]
    write(submitted, "deleted-and-duplicated-cells", nbformat.writes(cut).encode())
    gamer = with_cell(nbformat.read(RELEASED, as_version=4), GAMING)  # the untouched kit, checks gamed
    for cell in gamer.cells:
        if cell.metadata.get("nbgrader", {}).get("grade") and cell.cell_type == "code":
            cell.source = "%%ipytest -qq\ndef test_nothing():\n    pass"  # visible tests "edited"
    write(submitted, "games-the-checks", nbformat.writes(gamer).encode())
    write(submitted, "truncated-json", honest[: len(honest) // 2])
    write(submitted, "no-notebook", None)
    start = time.perf_counter()
    run = grade_batch(ROOT, submitted, out)
    assert run.returncode == 0, run.stderr[-3000:]
    seconds = time.perf_counter() - start
    return rows(out), out, listener, run, seconds, submitted


def feedback(out: Path, student: str) -> str:
    return (out / "feedback" / student / "03b-training" / "training.html").read_text()


def printed(out: Path, student: str) -> str:
    """What the cell of mischief printed, from the autograded notebook the gradebook keeps."""
    nb = nbformat.read(out / "autograded" / student / "03b-training" / "training.ipynb", as_version=4)
    return "".join(o.get("text", "") for o in nb.cells[2].outputs)


def autograded_score(row) -> float:
    return sum(float(row[c]) for c in AUTOGRADED)


def test_every_submission_gets_exactly_one_row_with_a_clear_status(batch):
    graded, _, _, run, seconds, submitted = batch
    expected = {
        "honest": "graded", "honest-2": "graded", "infinite-loop": "timeout", "ignores-sigterm": "timeout", "memory-bomb": "memory",
        "kernel-crash": "crashed", "gigabyte-of-output": "graded", "orphans": "graded", "network": "graded", "reads-secrets": "graded",
        "writes-grades": "graded", "fakes-verdicts": "graded", "syntax-error": "graded", "truncated-json": "unreadable notebook",
        "no-notebook": "missing notebook", "deleted-and-duplicated-cells": "graded", "games-the-checks": "graded",
    }
    assert {s: r["status"] for s, r in graded.items()} == expected
    print(f"\nhostile batch of {len(graded)} graded in {seconds:.0f} s")
    for student, row in graded.items():
        print(f"  {student:20s} {row['status']:20s} {row['score']}/{row['max_score']}")


def test_honest_and_harmless_mischief_keep_full_marks(batch):
    graded = batch[0]
    for student in ("honest", "honest-2", "gigabyte-of-output", "orphans", "network", "reads-secrets", "writes-grades"):
        assert autograded_score(graded[student]) == FULL, student


def test_code_that_fails_or_is_stopped_scores_zero(batch):
    graded = batch[0]
    for student in ("infinite-loop", "ignores-sigterm", "kernel-crash", "truncated-json", "no-notebook"):
        assert float(graded[student]["score"]) == 0, student


def test_a_syntax_error_costs_its_own_part_only(batch):
    row = batch[0]["syntax-error"]
    clip = [gid for gid, _, _ in build.TEST_CELLS["clip"]]
    assert sum(float(row[c]) for c in clip) == 0
    assert autograded_score(row) == FULL - sum(pts for _, pts, _ in build.TEST_CELLS["clip"])


def test_deleted_cell_costs_its_part_only_and_duplicated_cell_still_grades(batch):
    row = batch[0]["deleted-and-duplicated-cells"]
    adamw = [gid for gid, _, _ in build.TEST_CELLS["adamw"]]
    assert sum(float(row[c]) for c in adamw) == 0
    assert autograded_score(row) == FULL - sum(pts for _, pts, _ in build.TEST_CELLS["adamw"])


def test_gamed_checks_edited_tests_and_silenced_tracebacks_earn_nothing(batch):
    row = batch[0]["games-the-checks"]
    assert autograded_score(row) == 0


def test_faking_the_verdicts_in_the_kernel_earns_nothing(batch):
    graded, out = batch[0], batch[1]
    assert autograded_score(graded["fakes-verdicts"]) == autograded_score(graded["honest"])  # honest answers, no gain
    assert "BLOCKED verdicts" in printed(out, "fakes-verdicts")


def test_student_code_reads_and_writes_nothing_it_should_not(batch):
    _, out, _, _, _, _ = batch
    reads, writes = printed(out, "reads-secrets"), printed(out, "writes-grades")
    for label in ("instructor environment", "source notebook", "gradebook", "other student", "course git", "root home"):
        assert f"BLOCKED {label}" in reads and f"OPENED {label}" not in reads, label
    for label in ("gradebook", "grades file", "other feedback"):
        assert f"BLOCKED {label}" in writes and f"OPENED {label}" not in writes, label


def test_no_network(batch):
    _, out, listener, _, _, _ = batch
    page = printed(out, "network")
    assert "OPENED" not in page and page.count("BLOCKED") == 2
    assert listener.connections == 0


def test_huge_output_is_truncated_and_feedback_stays_small(batch):
    _, out, _, _, _, _ = batch
    page = feedback(out, "gigabyte-of-output")
    assert "output truncated" in page
    assert len(page) < 2_000_000
    assert (out / "autograded" / "gigabyte-of-output" / "03b-training" / "training.ipynb").stat().st_size < 2_000_000


def test_nothing_the_students_started_is_still_running_or_left_in_tmp(batch):
    assert sandbox_processes() == []
    assert not Path("/tmp/g2c-hostile-marker").exists()  # each sandbox has a /tmp of its own


def test_gradebook_has_one_submission_per_student_and_matches_grades_csv(batch):
    from nbgrader.api import Gradebook

    graded, out = batch[0], batch[1]
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        scores = {s.student.id: s.score for s in gb.assignment_submissions("03b-training")}
    assert set(scores) == set(graded)
    assert all(abs(scores[s] - float(r["score"])) < 1e-9 for s, r in graded.items())


def test_a_second_run_grades_nothing_again(batch):
    graded, out, _, _, _, submitted = batch
    before = {p.name: p.stat().st_mtime_ns for p in (out / "results").iterdir()}
    again = grade_batch(ROOT, submitted, out)
    assert again.returncode == 0, again.stderr[-2000:]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "results").iterdir()} == before
    assert rows(out) == graded


def test_a_run_with_another_memory_limit_regrades_only_what_the_memory_limit_stopped(batch):
    graded, out, _, _, _, submitted = batch
    before = {p.stem: p.stat().st_mtime_ns for p in (out / "results").iterdir()}
    again = grade_batch(ROOT, submitted, out, "--memory", "6100")
    assert again.returncode == 0, again.stderr[-2000:]
    changed = {p.stem for p in (out / "results").iterdir() if p.stat().st_mtime_ns != before[p.stem]}
    assert changed == {"memory-bomb"}  # the timeouts keep theirs: their limit did not change
    assert rows(out)["memory-bomb"]["status"] == "memory"


def test_a_run_killed_halfway_resumes_with_what_is_missing(tmp_path):
    submitted, out = tmp_path / "submitted", tmp_path / "out"
    honest = SOURCE.read_bytes()
    for student in ("a", "b", "c"):
        write(submitted, student, honest)
    command = [sys.executable, "-m", "g2c.cli", "autograde", "03b-training", "--course", str(ROOT), "--submitted", str(submitted),
               "--out", str(out), "--jobs", "1", "--timeout", str(TIMEOUT), "--memory", "6000"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list((out / "results").glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(first.pid, signal.SIGKILL)  # the coordinator alone: its pool and sandboxes must follow it
    first.wait()
    assert sandbox_processes() == [] and running("g2c.grading.zygote") == []
    done = {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")}
    assert 1 <= len(done) < 3
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert all((out / "results" / name).stat().st_mtime_ns == mtime for name, mtime in done.items())
    assert {s: r["status"] for s, r in rows(out).items()} == {"a": "graded", "b": "graded", "c": "graded"}
    assert all(json.loads((out / "results" / f"{s}.json").read_text())["score"] == FULL for s in "abc")
    assert not list(out.rglob("*.partial"))
    assert sandbox_processes() == []  # the killed run's kernels died with it
    before = {p.name: p.stat().st_mtime_ns for p in (out / "results").iterdir()}
    forced = subprocess.run([*command, "--force"], capture_output=True, text=True, timeout=600)
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert all(p.stat().st_mtime_ns != before[p.name] for p in (out / "results").iterdir())
