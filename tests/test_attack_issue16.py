"""Issue 16 red team: routes that got past the probe and the comparator of commit 545611a, now closed.

Each test states the behaviour the grader must have against one attack (all of them worked at
545611a, when compare.delegation was a deny-list; g2c.grading.cellcheck is now an allow-list).
The attack sources live in tests/hostile/ (match_delegation.py, sysmodules_delegation.py,
match_forge.py, sysmodules_forge.py, unparsable.py, exfiltrate.py).

Fast tests run the comparator in this process (``compare.delegation``, ``compare.decide``), each
attack's notebook included; the slow ones grade three students, each carrying one attack, in the
shared sandboxed batch of conftest.py (``batch_submissions``), through the whole grader.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import pytest
import test_autograde_hostile as H  # its wrong notebook, hostile() and appended()
from conftest import SPEC

from g2c.grading import compare

MATCH = H.hostile("match_delegation.py")
SYSMODULES = H.hostile("sysmodules_delegation.py")
SUBSTITUTES = (MATCH.replace("class AdamW(", "class _SubAdamW(").replace("def clip_grad_norm_(", "def _sub_clip(")
               .replace("def cosine_with_warmup(", "def _sub_schedule(")
               + '\n_SUBST = {"AdamW": _SubAdamW, "clip_" + "grad_norm_": _sub_clip, "cosine_with_warmup": _sub_schedule}\n')
DEEP = "_deep = " + "-" * 3000 + "1\n"  # ast.parse: RecursionError under the grader's recursion limit
UNPARSABLE_DELEGATION = H.hostile("unparsable.py") + DEEP + H.DELEGATION + "\n" + "\n".join(H.PLAIN_BINDINGS.values())


def refused(source: str, answer: str = "adamw") -> bool:
    return compare.delegation(SPEC, answer, source) is not None


# ---------------------------------------------------------------- compare.delegation: what it does not read


def test_a_class_pattern_is_read_like_an_attribute():
    """``case object(optim=o)`` is getattr(torch, "optim"): torch's optimizers, dunders, frames."""
    assert refused(MATCH)
    assert refused("match torch:\n    case object(optim=o):\n        pass")
    assert refused(
        "try:\n    raise ValueError\nexcept ValueError as e:\n"
        "    match e:\n        case object(__traceback__=tb):\n            pass"
    )


def test_modules_hanging_off_allowed_modules_are_refused():
    """torch.sys, torch.os, typing.sys, dataclasses.inspect: every module of the process, clean syntax."""
    for source in ('m = torch.sys.modules["g2c.grading.sandbox.probe"]', "torch.os.write(3, b'x')",
                   "import typing\nm = typing.sys.modules", "import dataclasses\nf = dataclasses.inspect.currentframe()"):
        assert refused(source), source


def test_private_names_are_private_on_any_object_called_self():
    assert refused('self = torch.sys.modules["g2c.grading.sandbox.probe"]\nself._write = print')


def test_typing_does_not_evaluate_strings_for_a_cell():
    """typing.get_type_hints evaluates annotations: eval under another name."""
    assert refused("import typing\ndef f(x: \"__import__('os').getcwd()\"): pass\nhints = typing.get_type_hints(f)")


def test_a_cell_the_grader_cannot_parse_is_refused():
    """The probe compiles what ast.parse gave up on once an earlier cell raised the recursion limit."""
    assert refused(UNPARSABLE_DELEGATION, "diagnosis")


def test_the_deep_cell_really_runs_once_the_limit_is_raised():
    """The premise of the test above: ast.parse fails on it here, compile succeeds after setrecursionlimit."""
    code = ("import ast, sys\nsrc = open(sys.argv[1]).read()\ntry:\n    ast.parse(src)\n    print('parsed')\n"
            "except RecursionError:\n    print('unparsable')\nsys.setrecursionlimit(100000)\n"
            "compile(src, 'c', 'exec')\nprint('compiled')")
    with tempfile.NamedTemporaryFile("w", suffix=".py") as f:
        f.write(DEEP)
        f.flush()
        out = subprocess.run([sys.executable, "-c", code, f.name], capture_output=True, text=True, timeout=120).stdout
    assert out.split() == ["unparsable", "compiled"], out


# ---------------------------------------------------------------- the attacks, graded in the sandboxed batch

STUDENTS = {  # student -> {grade_id: text appended to that cell of the attacks' wrong notebook (H.attack_base)}
    # torch's optimizers through a class pattern's keywords
    "i16-match-delegates": {"diagnosis_answer": MATCH},
    # no class pattern, no frame: torch.sys.modules, operator.attrgetter, a variable called self
    "i16-sysmodules-delegates": {"diagnosis_answer": SYSMODULES},
    # the harness's frame through class patterns, its scenario table run on torch's substitutes
    "i16-match-forges-table": {"adamw_by_hand_answer": SUBSTITUTES + "\n" + H.hostile("match_forge.py")},
    # no frame at all: torch.sys.modules['gc'] finds the scenarios' globals, ``student`` is swapped
    "i16-sysmodules-forges": {"adamw_by_hand_answer": SUBSTITUTES + "\n" + H.hostile("sysmodules_forge.py")},
    # a plain delegation behind a line too deep for ast.parse once an earlier cell raised the recursion limit
    "i16-unparsable-delegates": {"adamw": "torch.sys.setrecursionlimit(100000)", "diagnosis_answer": UNPARSABLE_DELEGATION},
    # the probe's memory (seed, scenario source) sent out through exception names and messages
    "i16-exfiltrates": {"adamw": H.hostile("exfiltrate.py")},
}


# Graded end to end: the two that forge the record (where the sandbox, not the allow-list alone, must hold) and the
# one whose feedback is checked. Every one of the six is held to the allow-list in-process below.
GRADED = ("i16-match-forges-table", "i16-sysmodules-forges", "i16-exfiltrates")


def attacked(student: str):
    return H.attack_with(STUDENTS[student])


def batch_submissions(paths) -> dict[str, object]:
    return {student: attacked(student) for student in GRADED}


@pytest.mark.parametrize("student", sorted(STUDENTS))
def test_each_attack_costs_every_answer_before_any_run(student):
    H.assert_costs_every_answer(attacked(student))


@pytest.mark.slow
def test_no_issue16_attack_scores_a_point(batch):
    scores = {s: {c: v for c, v in H.autograded(batch.rows[s]).items() if v} for s in GRADED}
    assert {s: cells for s, cells in scores.items() if cells} == {}


@pytest.mark.slow
def test_the_probe_memory_does_not_reach_the_feedback(batch):
    page = H.feedback(batch.out, "i16-exfiltrates")
    seed = json.loads((batch.out / "results" / "i16-exfiltrates.json").read_text())["seed"]
    assert f"seed={seed}" not in page
    assert "inputs drawn from a seed" not in page


@pytest.mark.slow
def test_markup_in_exception_names_and_messages_stays_text(batch):
    """Holds today: the student's exception type name and message are escaped in the feedback page."""
    page = H.feedback(batch.out, "i16-exfiltrates")
    assert "Leak&lt;img" in page
    assert "<img src=x" not in page and "<script>alert" not in page


# ---------------------------------------------------------------- what a message gives away


def test_a_wrong_boolean_does_not_say_what_was_expected():
    """"its gradient is still None: is False" tells the student the expected value is True."""
    diff = compare.differ({"flag": True}, {"flag": False}, compare.tolerance(SPEC, "adamw_frozen"))
    assert diff is not None
    assert "False" not in diff.words() and "True" not in diff.words()
