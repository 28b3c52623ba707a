"""Issue 23: every wrong answer loses points, every right one keeps them, the same code gets the same
grade, and an unnamed difference says what to reproduce.

In process, as tests/test_probe_compare.py: the "students" are the catalogue's mutants and the corpus
of tests/corpus_issue23.py (mistakes the catalogue does not name, correct alternatives), their
records made by running the scenarios here and decided by ``compare.decide``.
"""

from __future__ import annotations

import re

import corpus_issue23 as corpus
import pytest
import test_probe_compare as T
from conftest import CATALOGUE, SPEC

from g2c.grading import compare, seeding

SEEDS = (T.SEED, T.SEED + 1)  # test_probe_compare's: the expected data is cached across both modules


def namespace_of(entry: corpus.Entry) -> dict:
    """A whole notebook's namespace: the reference answers but ``entry``'s."""
    if entry.answer == "p1":
        return T.student(p1=entry.value)
    return T.student(**{entry.answer: entry.source()})


def pitfall_namespace(name: str) -> dict:
    p = CATALOGUE.by_name[name]
    return T.student() | CATALOGUE.namespace(p.answer, (name,))


def lost(namespace: dict, seed: int) -> tuple[set[str], dict[str, str]]:
    checks = T.verdicts(namespace, seed)
    return T.failed(checks), {n: c.message for n, c in checks.items() if not c.passed}


@pytest.mark.parametrize("entry", corpus.WRONG + corpus.RIGHT, ids=lambda e: e.name)
def test_corpus_entry_loses_exactly_its_cells(entry):
    for seed in SEEDS:
        failed, messages = lost(namespace_of(entry), seed)
        assert failed == set(entry.lost), (seed, messages)


def test_the_corpus_is_big_enough():
    assert len(corpus.WRONG) >= 30 and len(corpus.RIGHT) >= 10
