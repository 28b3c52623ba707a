"""A student attacks the course's exchange from another Unix account on the same machine (issue 22, trust).

nbgrader's inbound folder is mode 2733: every account may create entries in it, and its collect trusts
an entry's name, ``<student_id>+<assignment>+<timestamp>+<random>``. Throwaway accounts are made with
``useradd`` (removed after); eve, the attacker, plants with ``setpriv --reuid`` (the kernel's real
owner, as her own shell would leave it). Alice submits with nbgrader's own submit (in process, then
her entry is given to her account, as submitting from it leaves it). One collect of the class,
through formgrader's API (its Collect button), as ``nbgrader_config.py`` configures it.

- eve files a wrong notebook as alice's, named a day later to win nbgrader's "latest";
- eve files one as bob, who has not submitted;
- eve's own entries: a link, a FIFO, folders holding a FIFO, a socket, a link or a device, a huge
  (sparse) entry;
- names: a newline, a terminal's escape sequence, markup, a time that is not one (nbgrader's parse
  failed the whole class's collect);
- an id with no account (the single-account demo, the tests): collected as before, flagged when
  another account than the collector's own owns it.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import ASSIGNMENT, RELEASED, SPEC
from test_received import exchange_course, submit

from g2c.grading import received
from g2c.grading.autograde import arrival, notebook_digest

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="makes throwaway accounts (useradd) and plants as them (setpriv)"),
              pytest.mark.slow,  # accounts, a course's gradebook, two collects of a planted class: ~5 s
              pytest.mark.batch]  # beside the shared class (`make pytest-batch`)

SUFFIX = secrets.token_hex(3)
ALICE, BOB, EVE = (f"g2c{role}{SUFFIX}" for role in ("alice", "bob", "eve"))  # real accounts, made for the module
GHOST, SOLO, OTHER = f"ghost{SUFFIX}", f"solo{SUFFIX}", f"other{SUFFIX}"  # ids that name no account
FORMAT = "%Y-%m-%d %H:%M:%S.%f UTC"  # nbgrader's timestamp_format, in entry names
EVES = {  # eve's own entries: name's last part -> shell that makes it (in inbound, as eve), what the refusal says
    "link": ('ln -s /root "$1"', "a link"),
    "fifo": ('mkfifo "$1"', "a FIFO"),
    "fifo-inside": ('mkdir "$1" && cp "$2" "$1/" && mkfifo "$1/pipe"', "'pipe', a FIFO"),
    "socket-inside": ('mkdir "$1" && cp "$2" "$1/" && python3 -c '
                      '"import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])" "$1/sock"', "'sock', a socket"),
    "link-inside": ('mkdir "$1" && cp "$2" "$1/" && ln -s /etc/shadow "$1/key.txt"', "'key.txt', a link"),
    "device-inside": ('mkdir "$1" && cp "$2" "$1/"', "'null', a device"),  # root adds the device (mknod needs a capability)
}
HUGE = ('mkdir "$1" && cp "$2" "$1/" && truncate -s 60M "$1/a" "$1/b"', "bytes, more than")  # sparse: costs nothing
# ids in names eve plants (``..`` would be collected to ``submitted/../<assignment>``, but nbgrader's glob skips names
# that start with a dot)
ODD = ["dave\n", "\x1b[2Jdave", "<img src=x onerror=alert(1)>"]
NOT_A_TIME = f"frank+{ASSIGNMENT}+not-a-time+x"


def stamp(moment: datetime) -> str:
    return moment.strftime(FORMAT)


def as_account(login: str, where: Path, script: str, *args: str) -> None:
    """``sh -c script`` as ``login`` (its uid, group nogroup, no other group), in ``where``."""
    command = ["setpriv", f"--reuid={login}", "--regid=nogroup", "--clear-groups", "--", "sh", "-c", script, "sh", *args]
    subprocess.run(command, cwd=where, check=True, capture_output=True, timeout=30)


def give(path: Path, login: str) -> None:
    """``chown -R login``: what submitting from that account leaves."""
    subprocess.run(["chown", "-R", "--no-dereference", f"{login}:nogroup", str(path)], check=True)


@pytest.fixture(scope="module")
def accounts():
    made = []
    try:
        for login in (ALICE, BOB, EVE):
            useradd = ["useradd", "--no-create-home", "--no-user-group", "--gid", "nogroup", "--shell", "/bin/false", login]
            subprocess.run(useradd, check=True, capture_output=True)
            made.append(login)
        yield made
    finally:
        for login in made:
            subprocess.run(["userdel", login], capture_output=True)


@pytest.fixture(scope="module")
def attacked(accounts, tmp_path_factory):
    tmp = Path(tempfile.mkdtemp(prefix="g2c-exchange-"))  # other accounts reach it (pytest's own is 0700)
    tmp.chmod(0o755)
    try:
        yield attack(tmp, tmp_path_factory.mktemp("homes"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def attack(tmp: Path, homes: Path) -> dict:
    lay, api = exchange_course(tmp / "course", tmp / "exchange")
    inbound = tmp / "exchange" / "g2c" / "inbound"
    wrong = tmp / "wrong" / SPEC.notebook  # eve's notebook: not alice's bytes
    wrong.parent.mkdir(mode=0o755)
    notebook = json.loads(RELEASED.read_text())
    notebook["metadata"]["by"] = "eve"
    wrong.write_text(json.dumps(notebook))
    wrong.chmod(0o644)
    alices = submit(tmp / "exchange", homes / ALICE, ALICE)
    give(alices, ALICE)
    submit(tmp / "exchange", homes / SOLO, SOLO)  # the collector's own account, as in the single-account demo
    later = stamp(datetime.now(UTC) + timedelta(days=1))
    planted = {"alice": f"{ALICE}+{ASSIGNMENT}+{later}+forged", "bob": f"{BOB}+{ASSIGNMENT}+{later}+forged",
               "ghost": f"{GHOST}+{ASSIGNMENT}+{later}+x"}
    planted["other"] = f"{OTHER}+{ASSIGNMENT}+{later}+x"  # eve's, holding a root-only file hard-linked in
    for name in planted.values():
        as_account(EVE, inbound, 'mkdir "$1" && cp "$2" "$1/"', name, str(wrong))
    secret = tmp / "root-only.txt"
    secret.write_text("the answer key")
    secret.chmod(0o600)
    os.link(secret, inbound / planted["other"] / "key.txt")  # root does it here: fs.protected_hardlinks stops eve
    for i, (kind, (script, _)) in enumerate(EVES.items()):
        planted[kind] = f"{EVE}+{ASSIGNMENT}+{stamp(datetime.now(UTC) + timedelta(minutes=i))}+{kind}"
        as_account(EVE, inbound, script, planted[kind], str(wrong))
    os.mknod(inbound / planted["device-inside"] / "null", 0o666 | 0o020000, os.makedev(1, 3))
    give(inbound / planted["device-inside"] / "null", EVE)
    for i, student in enumerate(ODD):
        as_account(EVE, inbound, 'mkdir "$1" && cp "$2" "$1/"', f"{student}+{ASSIGNMENT}+{later}+{i}", str(wrong))
    first = api.collect(ASSIGNMENT)  # formgrader's Collect button
    # then what failed nbgrader's collect for the whole class: a name whose time is not one, a huge entry (eve's latest)
    as_account(EVE, inbound, 'mkdir "$1" && cp "$2" "$1/"', NOT_A_TIME, str(wrong))
    planted["huge"] = f"{EVE}+{ASSIGNMENT}+{stamp(datetime.now(UTC) + timedelta(days=2))}+huge"
    as_account(EVE, inbound, HUGE[0], planted["huge"], str(wrong))
    planted["alice, after"] = f"{ALICE}+{ASSIGNMENT}+{later}+forged-after-she-was-collected"
    as_account(EVE, inbound, 'mkdir "$1" && cp "$2" "$1/"', planted["alice, after"], str(wrong))
    again = api.collect(ASSIGNMENT)
    return {"lay": lay, "course": tmp / "course", "collected": [first, again],
            "log": first.get("log", "") + again.get("log", ""), "alices": alices, "planted": planted}


def submitted(attacked, student: str) -> Path:
    return attacked["lay"].folder("submitted", student, ASSIGNMENT)


def test_the_class_is_collected_whatever_was_planted(attacked):
    """nbgrader's parse of a name whose time is not one failed the whole collect, and a huge entry stopped it."""
    assert all(collected["success"] for collected in attacked["collected"]), attacked["collected"]
    assert repr(NOT_A_TIME) in attacked["log"]


def test_an_entry_planted_under_another_students_id_does_not_replace_hers(attacked):
    """Named a day later than alice's own, eve's entry was nbgrader's "latest": alice was graded on eve's notebook."""
    copy = submitted(attacked, ALICE) / SPEC.notebook
    assert copy.read_bytes() == (attacked["alices"] / SPEC.notebook).read_bytes()
    line = next(line for line in attacked["log"].splitlines() if repr(attacked["planted"]["alice"]) in line)
    assert "Not collected" in line and f"owned by {EVE}" in line and ALICE in line


def test_an_entry_planted_for_a_student_who_has_not_submitted_is_not_collected(attacked):
    assert not submitted(attacked, BOB).parent.exists()
    assert repr(attacked["planted"]["bob"]) in attacked["log"]


def test_the_student_whose_id_was_used_sees_it_flagged(attacked):
    """What grades.csv's timestamp_flag, the report's flagged table and the summary carry (``arrival``'s claim), also
    for an entry planted after her submission was collected (the second collect copies nothing for her)."""
    lay = attacked["lay"]
    record = received.load(lay.received, ALICE)
    assert record.entry == attacked["alices"].name
    for planted in ("alice", "alice, after"):
        assert f"inbound entry {attacked['planted'][planted]!r} not collected: it is owned by {EVE}" in record.warning
    _, claim = arrival(lay, ALICE, notebook_digest(submitted(attacked, ALICE), SPEC.notebook))
    assert record.warning in claim.flag


@pytest.mark.parametrize("kind", [*EVES, "huge"])
def test_an_entry_that_is_not_a_plain_folder_of_plain_files_is_refused_whole(attacked, kind):
    """Before, the latest of eve's entries was collected: a FIFO, a socket, a link or a device left out of it, a
    huge one read until collect failed for the class."""
    assert not submitted(attacked, EVE).parent.exists()
    line = next(line for line in attacked["log"].splitlines() if repr(attacked["planted"][kind]) in line)
    assert "Not collected" in line and {**EVES, "huge": HUGE}[kind][1] in line


@pytest.mark.parametrize("student", ODD)
def test_a_name_that_is_no_plain_student_id_is_refused_and_nothing_leaves_submitted(attacked, student):
    """They were collected under ids that reach formgrader's pages, the terminal and nbgrader's log."""
    assert not (attacked["course"] / "submitted" / student).exists()
    named = [line for line in attacked["log"].splitlines() if repr(f"{student}+{ASSIGNMENT}+")[:-1] in line]
    assert named and all("Not collected" in line and "not a plain student id" in line for line in named)


def test_an_id_with_no_account_is_collected_as_before_and_flagged_when_another_account_owns_it(attacked):
    """The single-account course (everything the collector's own) keeps working, unflagged; eve's entry under an id
    that names no account is collected too (no uid can vouch for it) but says who owns it."""
    lay = attacked["lay"]
    assert (submitted(attacked, SOLO) / SPEC.notebook).is_file()
    assert received.load(lay.received, SOLO).warning == ""
    assert (submitted(attacked, GHOST) / SPEC.notebook).is_file()
    warning = received.load(lay.received, GHOST).warning
    assert f"no account named {GHOST!r}" in warning and f"owned by {EVE}" in warning


def test_an_entry_under_an_id_with_no_account_is_still_one_accounts_folder(attacked):
    """Unchecked against an account, an entry must still be all its owner's: a root-only file hard-linked into
    eve's entry is not hers to hand in (it would land in ``submitted/``)."""
    assert not submitted(attacked, OTHER).parent.exists()
    line = next(line for line in attacked["log"].splitlines() if repr(attacked["planted"]["other"]) in line)
    assert "Not collected" in line and f"holds 'key.txt', owned by root (uid 0), not {EVE}" in line


def test_an_entry_built_to_be_slow_to_walk_is_refused_after_a_budget_of_names(tmp_path, monkeypatch):
    from g2c.grading.exchange import entry_refusal

    monkeypatch.setattr(received, "MAX_ENTRIES", 3)
    (tmp_path / "entry").mkdir()
    for i in range(4):
        (tmp_path / "entry" / f"{i}.txt").write_text("x")
    assert entry_refusal(tmp_path / "entry", None, 10**6) == "holds more than 3 names"
    (tmp_path / "entry" / "3.txt").unlink()
    assert entry_refusal(tmp_path / "entry", None, 10**6) == ""


def test_the_copy_skips_a_file_another_account_slipped_in_after_the_check(accounts, tmp_path):
    """The wall reads the entry before nbgrader chooses; the copy checks each file it opens again (fstat's owner)."""
    from g2c.grading.exchange import copy_without_links

    entry = tmp_path / "entry"
    entry.mkdir()
    (entry / SPEC.notebook).write_text("{}")
    (entry / "slipped.txt").write_text("eve's")
    give(entry, ALICE)
    give(entry / "slipped.txt", EVE)
    records = []
    log = logging.getLogger("test-copy")
    log.addHandler(handler := logging.Handler())
    handler.emit = records.append
    try:
        copy_without_links(entry, tmp_path / "copy", lambda name, size: True, 10**6, log, owner=os.lstat(entry).st_uid)
    finally:
        log.removeHandler(handler)
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == [SPEC.notebook]
    assert any("slipped.txt" in record.getMessage() for record in records)



def test_a_course_whose_ids_are_not_logins_maps_them_with_one_setting(accounts):
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    from g2c.grading.exchange import Collect

    config = Config()
    config.Collect.student_account = "g2c{student_id}" + SUFFIX  # the id "alice" is the login ALICE
    collect = Collect(coursedir=CourseDirectory(config=config), authenticator=Authenticator(config=config), config=config)
    assert collect._account("alice") == pwd.getpwnam(ALICE).pw_uid
    assert collect._account(ALICE) is None


def test_bytes_nbgrader_collected_are_timed_only_by_the_students_own_entries(attacked, tmp_path):
    """autograde's fallback for a copy without g2c's record (nbgrader's own collect): an entry eve files under
    alice's id with alice's very bytes, earlier than hers, must not time alice's submission."""
    from g2c.grading.autograde import inbound_entries

    lay, inbound = attacked["lay"], attacked["alices"].parent
    early = inbound / f"{ALICE}+{ASSIGNMENT}+{stamp(datetime.now(UTC) - timedelta(days=1))}+copied"
    as_account(EVE, inbound, 'mkdir "$1" && cp "$2" "$1/"', early.name, str(attacked["alices"] / SPEC.notebook))
    try:
        assert early.is_dir()
        assert inbound_entries(lay, ALICE) == [attacked["alices"]]
    finally:
        shutil.rmtree(early)
