"""nbgrader's collect, recording when each submission reached the course (``g2c.grading.received``).

``nbgrader_config.py`` names it as ``c.ExchangeFactory.collect``, so ``nbgrader collect`` and
formgrader's Collect button both use it. It copies as nbgrader's own does, then records the
inbound entry's change time for the notebook bytes it copied (the time ``g2c autograde`` puts in
the gradebook) with the ``timestamp.txt`` the student wrote (a claim), and writes the server's
time in the copy's ``timestamp.txt``, for nbgrader's own readers of it.
"""

from __future__ import annotations

import contextlib
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
        super().do_copy(src, dest, log)
        student = self._path_to_record(src)["username"]
        ledger = self._ledger()
        if ledger is not None:
            record = received.from_exchange(entry, self._digest(Path(dest)), self._claimed(Path(dest)))
            received.save(ledger, student, record)
            atomic_write(Path(dest) / "timestamp.txt", record.timestamp_txt.encode())  # the claim is in the record
            self.log.info("%s received at %s UTC (the inbound entry's change time)", student, record.at)

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
