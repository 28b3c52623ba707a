"""g2c.checks: the first line a student reads names what went wrong, never a misleading cause."""

from __future__ import annotations

import pytest

from g2c.checks import ChecksFailed, block, describe


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
