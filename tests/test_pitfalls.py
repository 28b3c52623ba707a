"""tests/test_training.py tells right from wrong, and each of its tests speaks for one pitfall.

The variants are built from the solution regions of ``g2c/training``: the starter (regions
stripped, as students receive them), every pitfall of the grader's catalogue
(``g2c.grading.pitfalls``) and correct implementations written differently from ours. Each
contract test is called on each variant, in this process (the variant bound to the contract
module's names), and its failure read the way students read it (``g2c.checks.describe``).

- the starter: exactly the given tests pass; every other test says "not written yet";
- a pitfall fails the visible tests of the cells it is charged to, may fail the catch-all
  "matches torch" tests of its answer, and nothing else; its first line is the test's own
  message, not a crash;
- a different correct implementation passes everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import test_training as contract
from conftest import CATALOGUE, SCENARIOS_OF, SPEC, TEST_CELLS

from g2c.checks import describe
from g2c.grading import notebook_build as build
from g2c.grading.regions import _regions, strip_solutions

CONTRACT_TESTS: dict[str, Callable[[], None]] = {n: f for n, f in vars(contract).items() if n.startswith("test_") and callable(f)}
OBJECT_OF = {a.key: a.name for a in SPEC.answers.values() if a.source}  # the answers the contract tests

ALT_REGIONS = {  # the same algorithms, written another way (foreach kernels, float64 sums, other operation order)
    "adamw": '''
        with torch.no_grad():
            self.step_count += 1
            beta1, beta2 = self.betas
            live = [(p, m, v) for p, m, v in zip(self.params, self.m, self.v) if p.grad is not None]
            if not live:
                return
            ps, ms, vs = (list(t) for t in zip(*live))
            gs = [p.grad for p in ps]
            torch._foreach_mul_(ps, 1 - self.lr * self.weight_decay)
            torch._foreach_mul_(ms, beta1)
            torch._foreach_add_(ms, gs, alpha=1 - beta1)
            torch._foreach_mul_(vs, beta2)
            torch._foreach_addcmul_(vs, gs, gs, value=1 - beta2)
            m_hat = torch._foreach_div(ms, 1 - beta1 ** self.step_count)
            v_hat = torch._foreach_div(vs, 1 - beta2 ** self.step_count)
            denom = torch._foreach_add(torch._foreach_sqrt(v_hat), self.eps)
            torch._foreach_addcdiv_(ps, m_hat, denom, value=-self.lr)
''',
    "clip": '''
    grads = [p.grad for p in ([parameters] if isinstance(parameters, torch.Tensor) else parameters) if p.grad is not None]
    total = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)) if grads else torch.tensor(0.0)
    scale = float(max_norm / (total + eps))
    if scale < 1:
        torch._foreach_mul_(grads, scale)
    return total
''',
    "schedule": '''
    if step >= max_steps:
        return min_lr
    if step < warmup_steps:
        return step * (max_lr / warmup_steps)
    angle = math.pi * (step - warmup_steps) / (max_steps - warmup_steps)
    return min_lr + (max_lr - min_lr) * (math.cos(angle) + 1) / 2
''',
}


def defined(answer: str, source: str) -> object:
    """The answer's object (class or function) defined by ``source``, a whole module of g2c/training."""
    namespace: dict[str, object] = {"__name__": f"variant_{answer}"}
    exec(compile(source, f"<variant {answer}>", "exec"), namespace)
    return namespace[OBJECT_OF[answer]]


def with_region(answer: str, body: str) -> str:
    """The reference module of ``answer`` with ``body`` where its solution region stands."""
    reference = CATALOGUE.reference_source(answer)
    (begin, end, _), = _regions(reference)
    lines = reference.splitlines()
    return "\n".join(lines[:begin] + body.strip("\n").splitlines() + lines[end + 1 :]) + "\n"


@contextmanager
def bound(objects: dict[str, object]) -> Iterator[None]:
    """The contract module's names bound to ``objects`` for the duration."""
    saved = {name: getattr(contract, name) for name in objects}
    vars(contract).update(objects)
    try:
        yield
    finally:
        vars(contract).update(saved)


def failures(objects: dict[str, object]) -> dict[str, str]:
    """test name -> the first line a student reads, for every contract test that fails on ``objects``."""
    failed = {}
    with bound(objects):
        for name, test in CONTRACT_TESTS.items():
            try:
                test()
            except (Exception, pytest.fail.Exception) as err:
                failed[name] = describe(err)[0]
    return failed


def visible_tests(scenarios: set[str]) -> set[str]:
    """The contract tests shown in the notebook cells that these probe scenarios decide."""
    return {t for cells in TEST_CELLS.values() for _, _, tests, decided_by in cells if scenarios & set(decided_by) for t in tests}


GRADED = visible_tests({s for scenarios in SCENARIOS_OF.values() for s in scenarios})

# One catalogue pitfall per kind of check cell, for the tests that grade whole submissions
# (tests/test_autograde.py, tests/test_course_flow.py): name -> ({answer: module source}, a contract test it fails).
GRADED_PITFALLS = ("adam_l2", "step_counter_per_parameter", "no_bias_correction", "update_recorded_by_autograd",
                   "clip_each_parameter_alone", "schedule_warmup_off_by_one", "schedule_no_floor")
MUTANTS = {
    name: ({p.answer: CATALOGUE.mutated_source(p.answer, (name,))}, sorted(visible_tests(set(p.charged_to)))[0])
    for name, p in ((n, CATALOGUE.by_name[n]) for n in GRADED_PITFALLS)
}


def test_the_starter_fails_exactly_the_tests_of_the_parts_students_write_and_says_not_written_yet():
    starter = {OBJECT_OF[a]: defined(a, strip_solutions(CATALOGUE.reference_source(a))) for a in OBJECT_OF}
    failed = failures(starter)
    assert set(failed) == GRADED
    assert len(CONTRACT_TESTS) - len(failed) == build.given_tests(SPEC)
    for name, headline in failed.items():
        function = "AdamW.step" if "adamw" in name else "clip_grad_norm_" if "clip" in name else "cosine_with_warmup"
        assert headline.startswith(f"not written yet: {function} still raises NotImplementedError"), (name, headline)


@pytest.mark.parametrize("pitfall", [p for p in CATALOGUE.pitfalls if p.answer in OBJECT_OF], ids=lambda p: p.name)
def test_each_pitfall_fails_its_own_tests_with_their_message_and_no_other(pitfall):
    failed = failures({OBJECT_OF[pitfall.answer]: CATALOGUE.build(pitfall.answer, (pitfall.name,))})
    own = visible_tests(set(pitfall.charged_to))
    catch_all = visible_tests(set(SPEC.catch_all(pitfall.answer)))
    assert own <= set(failed), f"{pitfall.name} slipped past {sorted(own - set(failed))}"
    assert set(failed) <= own | catch_all, (
        f"{pitfall.name} also fails {sorted(set(failed) - own - catch_all)}, not its pitfall's tests"
    )
    for name in own:
        assert not failed[name].startswith(("not written yet", "your code raised")), (name, failed[name])


@pytest.mark.parametrize("answer", sorted(ALT_REGIONS))
def test_a_different_correct_implementation_passes_everything(answer):
    assert failures({OBJECT_OF[answer]: defined(answer, with_region(answer, ALT_REGIONS[answer]))}) == {}


def test_the_reference_passes_everything():
    assert failures({OBJECT_OF[a]: CATALOGUE.build(a, ()) for a in OBJECT_OF}) == {}
