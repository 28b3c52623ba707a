"""nbgrader's collect, recording when each submission reached the course (``g2c.grading.received``).

``nbgrader_config.py`` names it as ``c.ExchangeFactory.collect``, so ``nbgrader collect`` and
formgrader's Collect button both use it. It copies as nbgrader's own does, then records the
inbound entry's change time for the notebook bytes it copied (the time ``g2c autograde`` puts in
the gradebook) with the ``timestamp.txt`` the student wrote (a claim), and writes the server's
time in the copy's ``timestamp.txt``, for nbgrader's own readers of it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import stat
from pathlib import Path

from nbgrader.exchange.default.collect import ExchangeCollect

from g2c.grading import received
from g2c.grading.assignment import chosen, load
from g2c.grading.course import atomic_write, course_grades


class Collect(ExchangeCollect):
    """nbgrader's local-exchange collect, plus the server's time of each entry it copies."""

    def do_copy(self, src, dest, log=None):
        entry = Path(src)
        try:
            if not stat.S_ISDIR(os.lstat(entry).st_mode):
                raise NotADirectoryError(entry)
        except OSError:  # a link (or a file) planted in inbound under a student's name: never followed
            self.log.error("Not collected: %s is not a folder (links are not followed)", entry)
            with contextlib.suppress(OSError):  # the student's folder collect made for it, when empty
                os.rmdir(os.path.dirname(dest))
            return
        copy_without_links(entry, Path(dest), self._kept, self.coursedir.max_dir_size * 1000, self.log)
        student = self._path_to_record(src)["username"]
        ledger = self._ledger()
        if ledger is not None:
            record = received.from_exchange(entry, self._digest(Path(dest)), self._claimed(Path(dest)))
            received.save(ledger, student, record)
            atomic_write(Path(dest) / "timestamp.txt", record.timestamp_txt.encode())  # the claim is in the record
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


def copy_without_links(src: Path, dest: Path, kept, max_bytes: int, log) -> None:
    """Copy the student's entry as root without ever following a link or opening anything but a regular file.

    nbgrader's copy (shutil.copytree) follows links inside the entry, so a link to a root-only file
    landed in ``submitted/``, and opening a FIFO hung collect. Here every name is read relative to its
    folder's descriptor: folders are entered with O_NOFOLLOW, files opened O_NOFOLLOW | O_NONBLOCK and
    copied only when fstat says regular; links, FIFOs, sockets and devices are skipped and logged.
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
                    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped since the lstat
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
