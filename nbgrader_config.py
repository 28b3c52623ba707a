"""nbgrader configuration for the course at this repository's root."""

from pathlib import Path

c = get_config()  # noqa: F821 (nbgrader injects get_config)

c.CourseDirectory.root = str(Path(__file__).resolve().parent)  # nbgrader needs an absolute path
c.CourseDirectory.course_id = "g2c"
c.CourseDirectory.source_directory = "source_notebooks"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
