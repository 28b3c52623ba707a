"""When a submission reached the course: a fact the server keeps, never one a student wrote.

nbgrader's ``submit`` writes ``timestamp.txt`` on the student's side, into an inbound entry the
student owns (a 0777 folder of 0644 files, theirs to rewrite), and ``collect`` copies it with its
files' mtimes: both are the student's word. What no user can set is a change time (st_ctime): the
kernel sets it to *now* whenever an inode's content, metadata, links or name change. So the time a
submission arrived is the latest change time of its folder and everything under it (see
:func:`changed_at`): whatever a student does to their entry after submitting can only move it later.

- Through the exchange, :mod:`g2c.grading.exchange`'s collect reads it on the inbound entry right
  after copying it, and records it here (``how = "exchange"``).
- Collected with no record (nbgrader's own collect), g2c reads it, the first time it sees those
  notebook bytes, on the earliest inbound entry that still holds them (``how = "exchange"``).
- Placed in ``submitted/`` by hand (tests, an LMS download), g2c reads it on that copy the first
  time it sees those notebook bytes (``how = "submitted"``): when the files were put there.

A record (``<received>/<student>.json``, beside the batch's grades, never in a folder a student can
write) names the notebook bytes it vouches for; a regrade of the same bytes keeps its time. The
``timestamp.txt`` that came with the submission is only a claim, compared with it (:func:`claim`).
Collect keeps the entry's in the record and writes the server's time in the copy's timestamp.txt:
nbgrader's own readers of that file (formgrader's "autograded?", stock ``nbgrader autograde``,
``collect --update``) then agree with the gradebook.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from g2c.grading.course import atomic_write

CLAIM_TOLERANCE = 60.0  # seconds between timestamp.txt and the server's time before it is flagged (submit takes ~1 s)
MAX_ENTRIES = 10_000  # walked in one submission folder; past that, the folder counts as changed now


@dataclass(frozen=True)
class Received:
    at: str  # UTC, "YYYY-MM-DD HH:MM:SS.ffffff", as nbgrader's gradebook stores times
    how: str  # "exchange" (the inbound entry's change time, read by collect) or "submitted" (the copy's, first seen by g2c)
    digest: str  # sha256 of the notebook bytes this time is about
    entry: str = ""  # the inbound entry collected ("exchange" only)
    claimed: str = ""  # the entry's timestamp.txt, as the student wrote it ("exchange" only: collect replaces the copy's)
    warning: str = ""  # what collect found against who sent it (entries refused under this id, an owner it could not check)

    @property
    def time(self) -> datetime:
        return datetime.fromisoformat(self.at)

    @property
    def timestamp_txt(self) -> str:
        """This time as nbgrader's exchange writes timestamp.txt (its default ``timestamp_format``, in UTC)."""
        return f"{self.at} UTC"


def changed_at(folder: Path, *names: str) -> datetime | None:
    """The latest st_ctime (UTC, naive) of ``folder/names...`` and everything under it, read with
    lstat and O_NOFOLLOW from descriptors, component by component from ``folder``: never through a
    link (a link's own change time counts, not its target's). None when it is missing or not a
    real folder."""
    try:
        top = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    for name in names:
        try:
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
        except OSError:
            return None
        finally:
            os.close(top)
        top = inner
    latest, budget, stack = 0.0, MAX_ENTRIES, [top]
    try:
        while stack:
            fd = stack.pop()
            try:
                latest = max(latest, os.fstat(fd).st_ctime)
                for name in os.listdir(fd):
                    budget -= 1
                    if budget < 0:  # a folder built to be slow to read: the server saw it now
                        return datetime.now(UTC).replace(tzinfo=None)
                    try:
                        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                        latest = max(latest, info.st_ctime)
                        if stat.S_ISDIR(info.st_mode):
                            stack.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd))
                    except OSError:  # gone or swapped for a link meanwhile: the folder's own ctime moved
                        continue
            finally:
                os.close(fd)
    finally:
        for fd in stack:
            os.close(fd)
    return datetime.fromtimestamp(latest, UTC).replace(tzinfo=None)


def _stamp(moment: datetime) -> str:
    return moment.isoformat(sep=" ", timespec="microseconds")


def load(folder: Path, student: str) -> Received | None:
    """The record of ``student`` in the ledger ``folder`` (None: none, or unreadable)."""
    try:
        data = json.loads((folder / f"{student}.json").read_text())
        return Received(**{k: str(data[k]) for k in ("at", "how", "digest")},
                        **{k: str(data.get(k, "")) for k in ("entry", "claimed", "warning")})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(folder: Path, student: str, record: Received) -> None:
    atomic_write(folder / f"{student}.json", json.dumps(asdict(record), indent=1).encode())


def warn(folder: Path, student: str, note: str) -> None:
    """Add ``note`` to the warning of the record of ``student`` (once; nothing when there is no record)."""
    record = load(folder, student)
    if record is not None and note not in record.warning:
        save(folder, student, replace(record, warning="; ".join(filter(None, [record.warning, note]))))


def from_exchange(entry: Path, digest: str, claimed: str, warning: str = "") -> Received:
    """The record of an inbound entry just copied: read *after* the copy, so that a change made
    before the copy ended shows in it (a change after it is not in the copy)."""
    moment = changed_at(entry) or datetime.now(UTC).replace(tzinfo=None)
    return Received(_stamp(moment), "exchange", digest, entry.name, claimed, warning)


def first_seen(copy: tuple[Path, str], digest: str) -> Received:
    """The record of a submission found in ``submitted/`` (``copy``: ``(submitted/<student>,
    assignment)``, see :func:`changed_at`) with no record for its bytes: when its files were put
    there (now, when even that cannot be read: a link where a folder should be)."""
    moment = changed_at(*copy) or datetime.now(UTC).replace(tzinfo=None)
    return Received(_stamp(moment), "submitted", digest)


def from_inbound(entries: list[Path], digest: str, digest_of: Callable[[Path], str]) -> Received | None:
    """For bytes collected without a record (nbgrader's own collect, or before g2c recorded): the
    earliest inbound entry that holds these exact notebook bytes, timed by its change time read
    after hashing it (its bytes were there by then; an entry with other bytes proves nothing)."""
    found = []
    for entry in entries:
        if digest_of(entry) == digest and (moment := changed_at(entry)) is not None:
            found.append((moment, entry.name))
    if not found:
        return None
    moment, name = min(found)
    return Received(_stamp(moment), "exchange", digest, name)


def known(folder: Path, student: str, copy: tuple[Path, str], digest: str,
          inbound: Callable[[], Received | None] = lambda: None) -> Received:
    """The student's record for these notebook bytes, made (and kept) the first time they are seen:
    from the exchange's inbound entries when one holds them, else from the copy in ``submitted/``."""
    record = load(folder, student)
    if record is None or record.digest != digest:
        record = inbound() or first_seen(copy, digest)
        save(folder, student, record)
    return record


@dataclass(frozen=True)
class Claim:
    claimed: str  # timestamp.txt's time, as the gradebook writes times ("" when none or not a time)
    flag: str  # why it was flagged ("" when it agrees with the server, or there is no claim)


def claim(text: bytes | None, received: datetime, warning: str = "") -> Claim:
    """What ``timestamp.txt`` says against the server's time: flagged when it is not a time, or
    differs by more than CLAIM_TOLERANCE seconds (earlier: the student's clock or the student).
    The record's ``warning`` (who sent it, :mod:`g2c.grading.exchange`) is flagged with it: one column
    of grades.csv, the report and the summary carry every doubt about a submission's arrival."""
    said = _claim(text, received)
    return Claim(said.claimed, "; ".join(filter(None, [said.flag, warning])))


def _claim(text: bytes | None, received: datetime) -> Claim:
    from nbgrader.utils import parse_utc

    words = (text or b"").decode("utf-8", "replace").strip()
    if not words:
        return Claim("", "")
    try:
        said = parse_utc(words)
    except (ValueError, OverflowError):
        return Claim("", "timestamp.txt is not a time")
    gap = (received - said).total_seconds()
    if abs(gap) <= CLAIM_TOLERANCE:
        return Claim(_stamp(said), "")
    side = "before" if gap > 0 else "after"
    return Claim(_stamp(said), f"timestamp.txt claims {abs(gap):.0f} s {side} the server's time")
