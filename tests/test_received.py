"""When a submission arrived is the server's fact, never the student's ``timestamp.txt``.

In-process, through nbgrader's own exchange code (release, submit, formgrader's collect through
``NbGraderAPI``, as ``nbgrader_config.py`` configures it): an honest student submits on time; a
late student submits after the due date, then rewrites the ``timestamp.txt`` of their inbound
entry and sets their notebook's mtime to before it; a submission is placed in ``submitted/`` by
hand with a ``timestamp.txt`` of long ago. Grading itself is not the
point: each gets a full-marks outcome through the one writer (``record``), then ``g2c autograde``
(no regrade: the results match the notebook bytes) stamps, penalises and reports.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import ASSIGNMENT, RELEASED, SPEC, course_copy, rows, write_submission

from g2c.grading import received
from g2c.grading.autograde import arrival, autograde, flagged_timestamps, read_submission, record, register_assignment
from g2c.grading.course import grade_cells, layout
from g2c.grading.worker import Outcome

pytestmark = pytest.mark.batch  # it runs g2c autograde or collect: in `make pytest-batch`, beside the shared class

HONEST, LATE, BY_HAND = "honest", "late", "by-hand"
STOCK = "stock"  # on time, collected by nbgrader's own collect (after the due date): no record
STOCK_LATE = "stock-late"  # on time, then again late with other bytes; nbgrader's own collect takes the late one
FORGED = "2026-01-01 00:00:00.000000 UTC"  # what the late student writes in timestamp.txt
LONG_AGO = "2025-06-01 12:00:00.000000 UTC"  # the hand-placed submission's timestamp.txt


def student_config(exchange: Path, home: Path, student: str):
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.course_id = "g2c"
    config.CourseDirectory.student_id = student
    config.Exchange.root = str(exchange)
    config.Exchange.assignment_dir = str(home)
    config.Exchange.cache = str(home / ".cache")
    return config


def submit(exchange: Path, home: Path, student: str) -> Path:
    """nbgrader's submit of the released kit (as fetched; a second time, changed) by ``student``;
    returns the new inbound entry."""
    import shutil

    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange import ExchangeFactory

    inbound = exchange / "g2c" / "inbound"
    before = set(inbound.glob(f"{student}+{ASSIGNMENT}+*"))
    if before:  # a second submission, of other bytes
        notebook = home / ASSIGNMENT / SPEC.notebook
        changed = json.loads(notebook.read_text())
        changed["metadata"]["resubmitted"] = True
        notebook.write_text(json.dumps(changed))
    else:
        shutil.copytree(RELEASED.parent, home / ASSIGNMENT)
    config = student_config(exchange, home, student)
    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id = ASSIGNMENT
    ExchangeFactory(config=config).Submit(coursedir=coursedir, authenticator=Authenticator(config=config), config=config).start()
    (entry,) = set(inbound.glob(f"{student}+{ASSIGNMENT}+*")) - before
    return entry


def stock_collect(lay, student: str) -> None:
    """nbgrader's own collect of one student (as before g2c's was configured)."""
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange.default.collect import ExchangeCollect

    config = lay.config.copy()
    config.CourseDirectory.student_id = student
    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id = ASSIGNMENT
    ExchangeCollect(coursedir=coursedir, authenticator=Authenticator(config=config), config=config).start()


def full_marks(lay, student: str) -> Outcome:
    """What a correct notebook's grading gives (the grading itself is tested elsewhere)."""
    points = {cell: points for cell, points in grade_cells(lay).items() if cell not in SPEC.manual}
    data = read_submission(lay, student) or b""
    return Outcome(student, "graded", digest=hashlib.sha256(data).hexdigest(), score=sum(points.values()), cells=points,
                   notebook=data.decode(), feedback="<p>a feedback page</p>", seed=1)


def grade_in_process(course: Path, due: str | None = None) -> None:
    """Each student's outcome through the one writer, then `g2c autograde` (nothing left to grade)."""
    lay = layout(course)
    students = sorted(p.name for p in lay.submitted.iterdir() if not p.name.startswith("."))
    for student in students:
        record(lay, full_marks(lay, student))
    autograde(course, isolate=False, progress=False, due=due)


def exchange_course(course: Path, exchange: Path):
    """A copy of the course with its gradebook, the assignment released to ``exchange`` (made here, 0777, as nbgrader
    asks), late submissions scored zero; returns its layout and formgrader's API on it."""
    from nbgrader.apps import NbGraderAPI

    course_copy(course)
    exchange.mkdir(mode=0o777)
    exchange.chmod(0o777)
    config = (course / "nbgrader_config.py").read_text()
    config += f'\nc.Exchange.root = "{exchange}"\nc.LateSubmissionPlugin.penalty_method = "zero"\n'
    (course / "nbgrader_config.py").write_text(config)
    lay = layout(course)
    register_assignment(course, lay)  # the gradebook, made as g2c makes it (faster than nbgrader's first open)
    api = NbGraderAPI(config=lay.config)
    assert api.release_assignment(ASSIGNMENT)["success"]
    return lay, api


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("received")
    course, exchange = tmp / "course", tmp / "exchange"
    lay, api = exchange_course(course, exchange)
    submit(exchange, tmp / HONEST, HONEST)
    submit(exchange, tmp / STOCK, STOCK)
    submit(exchange, tmp / STOCK_LATE, STOCK_LATE)
    time.sleep(0.2)
    due = datetime.now(UTC)
    time.sleep(0.2)
    entry = submit(exchange, tmp / LATE, LATE)
    submit(exchange, tmp / STOCK_LATE, STOCK_LATE)
    (entry / "timestamp.txt").write_text(FORGED)  # the student owns their entry: they rewrite it after submitting
    before = (due - timedelta(hours=1)).timestamp()
    os.utime(entry / SPEC.notebook, (before, before))
    planted = exchange / "g2c" / "inbound" / f"mallory+{ASSIGNMENT}+2026-01-01 00:00:00.000000 UTC+x"
    secret = tmp / "root-only"
    (secret / ASSIGNMENT).mkdir(parents=True)
    (secret / ASSIGNMENT / SPEC.notebook).write_bytes(RELEASED.read_bytes())
    secret.chmod(0o700)
    planted.symlink_to(secret / ASSIGNMENT)  # an inbound "entry" that is a link to a folder only root can read
    fifo = exchange / "g2c" / "inbound" / f"{LATE}+{ASSIGNMENT}+2027-01-01 00:00:00.000000 UTC+fifo"  # nbgrader's latest
    fifo.mkdir()
    (fifo / SPEC.notebook).write_bytes(RELEASED.read_bytes())
    os.mkfifo(fifo / "pipe")  # refused whole (tests/test_attack_exchange.py): her own entry is collected, and flagged
    for student in (STOCK, STOCK_LATE):
        stock_collect(lay, student)  # nbgrader's own collect, which records nothing
    collected = api.collect(ASSIGNMENT)  # formgrader's Collect button
    assert collected["success"], collected
    by_hand = lay.folder("submitted", BY_HAND, ASSIGNMENT)
    write_submission(lay.submitted, BY_HAND, RELEASED.read_bytes())
    (by_hand / "timestamp.txt").write_text(LONG_AGO)
    grade_in_process(course, due.isoformat(sep=" "))
    return {"course": course, "lay": lay, "due": due.replace(tzinfo=None), "rows": rows(lay.grades_csv),
            "page": lay.report_html.read_text(), "flags": flagged_timestamps(lay), "entry": entry, "fifo": fifo}


@pytest.mark.slow  # nbgrader's exchange and a graded class (in-process): ~30 s
def test_a_forged_timestamp_does_not_make_a_late_submission_on_time(course):
    late, lay = course["rows"][LATE], course["lay"]
    ledger = received.load(lay.received, LATE)
    assert ledger.how == "exchange" and ledger.entry == course["entry"].name and ledger.claimed == FORGED
    assert (lay.folder("submitted", LATE, ASSIGNMENT) / "timestamp.txt").read_text() == ledger.timestamp_txt  # collect's
    assert late["timestamp_source"] == "exchange"
    assert datetime.fromisoformat(late["timestamp"]) > course["due"]  # the server's time, not the claim
    assert float(late["late_penalty"]) > 0 and float(late["score"]) == 0  # "zero": the whole score
    assert late["timestamp_claimed"].startswith("2026-01-01 00:00:00")
    assert "before the server's time" in late["timestamp_flag"]
    assert datetime.fromisoformat(late["timestamp"]) == ledger.time
    from nbgrader.api import Gradebook

    with Gradebook(lay.db_url) as gb:  # what nbgrader's export and LateSubmissionPlugin read
        assert gb.find_submission(ASSIGNMENT, LATE).timestamp == ledger.time


@pytest.mark.slow  # nbgrader's exchange and a graded class (in-process): ~30 s
def test_formgrader_sees_collected_submissions_autograded(course):
    """formgrader compares the gradebook's time with the copy's timestamp.txt: collect wrote the server's there."""
    from nbgrader.apps import NbGraderAPI

    listed = {s["student"]: s["autograded"] for s in NbGraderAPI(config=course["lay"].config).get_submissions(ASSIGNMENT)}
    assert listed[HONEST] and listed[LATE]


@pytest.mark.slow  # nbgrader's exchange and a graded class (in-process): ~30 s
def test_an_honest_submission_is_on_time_and_not_flagged(course):
    honest = course["rows"][HONEST]
    assert honest["timestamp_source"] == "exchange" and honest["timestamp_flag"] == ""
    assert datetime.fromisoformat(honest["timestamp"]) < course["due"]
    assert float(honest["late_penalty"]) == 0 and float(honest["score"]) > 0
    claimed = datetime.fromisoformat(honest["timestamp_claimed"])
    assert abs((claimed - datetime.fromisoformat(honest["timestamp"])).total_seconds()) < received.CLAIM_TOLERANCE


@pytest.mark.slow  # nbgrader's exchange and a graded class (in-process): ~30 s
def test_a_submission_collected_without_a_record_is_timed_by_its_inbound_entry(course):
    """nbgrader's own collect ran after the due date: its copy's change time would make her late."""
    lay, stock = course["lay"], course["rows"][STOCK]
    copy_changed = received.changed_at(lay.submitted / STOCK, ASSIGNMENT)
    assert copy_changed > course["due"]
    assert stock["timestamp_source"] == "exchange" and datetime.fromisoformat(stock["timestamp"]) < course["due"]
    assert float(stock["late_penalty"]) == 0 and stock["timestamp_flag"] == ""
    assert received.load(lay.received, STOCK).entry.startswith(f"{STOCK}+{ASSIGNMENT}+")
    # her on-time entry holds other bytes than those collected: it proves nothing about them
    again = course["rows"][STOCK_LATE]
    assert again["timestamp_source"] == "exchange" and datetime.fromisoformat(again["timestamp"]) > course["due"]
    assert float(again["late_penalty"]) > 0


@pytest.mark.slow  # nbgrader's exchange and a graded class (in-process): ~30 s
def test_a_submission_placed_by_hand_is_timed_when_first_seen_and_its_claim_compared(course):
    lay, by_hand = course["lay"], course["rows"][BY_HAND]
    placed = received.changed_at(lay.submitted / BY_HAND, ASSIGNMENT)
    assert by_hand["timestamp_source"] == "submitted" and datetime.fromisoformat(by_hand["timestamp"]) == placed
    assert by_hand["timestamp_claimed"].startswith("2025-06-01 12:00:00")
    assert "before the server's time" in by_hand["timestamp_flag"]


@pytest.mark.slow  # nbgrader's exchange and a graded class (in-process): ~30 s
def test_flags_reach_the_report_and_the_terminal(course):
    page, flags = course["page"], course["flags"]
    flagged = page.split("id='flagged'")[1].split("<h2")[0]
    assert "<td>late</td>" in flagged and "<td>honest</td>" not in flagged
    assert f"<td>{BY_HAND}</td>" in flagged  # (an id that is markup is refused: tests/test_everyday.py)
    late_part = page.split("id='late'")[1].split("<h3")[0]
    assert "<td>late</td>" in late_part and "<td>honest</td>" not in late_part
    assert sorted(line.split(":")[0] for line in flags) == sorted([LATE, BY_HAND])
    refused = f"inbound entry {course['fifo'].name!r} not collected: it holds 'pipe', a FIFO"  # collect's note
    assert refused in course["rows"][LATE]["timestamp_flag"] and any(refused in line for line in flags)
    assert refused.replace("'", "&#x27;") in flagged


@pytest.mark.slow  # nbgrader's exchange and a graded class (in-process): ~30 s
def test_a_linked_inbound_entry_is_not_collected(course):
    assert not course["lay"].folder("submitted", "mallory", ASSIGNMENT).exists()
    assert "mallory" not in course["rows"]


@pytest.mark.slow  # nbgrader's exchange and a graded class (in-process): ~30 s
def test_a_regrade_keeps_the_time_even_when_the_copies_change_later(course):
    lay = course["lay"]
    for student in (HONEST, LATE, BY_HAND, STOCK, STOCK_LATE):  # a later chmod or touch moves the copies' ctimes
        os.chmod(lay.folder("submitted", student, ASSIGNMENT) / SPEC.notebook, 0o600)
    grade_in_process(course["course"])
    again = rows(lay.grades_csv)
    keep = ("timestamp", "timestamp_source", "timestamp_claimed", "timestamp_flag", "late_penalty", "score")
    assert {s: [again[s][k] for k in keep] for s in again} == {s: [course["rows"][s][k] for k in keep] for s in again}


def test_links_planted_in_submitted_are_not_followed_for_the_time(tmp_path):
    """timestamp.txt and the notebook as links to files only root may read, a student's folder as a
    link to another folder: none is followed."""
    course = course_copy(tmp_path / "course")
    lay = layout(course, submitted=tmp_path / "submitted", out=tmp_path / "out")
    secret = tmp_path / "root-only.txt"
    secret.write_text("2000-01-01 00:00:00 UTC")
    folder = lay.folder("submitted", "eve", ASSIGNMENT)
    folder.mkdir(parents=True)
    (folder / "timestamp.txt").symlink_to(secret)
    (folder / SPEC.notebook).symlink_to(secret)
    time.sleep(0.05)
    secret.chmod(0o600)  # the target changes last: its ctime is the latest, a link followed would bring it in
    data = read_submission(lay, "eve")
    assert b"links are not followed" in data
    record, claim = arrival(lay, "eve", hashlib.sha256(data).hexdigest())
    assert claim == received.Claim("", "")  # the link's target was never read as a claim
    link_changed = max(os.lstat(path).st_ctime for path in (folder, folder / "timestamp.txt", folder / SPEC.notebook))
    seen = record.time.replace(tzinfo=UTC).timestamp()
    assert record.how == "submitted" and seen == pytest.approx(link_changed, abs=1e-5)
    assert os.stat(secret).st_ctime > seen + 0.01
    other = lay.folder("submitted", "honest", ASSIGNMENT)  # an older folder, with a claim of its own
    other.mkdir(parents=True)
    (other / "timestamp.txt").write_text("2000-01-01 00:00:00 UTC")
    time.sleep(0.05)
    (lay.submitted / "mallory").symlink_to(lay.submitted / "honest")
    record, claim = arrival(lay, "mallory", "")
    assert claim == received.Claim("", "")
    assert record.time.replace(tzinfo=UTC).timestamp() >= os.lstat(lay.submitted / "mallory").st_ctime


def test_collect_copies_an_entry_without_following_its_links_or_opening_a_fifo(tmp_path):
    """nbgrader's copytree followed links inside an inbound entry (a root-only file landed in submitted/)
    and opened FIFOs (collect hung): the copy reads regular files and folders only, never through a link."""
    import logging

    from g2c.grading.exchange import copy_without_links

    secret = tmp_path / "secret.txt"
    secret.write_text("the answer key")
    secret.chmod(0o600)
    entry = tmp_path / "alice+03b-training+stamp"
    (entry / "sub").mkdir(parents=True)
    (entry / "training.ipynb").write_text("{}")
    (entry / "sub" / "notes.txt").write_text("mine")
    (entry / "key.txt").symlink_to(secret)
    (entry / "linked-folder").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(entry / "pipe")
    dest = tmp_path / "copy"
    copy_without_links(entry, dest, lambda name, size: not name.endswith(".pyc"), 10**6, logging.getLogger("test"))
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    assert copied == ["sub", "sub/notes.txt", "training.ipynb"]
    assert "the answer key" not in "".join(p.read_text() for p in dest.rglob("*.txt"))
    with pytest.raises(RuntimeError, match="too big"):
        copy_without_links(entry, tmp_path / "small", lambda name, size: True, 3, logging.getLogger("test"))
