"""nbgrader configuration for the course at this repository's root.

`g2c autograde` and nbgrader's own tools (`nbgrader db`, formgrader, `export`,
`generate_feedback`, `release_feedback`, `generate_assignment`) read the folders and the
gradebook named here, so they see the same course.
"""

from pathlib import Path

from g2c.grading.assignment import NOT_RELEASED

c = get_config()  # noqa: F821 (nbgrader injects get_config)

ROOT = Path(__file__).resolve().parent
c.CourseDirectory.root = str(ROOT)  # nbgrader needs an absolute path
c.CourseDirectory.course_id = "g2c"
c.CourseDirectory.db_url = f"sqlite:///{ROOT / 'gradebook.db'}"  # the course's one gradebook
c.CourseDirectory.source_directory = "source_notebooks"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
# An assignment's spec, notebook text, probe scenarios and pitfalls hold its solutions and hidden checks:
# never released.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", *NOT_RELEASED]
# Feedback pages never show hidden tests: nbgrader's GetGrades, then g2c's redaction, rendered by g2c's exporter
# (sanitized, no script, nothing from outside): `nbgrader generate_feedback` writes the page `g2c autograde` writes.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "g2c.grading.nbgrader_feedback.RedactHiddenTests",
]
c.GenerateFeedback.exporter_class = "g2c.grading.feedback.FeedbackExporter"
# g2c autograde has written every page already: without force, generate_feedback skipped each student ("Skipping
# existing assignment") and release_feedback shipped a page that predates the latest hand grades. Rendering again
# from the gradebook is cheap and gives the same page.
c.GenerateFeedback.force = True
# When a submission arrived is the server's fact, not the student's timestamp.txt: this collect (also
# formgrader's Collect button) records each inbound entry's change time for `g2c autograde`.
c.ExchangeFactory.collect = "g2c.grading.exchange.Collect"
# Late submissions: set a due date (`g2c autograde --due DATE` or `nbgrader db assignment add
# 03b-training --duedate DATE`) and a penalty, e.g.
# c.LateSubmissionPlugin.penalty_method = "zero"   # nbgrader's default is "none"
# Formgrader's Autograde button grades through g2c's sandbox (g2c/grading/formgrader_autograde.py), never stock
# nbgrader's unsandboxed autograde; outside formgrader this does nothing.
from g2c.grading.formgrader_autograde import route_formgrader_autograde  # noqa: E402

route_formgrader_autograde()
