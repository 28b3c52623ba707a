"""g2c.checks: the first line a student reads names what went wrong, never a misleading cause."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from g2c.checks import IMPLEMENTATION, OWN, ChecksFailed, _Collector, block, describe, run_contract, run_own


def raised(fn) -> BaseException:
    with pytest.raises(BaseException) as info:
        fn()
    return info.value


def test_an_unwritten_stub_is_named_by_its_function_even_behind_another_error():
    class AdamW:
        def step(self):
            raise NotImplementedError()

    def test_runs_step():
        try:
            AdamW().step()
        except RuntimeError as err:
            raise AssertionError("step() let the update enter autograd") from err

    assert describe(raised(test_runs_step))[0].startswith(
        "not written yet: test_an_unwritten_stub_is_named_by_its_function_even_behind_another_error.<locals>.AdamW.step"
    )


def test_an_unset_answer_read_by_the_check_is_not_written_yet_but_a_typo_inside_an_answer_is_reported_as_such():
    def test_p1_is_a_number():
        return undefined_p1  # noqa: F821

    def answer():
        return betas1  # noqa: F821

    assert describe(raised(test_p1_is_a_number))[0] == "not written yet: undefined_p1 is not defined (write its cell and run it)"
    assert describe(raised(answer))[0] == "your code raised NameError: name 'betas1' is not defined"


def test_the_assertion_message_comes_first_and_details_are_short():
    err = AssertionError("bias correction is missing\n" + "\n".join(f"detail {i}" for i in range(10)))
    lines = block("test_x", err)
    assert lines[0] == "✗ bias correction is missing" and lines[1] == "    (test_x)"
    assert lines[2:] == [f"    detail {i}" for i in range(4)] + ["    …"]


def test_a_looping_exception_chain_ends():
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a
    assert describe(a)[0] == "your code raised ValueError: a"


def test_the_notebook_shows_only_the_blocks():
    shown = ChecksFailed([["✗ one", "    (test_a)"], ["✗ two", "    (test_b)"]])._render_traceback_()
    assert [line.replace("\x1b[31m", "").replace("\x1b[0m", "") for line in shown] == [
        "✗ one", "    (test_a)", "✗ two", "    (test_b)",
    ]


# ---------------------------------------------------------------- %%check tests/test_x.py: the contract's tests by name

CONTRACT = '''import importlib, os
impl = importlib.import_module(os.environ.get("G2C_TRAINING_MODULE", "no_such_default"))
double = impl.double


def helper():
    return 2


def test_doubles():
    assert double(helper()) == 4, "double must multiply by two"


def test_other():
    assert False, "not selected: never runs"
'''


def run_named(folder, namespace: dict, tests: list[str]) -> _Collector:
    collector = _Collector()
    run_contract(folder / "tests" / "test_c.py", tests, namespace, collector)
    return collector


def test_a_check_cell_runs_the_named_contract_tests_on_the_notebooks_objects_afresh_each_time(tmp_path, monkeypatch):
    """The cell's namespace is what the contract imports, read again at every run (the student reran a cell), and
    nothing stays behind: not the test module, the notebook's module, nor the variable naming it."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_c.py").write_text(CONTRACT)
    (tmp_path / "conftest.py").write_text("raise RuntimeError('the kit conftest reads the saved notebook: not here')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(IMPLEMENTATION, raising=False)
    modules = set(sys.modules)
    wrong = run_named(Path("."), {"double": lambda x: x + 1}, ["test_doubles"])
    assert wrong.passed == [] and [b[:2] for b in wrong.failed] == [["✗ double must multiply by two", "    (test_doubles)"]]
    right = run_named(Path("."), {"double": lambda x: 2 * x}, ["test_doubles"])
    assert right.passed == ["test_doubles"] and right.failed == []
    assert set(sys.modules) == modules and IMPLEMENTATION not in os.environ
    unset = run_named(Path("."), {}, ["test_doubles"])
    assert unset.failed[0][0] == "✗ not written yet: double is not defined (write its cell and run it)"
    assert run_named(Path("."), {}, ["test_gone"]).failed == [[f"✗ test_gone is not a test of {Path('tests/test_c.py')}"]]
    assert " ".join(run_named(tmp_path / "elsewhere", {}, ["test_doubles"]).failed[0]).startswith("✗ the checks' file ")


def test_a_bare_check_cell_runs_its_asserts_on_a_copy_of_the_namespace():
    namespace = {"p1": float("nan")}
    collector = _Collector()
    run_own("import math\nassert math.isfinite(p1), 'set p1 to a finite number'", namespace, collector)
    assert collector.failed == [["✗ set p1 to a finite number", f"    ({OWN})"]] and list(namespace) == ["p1"]
    unset = _Collector()
    run_own("assert isinstance(p2, float)", {}, unset)
    assert unset.failed[0][0] == "✗ not written yet: p2 is not defined (write its cell and run it)"
