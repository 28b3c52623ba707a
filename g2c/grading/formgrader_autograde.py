"""Formgrader's Autograde button, through g2c's sandboxed grader instead of stock ``nbgrader autograde``.

Stock, the button (``POST /formgrader/api/submission/<assignment>/<student>/autograde``) calls
``NbGraderAPI.autograde``, which runs the student's notebook unsandboxed in the server's own account and
alarms on every cell whose checksum g2c's sanitising changed. nbgrader offers no setting for that class:
formgrader's handlers build ``NbGraderAPI`` by the name ``nbgrader.server_extensions.formgrader.base``
imports, and load the course's ``nbgrader_config.py`` right before each call. That file calls
:func:`route_formgrader_autograde`, which puts :class:`SandboxedAutogradeAPI` under that name when formgrader
is running (elsewhere it imports nothing).
"""

from __future__ import annotations

import sys
from pathlib import Path

FORMGRADER_BASE = "nbgrader.server_extensions.formgrader.base"


def autograde_one(course: Path, assignment: str, student: str) -> dict:
    """``student``'s submission graded (again) by ``g2c autograde`` (sandboxed, into the course's gradebook and
    folders, under the course's lock), answered as nbgrader's API answers the button: success, log, error."""
    from g2c.grading.autograde import autograde, printable

    try:
        results = autograde(course, assignment=assignment, regrade=student, progress=False)
    except SystemExit as err:  # no sandbox here, another run holds the course, no such submission
        return {"success": False, "error": str(err), "log": ""}
    mine = [r for r in results if r.student_id == student]
    if not mine:
        why = next((r.detail for r in results if r.student_id == repr(student)), "no submission of theirs was found")
        return {"success": False, "error": f"g2c autograde did not grade {printable(student)}: {why}", "log": ""}
    r = mine[0]
    detail = f" ({r.detail})" if r.detail else ""
    return {"success": True, "log": f"g2c autograde (sandboxed): {r.score:g}/{r.max_score:g} {r.status}{detail}"}


def sandboxed_api_class():
    """nbgrader's ``NbGraderAPI`` with ``autograde`` routed to :func:`autograde_one`."""
    from nbgrader.apps.api import NbGraderAPI

    class SandboxedAutogradeAPI(NbGraderAPI):
        def autograde(self, assignment_id, student_id, force=True, create=True):
            return autograde_one(Path(self.coursedir.root), assignment_id, student_id)

    return SandboxedAutogradeAPI


def route_formgrader_autograde() -> None:
    """In a running formgrader, its handlers' ``NbGraderAPI`` becomes the sandboxed one (once)."""
    base = sys.modules.get(FORMGRADER_BASE)
    if base is not None and not getattr(base.NbGraderAPI, "g2c_sandboxed", False):
        base.NbGraderAPI = sandboxed_api_class()
        base.NbGraderAPI.g2c_sandboxed = True
