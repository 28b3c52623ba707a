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

from nbconvert.preprocessors import Preprocessor
from nbgrader.api import Gradebook
from traitlets import Bool

from g2c.grading.feedback import HANDED_IN_KEY, REASONS_KEY, redact, standing
from g2c.grading.sandbox.intake import inert_notebook


class RedactHiddenTests(Preprocessor):
    """Hidden tests out, lost points explained (pitfalls, inputs, the grader's comments), total after the
    late penalty, lateness and pending parts shown: what ``g2c autograde``'s page says, from the same gradebook.

    An nbconvert Preprocessor, not nbgrader's: nbgrader configures ``display_data_priority`` on its own
    preprocessors, which this one does not read (nbgrader warned it was not recognized)."""

    enabled = Bool(True, help="nbconvert's preprocessors are off by default; this one is the page's redaction")

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            now = standing(gb.find_submission(info["assignment"], info["student"]), info["notebook"])
        reasons = nb.metadata.get(REASONS_KEY, {})
        reasons = dict(reasons) if isinstance(reasons, dict) else {}
        handed_in = nb.metadata.get(HANDED_IN_KEY)
        nb = inert_notebook(nb)  # keeps no metadata of the notebook's own: the file it came from is put back
        if handed_in is not None:
            nb.metadata[HANDED_IN_KEY] = handed_in
        return redact(nb, now["cells"], reasons, now["late_penalty"], now["comments"], now["seconds_late"]), resources
