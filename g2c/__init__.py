"""g2c: the course's reference package (models, data, training recipe, widgets, grading)."""

__version__ = "0.3.2"
