"""How a failing contract test reads: the pitfall it caught, in plain words, first.

One home for the wording, used in three places so they say the same thing:

- the kit's ``pytest`` (its ``conftest.py`` loads this module as a plugin): each failure is a
  short block, and the summary line ``FAILED test_x - <headline>`` carries the headline;
- the notebook's test cells (``%load_ext g2c.checks``, then ``%%check`` on a cell of tests):
  one short block per failing test, no pytest report and no escaped copy of the cell;
- nbgrader's Validate, which lists a failing cell's error output: that output is the same blocks.

A test cell that fails raises ``ChecksFailed``; its cells carry the ``raises-exception`` tag, so
Jupyter's Run All goes on to the next cell. Grading never reads any of this: ``g2c autograde``
decides points outside the student's kernel.
"""

from __future__ import annotations

import textwrap
import traceback
from dataclasses import dataclass
from types import TracebackType

import pytest

DETAIL_LINES = 4  # lines of detail kept under a headline: the message must stay the first thing read
MARK = "✗"
WIDTH = 100  # no line of a block is wider: a notebook's output and Validate's dialog cut long lines on the right


def _frames(tb: TracebackType | None) -> list[traceback.FrameSummary]:
    return traceback.extract_tb(tb) if tb else []


def _raised_in(err: BaseException) -> str:
    """``AdamW.step`` or ``clip_grad_norm_``: the function whose body raised ``err``."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "your code"
    code = tb.tb_frame.f_code
    return getattr(code, "co_qualname", code.co_name)


def _stub(err: BaseException) -> BaseException | None:
    """The bare ``NotImplementedError()`` of an unwritten answer, if ``err`` is or came from one."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:  # a chain can loop back on itself
        seen.add(id(err))
        if isinstance(err, NotImplementedError) and not str(err):
            return err
        err = err.__cause__ or err.__context__
    return None


def describe(err: BaseException) -> tuple[str, list[str]]:
    """(headline, details) of a failed test's exception: what went wrong in words, then evidence."""
    stub = _stub(err)
    if stub is not None:
        return f"not written yet: {_raised_in(stub)} still raises NotImplementedError (write it where it says YOUR CODE HERE)", []
    if isinstance(err, (AssertionError, pytest.fail.Exception)):
        lines = [line for line in str(err).splitlines() if line.strip()] or ["a check failed"]
        return lines[0], lines[1:]
    if isinstance(err, NotImplementedError):  # the kit's stand-in for a missing or broken answer cell
        return str(err).splitlines()[0], []
    if isinstance(err, NameError) and err.name and _raised_in(err).rpartition(".")[2].startswith("test_"):
        # the check itself reads an answer such as p1 whose cell has not run yet (a typo inside an answer is not this)
        return f"not written yet: {err.name} is not defined (write its cell and run it)", []
    where = next((f for f in reversed(_frames(err.__traceback__)) if "site-packages" not in f.filename), None)
    details = [f"in {where.name}, line {where.lineno}: {where.line}"] if where and where.line else []
    first = str(err).splitlines()[0] if str(err) else ""
    return f"your code raised {type(err).__name__}" + (f": {first}" if first else ""), details


def wrapped(text: str, first: str, rest: str) -> list[str]:
    """``text`` after ``first`` in lines of at most WIDTH characters, the later ones after ``rest``."""
    return textwrap.wrap(text, WIDTH, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False) or [first]


def block(test: str, err: BaseException) -> list[str]:
    """One failing test as a short block of lines: headline (the pitfall) first, then the test's name and details,
    each wrapped at WIDTH."""
    headline, details = describe(err)
    shown = details[:DETAIL_LINES] + (["…"] if len(details) > DETAIL_LINES else [])
    lines = wrapped(headline, f"{MARK} ", "  ") + [f"    ({test})"]
    return lines + [part for line in shown for part in wrapped(line, "    ", "      ")]


# ---------------------------------------------------------------- pytest: the kit's plugin


@dataclass
class _Short:
    """A failure report pytest prints as our block; ``reprcrash`` feeds the one-line summary."""

    lines: list[str]
    headline: str

    @property
    def reprcrash(self):
        return type("Crash", (), {"message": self.headline})()

    def toterminal(self, tw) -> None:
        for line in self.lines:
            tw.line(line)

    def __str__(self) -> str:
        return "\n".join(self.lines)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.excinfo is not None and report.when == "call":
        report.longrepr = _Short(block(item.name, call.excinfo.value), describe(call.excinfo.value)[0])


# ---------------------------------------------------------------- the notebook: %%check


class ChecksFailed(Exception):
    """A test cell's failures; IPython shows ``_render_traceback_`` instead of a traceback."""

    def __init__(self, blocks: list[list[str]]):
        super().__init__(f"{len(blocks)} check(s) failed")
        self.blocks = blocks

    def _render_traceback_(self) -> list[str]:
        shown = []
        for b in self.blocks:  # the headline's lines (the pitfall) in red: those before the test's name
            named = next((i for i, line in enumerate(b) if line.startswith("    (")), 1)
            shown += [f"\x1b[31m{line}\x1b[0m" for line in b[:named]] + b[named:]
        return shown


class _Collector:
    """pytest plugin: the outcome of every test the cell defined, silently."""

    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failed: list[list[str]] = []

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.when == "call" and report.passed:
            self.passed.append(item.name)
        elif report.failed:
            err = call.excinfo.value if call.excinfo is not None else AssertionError(str(report.longrepr))
            self.failed.append(block(item.name, err))


def check(line: str, cell: str) -> None:
    """``%%check``: define the cell's tests in the notebook, run them, report in plain words."""
    import ipytest
    from IPython import get_ipython

    ipytest.clean()
    if not get_ipython().run_cell(cell).success:
        return  # the cell itself failed: IPython has shown why
    collector = _Collector()
    # unraisableexception runs gc.collect() twice at every end of session: ~0.55 s a cell with torch loaded
    ipytest.run("-p", "no:terminal", "-p", "no:cacheprovider", "-p", "no:unraisableexception", plugins=[collector],
                raise_on_error=False)
    if collector.failed:
        raise ChecksFailed(collector.failed)
    print(f"passed: {', '.join(collector.passed)}" if collector.passed else "no checks in this cell")


def load_ipython_extension(ipython) -> None:
    """``%load_ext g2c.checks`` registers ``%%check``."""
    ipython.register_magic_function(check, magic_kind="cell", magic_name="check")
