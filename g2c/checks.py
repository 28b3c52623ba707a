"""How a failing contract test reads: the pitfall it caught, in plain words, first.

One home for the wording, used in three places so they say the same thing:

- the kit's ``pytest`` (its ``conftest.py`` loads this module as a plugin): each failure is a
  short block, and the summary line ``FAILED test_x - <headline>`` carries the headline;
- the notebook's test cells (``%load_ext g2c.checks``, then ``%%check tests/test_x.py`` over the names of the
  contract tests the cell runs, on the notebook's own objects; or a bare ``%%check`` over a cell's own asserts):
  one short block per failing test, no pytest report and no copy of the tests' source;
- nbgrader's Validate, which lists a failing cell's error output: that output is the same blocks.

A test cell that fails raises ``ChecksFailed``; its cells carry the ``raises-exception`` tag, so
Jupyter's Run All goes on to the next cell. Grading never reads any of this: ``g2c autograde``
decides points outside the student's kernel.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import textwrap
import traceback
import types
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

DETAIL_LINES = 4  # lines of detail kept under a headline: the message must stay the first thing read
MARK = "✗"
WIDTH = 100  # no line of a block is wider: a notebook's output and Validate's dialog cut long lines on the right
# The contract files import the implementation under test from the module this variable names (the kit's
# conftest.py: the saved notebook's answer cells; a check cell: the kernel's own objects, as NOTEBOOK_MODULE).
IMPLEMENTATION = "G2C_TRAINING_MODULE"
NOTEBOOK_MODULE = "g2c_notebook_objects"
OWN = "this cell's checks"  # what a bare %%check cell's block names in place of a test
OWN_FILE = "<check cell>"  # the file name its asserts run under
# pytest's options for a check cell: silent (the blocks are the report) and no cache written. unraisableexception
# runs gc.collect() twice at every end of session: ~0.55 s a cell with torch loaded.
QUIET = ("-p", "no:terminal", "-p", "no:cacheprovider", "-p", "no:unraisableexception")


def unset(name: str) -> str:
    """The headline of a check that reads an answer whose cell has not run yet."""
    return f"not written yet: {name} is not defined (write its cell and run it)"


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


def _in_a_check(err: BaseException) -> bool:
    """Whether ``err`` was raised by a check's own code (a test function, or a bare check cell), not by an answer."""
    frames = _frames(err.__traceback__)
    return bool(frames) and (frames[-1].filename == OWN_FILE or frames[-1].name.startswith("test_"))


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
    if isinstance(err, NameError) and err.name and _in_a_check(err):
        # the check itself reads an answer such as p1 whose cell has not run yet (a typo inside an answer is not this)
        return unset(err.name), []
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
    """pytest plugin: the outcome of every test the cell runs, silently."""

    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failed: list[list[str]] = []
        self.ran: set[str] = set()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        self.ran.add(item.name)
        if report.when == "call" and report.passed:
            self.passed.append(item.name)
        elif report.failed:
            err = call.excinfo.value if call.excinfo is not None else AssertionError(str(report.longrepr))
            self.failed.append(block(item.name, err))

    def pytest_collectreport(self, report) -> None:
        """A contract file that cannot be imported (edited by hand, say) fails the cell with pytest's last word on it."""
        if report.failed:
            said = [line.removeprefix("E").strip() for line in str(report.longrepr).splitlines() if line.startswith("E ")]
            reason = said[-1] if said else str(report.longrepr).strip().splitlines()[-1]
            self.failed.append(wrapped(f"{report.nodeid} could not be loaded: {reason}", f"{MARK} ", "  "))


class _NotebookObjects(types.ModuleType):
    """The kernel's namespace as the module a contract file imports, so that its tests use the notebook's live
    objects (the AdamW of the cell run last). A name whose cell has not run yet fails the tests that use it, in
    words, where a missing attribute would have stopped the whole file's collection."""

    def __init__(self, namespace: dict) -> None:
        super().__init__(NOTEBOOK_MODULE, "the notebook's objects, as its check cells test them")
        self._namespace = namespace

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "_namespace":
            raise AttributeError(name)
        if name in self._namespace:
            return self._namespace[name]

        def not_run(*args, **kwargs):
            raise NotImplementedError(unset(name))

        return type(name, (), {"__init__": not_run})  # called or instantiated, it fails the same way


def named_tests(cell: str) -> list[str]:
    """The test names a ``%%check FILE`` cell lists, one a line (comments and blank lines aside)."""
    return [line.strip() for line in cell.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def run_contract(path: Path, tests: list[str], namespace: dict, collector: _Collector) -> None:
    """Run the named tests of the contract file ``path`` on the objects of ``namespace``.

    The file is imported afresh each time (the student may have rerun an answer cell since), and nothing of it
    stays in ``sys.modules`` or the environment afterwards."""
    if not path.is_file():
        collector.failed.append(wrapped(
            f"the checks' file {path} is not beside this notebook: open the notebook in its kit folder "
            "(g2c notebook does), where tests/ came with it", f"{MARK} ", "  "))
        return
    folder = str(path.resolve().parents[1])
    before, was = set(sys.modules), os.environ.get(IMPLEMENTATION)
    sys.modules[NOTEBOOK_MODULE] = _NotebookObjects(namespace)
    os.environ[IMPLEMENTATION] = NOTEBOOK_MODULE
    # not the kit's conftest.py (it loads the saved notebook's cells), any configuration found above the kit, nor the
    # plugins installed beside Jupyter (finding them cost a third of a cell's 75 ms)
    isolated = ["--noconftest", "-c", os.devnull, "--rootdir", folder, "--disable-plugin-autoload"]
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # pytest's usage errors ("not found: ..."): said below, in words
            pytest.main([*QUIET, *isolated, *(f"{path}::{t}" for t in tests)], plugins=[collector])
    finally:
        if was is None:
            os.environ.pop(IMPLEMENTATION, None)
        else:
            os.environ[IMPLEMENTATION] = was
        for name in set(sys.modules) - before:
            if name == NOTEBOOK_MODULE or str(getattr(sys.modules[name], "__file__", None) or "").startswith(folder + os.sep):
                del sys.modules[name]
    if not collector.failed:
        for test in tests:
            if test not in collector.ran:
                collector.failed.append(wrapped(f"{test} is not a test of {path}", f"{MARK} ", "  "))


def run_own(cell: str, namespace: dict, collector: _Collector) -> None:
    """Run a bare ``%%check`` cell's asserts on a copy of the notebook's namespace (they leave no name behind)."""
    try:
        exec(compile(cell, OWN_FILE, "exec"), {**namespace})
    except Exception as err:
        collector.failed.append(block(OWN, err))
    else:
        collector.passed.append(OWN)


def check(line: str, cell: str) -> None:
    """``%%check tests/test_x.py`` then test names, one a line: run those tests of the kit's contract file on the
    notebook's objects (their source lives there once). A bare ``%%check``: run the cell's own asserts. Either way,
    report in plain words: a block per failing test, its pitfall first."""
    from IPython import get_ipython

    collector = _Collector()
    if line.strip():
        run_contract(Path(line.strip()), named_tests(cell), get_ipython().user_ns, collector)
    else:
        run_own(cell, get_ipython().user_ns, collector)
    if collector.failed:
        raise ChecksFailed(collector.failed)
    print(f"passed: {', '.join(collector.passed)}" if collector.passed else "no checks in this cell")


def load_ipython_extension(ipython) -> None:
    """``%load_ext g2c.checks`` registers ``%%check``."""
    ipython.register_magic_function(check, magic_kind="cell", magic_name="check")
