"""The cost of the sandbox per run: an honest submission's two sandboxed runs (probe and notebook), as a worker makes them.

Times the runs alone (no comparison, no nbgrader): the zygote warm, each round runs the probe and the notebook
run side by side, as ``g2c.grading.worker`` does, and the probe alone. Needs root.
Usage: python tests/benchmarks/bench_sandbox.py [ROUNDS]  (default 5)
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat

from g2c.grading import worker
from g2c.grading.assignment import load
from g2c.grading.autograde import graded_cells, hidden_checks
from g2c.grading.notebook_build import preamble

ROOT = Path(__file__).resolve().parents[2]


def payloads() -> dict[str, dict]:
    """The probe's and the notebook run's payloads for the solution notebook, as ``worker._grade_in`` makes them."""
    spec = load("03b-training", ROOT)
    source = ROOT / "source_notebooks" / spec.name / spec.notebook
    cells = graded_cells(source)
    nb = worker.sanitized(source.read_bytes(), cells)
    sources = worker.probed_sources(nb, spec.probed)
    probe = {"seed": 1, "scenario_source": spec.scenarios.read_text(), "setup": preamble(spec),
             "cells": [[g, sources[g]] for g in spec.probed if g in sources], "scenarios": spec.scenario_names,
             "cell_seconds": 30}
    released = worker.as_released(nb, cells, hidden_checks(source))
    return {"probe": probe, "notebook": {"notebook": nbformat.writes(released), "cell_timeout": 30}}


def uids() -> tuple[int, int]:
    """Two uids as the worker allocates them (before issue 22: one pair per worker process)."""
    fresh = getattr(worker, "fresh_uid", None)
    return (fresh(), fresh()) if fresh else worker.job_uids(os.getpid())


def one_round(kinds: list[str], runs: dict[str, dict], job: worker.Job) -> float:
    work = Path(tempfile.mkdtemp(prefix="g2c-bench-"))
    made = {kind: worker._Run(work, kind, runs[kind]) for kind in kinds}
    threads = [threading.Thread(target=run.start, args=(job, job_uid)) for job_uid, run in zip(uids(), made.values())]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    assert all(run.exit == 0 for run in made.values()), {k: r.exit for k, r in made.items()}
    if os.environ.get("SHOW_FACTS"):
        print({kind: run.facts for kind, run in made.items()})
    for path in work.iterdir():
        path.unlink()
    work.rmdir()
    return seconds


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    worker.private_scratch()
    worker.warm_zygote()
    runs = payloads()
    job = worker.Job("bench", "", None, b"", {}, {})
    for kinds in (["probe"], ["probe", "notebook"]):
        one_round(kinds, runs, job)  # warm
        times = [one_round(kinds, runs, job) for _ in range(rounds)]
        print(f"{' + '.join(kinds):18s} median {statistics.median(times):.2f} s  min {min(times):.2f} s  "
              f"({rounds} rounds, pid {os.getpid()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
