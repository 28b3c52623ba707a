"""`g2c autograde --scheduler`: the same grading on a Dask cluster (a worker process on loopback)."""

from __future__ import annotations

import csv

import nbformat
import pytest
from conftest import RELEASED, ROOT, SOURCE, SPEC, without_demos

from g2c.grading import notebook_build as build
from g2c.grading.autograde import autograde
from g2c.grading.sandbox.box import isolation_available

NOTEBOOKS = {"solution": SOURCE, "starter": RELEASED}
FULL = sum(build.autograded_points(SPEC).values())
pytestmark = pytest.mark.batch  # a grading run: beside the shared class (`make pytest-batch`), where the book's load has no room


@pytest.mark.slow
@pytest.mark.skipif(isolation_available() is not None, reason="no sandbox here")
def test_a_local_dask_cluster_grades_like_the_local_pool(tmp_path):
    from distributed import LocalCluster

    submitted, out = tmp_path / "submitted", tmp_path / "out"
    for student, notebook in NOTEBOOKS.items():
        (submitted / student / "03b-training").mkdir(parents=True)
        no_demos = without_demos(nbformat.read(notebook, as_version=4))  # no point depends on them (test_autograde)
        nbformat.write(no_demos, submitted / student / "03b-training" / "training.ipynb")
    (submitted / "empty" / "03b-training").mkdir(parents=True)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
        results = autograde(
            ROOT, submitted, out, scheduler=cluster.scheduler_address, timeout=120, memory_mb=6000, progress=False
        )
        workers = len(cluster.workers)
    assert workers == 1
    assert {r.student_id: (r.status, r.score) for r in results} == {
        "empty": ("missing notebook", 0), "solution": ("graded", FULL), "starter": ("graded", 0)}
    with (out / "grades.csv").open() as f:
        assert [row["student_id"] for row in csv.DictReader(f)] == ["empty", "solution", "starter"]
    assert (out / "feedback" / "solution" / "03b-training" / "training.html").exists()
