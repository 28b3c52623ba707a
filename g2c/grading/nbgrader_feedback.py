"""g2c's feedback inside ``nbgrader generate_feedback`` (nbgrader_config.py puts it there).

nbgrader's own feedback shows hidden tests and their tracebacks (upstream issues 917, 1363), so
the course's ``GenerateFeedback.preprocessors`` run :class:`RedactHiddenTests` after nbgrader's
GetGrades: the page formgrader's "Generate feedback" writes is g2c's redacted page, with the
gradebook's scores (hand grades included), its late penalty, and the reasons the autograded
notebook carries in its metadata. The notebook passes intake again first (an autograded notebook
in the gradebook's folders may predate it, or have been edited): nbgrader then renders only inert,
size-capped markdown and outputs.
"""

from __future__ import annotations

from nbgrader.api import Gradebook
from nbgrader.preprocessors import NbGraderPreprocessor

from g2c.grading.feedback import REASONS_KEY, redact, score_of
from g2c.grading.sandbox.intake import inert_notebook


class RedactHiddenTests(NbGraderPreprocessor):
    """Hidden tests out, lost points explained, total and pending parts shown."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            notebook = gb.find_submission_notebook(info["notebook"], info["assignment"], info["student"])
            scores = {grade.name: score_of(grade) for grade in notebook.grades}
            penalty = notebook.late_submission_penalty or 0.0
        reasons = nb.metadata.get(REASONS_KEY, {})
        reasons = dict(reasons) if isinstance(reasons, dict) else {}
        return redact(inert_notebook(nb), scores, reasons, penalty), resources
