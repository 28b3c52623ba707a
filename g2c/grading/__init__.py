"""Grading tools: solution regions, the student kit, and nbgrader autograding."""
