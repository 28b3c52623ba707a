"""nbgrader's collect, behind a wall, recording when each submission reached the course (``g2c.grading.received``).

``nbgrader_config.py`` names it as ``c.ExchangeFactory.collect``, so ``nbgrader collect`` and
formgrader's Collect button both use it. nbgrader's inbound folder is mode 2733: every account on
the machine may create an entry there under any name, and nbgrader's collect trusts the name
(``<student_id>+<assignment>+<timestamp>+<random>``): another student could file a notebook as
yours, named later to be "the latest", or plant links, FIFOs, devices, huge files and names that
fail the whole class's collect. So collect takes an entry only when :func:`entry_refusal` finds
nothing against it: owned by the account the student id names (``Collect.student_account``) and
a plain folder of plain files and folders, all that account's; a refused entry is logged, never
competes for "latest", and is noted in the record of the student its name claims.

It copies without following a link, then records the inbound entry's change time for the notebook
bytes it copied (the time ``g2c autograde`` puts in the gradebook) with the ``timestamp.txt`` the
student wrote (a claim) and any warning about who sent it (grades.csv's ``timestamp_flag``), and
writes the server's time in the copy's ``timestamp.txt``, for nbgrader's own readers of it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import pwd
import shutil
import stat
from datetime import datetime
from pathlib import Path

from nbgrader.exchange.default.collect import ExchangeCollect
from traitlets import Unicode

from g2c.grading import received
from g2c.grading.assignment import chosen, load
from g2c.grading.course import atomic_write, course_grades

REFUSED = "\0refused"  # the username nbgrader's selection files refused entries under: no name can hold a NUL


class Collect(ExchangeCollect):
    """nbgrader's local-exchange collect of the entries the wall accepts, plus the server's time of each entry it copies."""

    student_account = Unicode(
        "{student_id}",
        help="The login whose uid must own a student's inbound entry, made from their student id. The default: ids are "
             "logins. Set it where they differ (e.g. 's-{student_id}'). An id that names no account here is collected "
             "unchecked (see Collect._unvouched).",
    ).tag(config=True)

    def init_src(self):
        """nbgrader's choice of each student's latest entry, made among the entries the wall accepts only."""
        self._refused: dict[str, list[str]] = {}
        super().init_src()
        self.src_records = [record for record in self.src_records if record["username"] != REFUSED]

    def copy_files(self):
        """nbgrader's copy of each chosen entry, then each refusal noted in the record of the student whose id it
        used, whether collect copied for them now or before (their latest may be collected already)."""
        super().copy_files()
        ledger = self._ledger() if self._refused else None
        if ledger is None:
            return
        for student, notes in self._refused.items():
            for note in notes:
                received.warn(ledger, student, note)

    def _path_to_record(self, path):
        """nbgrader's record of an accepted entry. A refused one is logged, noted for the student its name claims,
        and filed under REFUSED (nbgrader groups records by username), so it never competes for a student's latest."""
        entry = Path(path)
        student = entry.name.rsplit("+", 3)[0]
        why = self._refusal(entry)
        if not why:
            return super()._path_to_record(path)
        self.log.error("Not collected: inbound entry %r %s", entry.name, why)
        self._refused.setdefault(student, []).append(f"inbound entry {entry.name!r} not collected: it {why}")
        return {"username": REFUSED, "filename": entry.name, "timestamp": datetime.min}

    def _refusal(self, entry: Path) -> str:
        """Why ``entry`` is not the submission of the student its name claims ("" when it may be)."""
        from nbgrader.utils import parse_utc

        from g2c.grading.autograde import PLAIN_ID

        parts = entry.name.rsplit("+", 3)
        if not PLAIN_ID.fullmatch(parts[0]):  # a newline, markup, a terminal's escapes: never a folder or a log's id
            return f"is filed under {parts[0]!r}, not a plain student id ({PLAIN_ID.pattern})"
        try:
            parse_utc(parts[2])
        except (ValueError, OverflowError, IndexError):  # nbgrader's parse failed the whole collect
            return "has no submission time in its name"
        return entry_refusal(entry, self._account(parts[0]), self.coursedir.max_dir_size * 1000)

    def _login(self, student: str) -> str:
        """The login ``student_account`` makes of a student id (a template that is not one fails collect, loudly)."""
        return self.student_account.format(student_id=student)

    def _account(self, student: str) -> int | None:
        return account_uid(self._login(student))

    def _unvouched(self, entry: Path, student: str) -> str:
        """The warning for an entry collected under an id that names no account here ("" when none is due).

        No uid can vouch for such an entry, so it is collected as nbgrader collects it (the wall's other checks
        hold), and the log says so: the tests, the single-account demo and a course whose ids are not logins
        work as before; refusing would refuse their whole class. It is flagged (grades.csv, report, summary) only
        when an account other than the collector's own owns it: in a single-account course every entry is the
        collector's, and a flag on every row is one nobody reads; another account filing under an id that names
        nobody is worth a look."""
        login = self._login(student)
        self.log.warning("Owner not checked: no account named %r on this machine for student %r (Collect.student_account)",
                         login, student)
        try:
            uid = os.lstat(entry).st_uid
        except OSError:
            return f"no account named {login!r} here: who submitted is not checked"
        if uid == os.geteuid():
            return ""
        return f"no account named {login!r} here: who submitted is not checked; the entry is owned by {who(uid)}"

    def do_copy(self, src, dest, log=None):
        entry, copy = Path(src), Path(dest)
        student = entry.name.rsplit("+", 3)[0]
        owner = self._account(student)
        try:
            uid = os.lstat(entry).st_uid if owner is None else owner  # unchecked: still one account's folder
            copy_without_links(entry, copy, self._kept, self.coursedir.max_dir_size * 1000, self.log, owner=uid)
        except (OSError, RuntimeError) as err:  # changed since the wall read it
            self.log.error("Not collected: inbound entry %r changed while it was copied (%s)", entry.name, err)
            shutil.rmtree(copy, ignore_errors=True)
            with contextlib.suppress(OSError):  # the student's folder collect made for it, when empty
                os.rmdir(copy.parent)
            return
        warning = self._unvouched(entry, student) if owner is None else ""
        ledger = self._ledger()
        if ledger is not None:
            record = received.from_exchange(entry, self._digest(copy), self._claimed(copy), warning)
            received.save(ledger, student, record)
            atomic_write(copy / "timestamp.txt", record.timestamp_txt.encode())  # the claim is in the record
            self.log.info("%s received at %s UTC (the inbound entry's change time)", student, record.at)

    def _kept(self, name: str, size: int) -> bool:
        """nbgrader's own rule for what collect copies (CourseDirectory.ignore, include, max_file_size in kB)."""
        course = self.coursedir
        if any(fnmatch.fnmatch(name, glob) for glob in course.ignore):
            return False
        if course.include and not any(fnmatch.fnmatch(name, glob) for glob in course.include):
            return False
        return not (course.max_file_size and size > 1000 * course.max_file_size)

    def _ledger(self) -> Path | None:
        """The course's record of arrivals for this assignment, when it is one of the course's (g2c) assignments."""
        root, name = Path(self.coursedir.root), self.coursedir.assignment_id
        try:
            chosen(root, name)
        except ValueError:
            self.log.warning("%s is not a g2c assignment of %s: arrival times not recorded", name, root)
            return None
        return course_grades(root.resolve(), name) / "received"

    def _digest(self, copy: Path) -> str:
        """The collected notebook's digest, as the grader keys its results on it."""
        from g2c.grading.autograde import notebook_digest

        return notebook_digest(copy, load(self.coursedir.assignment_id, Path(self.coursedir.root)).notebook)

    def _claimed(self, copy: Path) -> str:
        """The timestamp.txt the student's entry held (copied with it), read as the grader reads it."""
        from g2c.grading.autograde import MAX_COMPANION_BYTES, read_without_links

        try:
            data = read_without_links(copy, "timestamp.txt", limit=MAX_COMPANION_BYTES)
        except OSError:
            return ""
        return data[:MAX_COMPANION_BYTES].decode("utf-8", "replace")


def account_uid(login: str) -> int | None:
    """The uid of the account ``login``; None when there is none on this machine."""
    try:
        return pwd.getpwnam(login).pw_uid
    except KeyError:
        return None


def entry_refusal(entry: Path, owner: int | None, max_bytes: int) -> str:
    """Why ``entry`` is not a plain folder of plain files and folders, every one owned by ``owner`` (when None, by
    the entry's own owner: a file of another account, hard-linked in, is not theirs to hand in), of at most
    ``max_bytes`` in all; "" when it is.

    Read as :func:`copy_without_links` reads it, from folder descriptors with lstat, never through a link, nothing
    opened but folders (O_NOFOLLOW): a FIFO never blocks it. Sizes are lstat's, so a huge entry (even a sparse
    one) is refused before a byte of it is read; past ``received.MAX_ENTRIES`` names, one built to be slow to walk.
    """
    try:
        info = os.lstat(entry)
        if not stat.S_ISDIR(info.st_mode):
            return f"is {kind(info.st_mode)}, not a folder"
        if owner is not None and info.st_uid != owner:
            return f"is owned by {who(info.st_uid)}, not {who(owner)}"
        owner = info.st_uid
        stack = [(os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW), "")]
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    total, budget = 0, received.MAX_ENTRIES
    try:
        while stack:
            fd, where = stack.pop()
            try:
                for name in sorted(os.listdir(fd)):
                    budget -= 1
                    if budget < 0:
                        return f"holds more than {received.MAX_ENTRIES} names"
                    path, info = where + name, os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if info.st_uid != owner:
                        return f"holds {path!r}, owned by {who(info.st_uid)}, not {who(owner)}"
                    if stat.S_ISDIR(info.st_mode):
                        stack.append((os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd), f"{path}/"))
                    elif not stat.S_ISREG(info.st_mode):
                        return f"holds {path!r}, {kind(info.st_mode)}"
                    elif (total := total + info.st_size) > max_bytes:
                        return f"holds {total} bytes, more than the {max_bytes} allowed (nbgrader's max_dir_size)"
            finally:
                os.close(fd)
    except OSError as err:  # a name gone or swapped for a link while it was read
        return f"changed while it was read ({err.strerror})"
    finally:
        for fd, _ in stack:
            os.close(fd)
    return ""


def kind(mode: int) -> str:
    """What a file of this mode is, in a refusal's words."""
    kinds = [(stat.S_ISLNK, "a link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a file")]
    return next((words for test, words in kinds if test(mode)), "not a file")


def who(uid: int) -> str:
    """An account as a log line names it: its login and uid."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def copy_without_links(src: Path, dest: Path, kept, max_bytes: int, log, owner: int | None = None) -> None:
    """Copy the student's entry as root without ever following a link or opening anything but a regular file.

    nbgrader's copy (shutil.copytree) follows links inside the entry, so a link to a root-only file
    landed in ``submitted/``, and opening a FIFO hung collect. Here every name is read relative to its
    folder's descriptor: folders are entered with O_NOFOLLOW, files opened O_NOFOLLOW | O_NONBLOCK and
    copied only when fstat says regular (and, with ``owner``, owned by that uid: what :func:`entry_refusal`
    checked may have changed since); links, FIFOs, sockets, devices and others' files are skipped and logged.
    ``kept(name, size)`` is nbgrader's ignore/include/size rule; past ``max_bytes`` in all, collect stops.
    """
    total = 0

    def walk(folder_fd: int, target: Path) -> None:
        nonlocal total
        target.mkdir(parents=True, exist_ok=True)
        for name in sorted(os.listdir(folder_fd)):
            info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode) and kept(name, 0):
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder_fd)
                try:
                    walk(child, target / name)
                finally:
                    os.close(child)
            elif stat.S_ISREG(info.st_mode) and kept(name, info.st_size):
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder_fd)
                with os.fdopen(fd, "rb") as f:
                    now = os.fstat(f.fileno())
                    if not stat.S_ISREG(now.st_mode):  # swapped since the lstat
                        continue
                    if owner is not None and now.st_uid != owner:
                        log.warning("Not collected: %r in %s is owned by %s, not %s", name, src, who(now.st_uid), who(owner))
                        continue
                    data = f.read(max_bytes - total + 1)
                total += len(data)
                if total > max_bytes:
                    raise RuntimeError(f"Directory size is too big: more than {max_bytes} bytes")
                (target / name).write_bytes(data)
            elif not stat.S_ISDIR(info.st_mode) and not stat.S_ISREG(info.st_mode):
                log.warning("Not collected: %s in %s is not a regular file or folder (links are not followed)", name, src)

    top = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        walk(top, dest)
    finally:
        os.close(top)
