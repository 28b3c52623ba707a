"""The probe harness: runs in the sandbox, in the student's process, and records plain data only.

Nothing here decides a point. An assignment's scenarios (its ``scenarios.py``, sent as text with
the payload) build inputs from the grading run's seed, call the student's objects on them and
write down what came out (numbers, shapes, dtypes, booleans, exception names), with the encoders
and input makers below; ``g2c.grading.compare`` decides outside, by running the same scenarios
on the reference. So neither holds an expected value, and this module imports nothing but the
standard library, torch and its sibling ``walls`` (the run-time walls it arms before any student
code): the sandbox's ``g2c`` is a kit without solutions and without this package's grader side,
and the zygote imports this module before forking.

A record is one JSON line per scenario on the descriptor that was stdout before the student's
code ran, written as soon as the scenario is done: an endless loop loses only what follows.
"""

from __future__ import annotations

import array
import base64
import json
import math
import os
import random
import signal
import sys
import types
import zlib
from collections.abc import Callable
from typing import Any

import torch

from g2c.grading.sandbox.walls import arm as arm_walls

SCENARIO_SECONDS = 5.0  # per scenario; the 10**9-step schedule must not need a loop
MAX_LINE = 2**19  # one scenario's JSON line; more is recorded as an error (03b-training's largest: ~10 kB)
MAX_MESSAGE = 300  # characters of an exception's message recorded

# ---------------------------------------------------------------- plain data


class _Timeout(BaseException):
    """Raised by SIGALRM; a BaseException so a student's ``except Exception`` does not swallow it."""


def encode_tensor(t: torch.Tensor) -> dict[str, Any]:
    """A tensor as {dtype, shape, b64 of float64 little-endian bytes}: exact for every float dtype."""
    values = array.array("d", t.detach().to(device="cpu", dtype=torch.float64).reshape(-1).tolist())
    if sys.byteorder == "big":
        values.byteswap()
    return {"dtype": str(t.dtype), "shape": list(t.shape), "b64": base64.b64encode(values.tobytes()).decode("ascii")}


def encode_number(x: float) -> float | str:
    """A float JSON can carry: NaN and infinities become the strings "nan", "inf", "-inf"."""
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def encode_error(exc: BaseException) -> dict[str, str]:
    """An exception as its type name and the first characters of its message."""
    if isinstance(exc, _Timeout):
        return {"error": "Timeout", "message": "did not finish within the time limit"}
    try:
        message = str(exc)
    except BaseException:  # a student's exception whose __str__ raises
        message = ""
    return {"error": type(exc).__name__[:100], "message": message[:MAX_MESSAGE]}


def encode_returned(value: Any) -> float | str:
    """A returned norm as a number (a 0-dim or one-element tensor, or a float), else its type in <>."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return encode_number(value.detach().to("cpu", torch.float64).item())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return encode_number(value)
    return f"<{type(value).__name__[:100]}>"


def grad_or_none(p: torch.Tensor) -> dict[str, Any] | None:
    """The gradient of ``p`` encoded, or None when it has none."""
    return None if p.grad is None else encode_tensor(p.grad)


def attempt(fn: Callable[[], Any]) -> Any:
    """``fn()``, or the exception it raised as data (a timeout is not caught here: it ends the scenario)."""
    try:
        return fn()
    except _Timeout:
        raise
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from student code are data too
        return encode_error(exc)


def student(namespace: dict, name: str) -> Any:
    """The student's object ``name``; NameError (recorded) when their cells never defined it."""
    if name not in namespace:
        raise NameError(f"name {name!r} is not defined")
    return namespace[name]


# ---------------------------------------------------------------- inputs from the seed


def rngs(name: str, seed: int) -> tuple[random.Random, random.Random]:
    """Two generators seeded from (scenario, seed): every scenario draws its own inputs."""
    key = zlib.crc32(f"{name}:{int(seed)}".encode())
    return random.Random(key), random.Random(key ^ 0x5EED)


def log_uniform(rng: random.Random, low: float, high: float) -> float:
    return 10 ** rng.uniform(math.log10(low), math.log10(high))


def random_shapes(rng: random.Random, count: int) -> list[tuple[int, ...]]:
    """Mixed shapes: a matrix, a vector, a 3-d block, a single element, then vectors."""
    shapes = [(rng.randint(2, 5), rng.randint(2, 4)), (rng.randint(2, 6),), (2, rng.randint(1, 3), 2), (1,)]
    return (shapes + [(rng.randint(2, 6),) for _ in range(count)])[:count]


def noise(shape: tuple[int, ...], gen: random.Random, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Random values in [-2, 2) from Python's generator with IEEE arithmetic only: bit-identical on
    every machine, where torch's vectorised sampling or libm's log and cos may differ by an ulp
    between CPUs, and the checks on untouched values are exact. (The distribution does not matter.)"""
    values = [4.0 * gen.random() - 2.0 for _ in range(math.prod(shape))]
    return torch.tensor(values, dtype=torch.float64).reshape(shape).to(dtype)


def leaf(shape: tuple[int, ...], gen: random.Random, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return noise(shape, gen, dtype).requires_grad_()


def gradient(shape: tuple[int, ...], rng: random.Random, gen: random.Random, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A random gradient at a random scale between 1e-3 and 1e2: AdamW must not care."""
    return (10.0 ** rng.randint(-3, 2)) * noise(shape, gen, dtype)


# ---------------------------------------------------------------- an assignment's scenarios


def load_scenarios(source: str) -> dict[str, Callable[[dict, int], Any]]:
    """The ``SCENARIOS`` (name -> function(student namespace, seed) -> plain data) of an assignment's
    scenarios module, given as its source: the same text runs here and in the grader."""
    module: dict[str, Any] = {"__name__": "g2c_scenarios"}
    exec(compile(source, "<scenarios>", "exec"), module)
    return dict(module["SCENARIOS"])


def record(scenario: Callable[[dict, int], Any], namespace: dict, seed: int) -> Any:
    """The data of one scenario, or its exception as data. Never raises but a timeout."""
    return attempt(lambda: scenario(namespace, seed))


# ---------------------------------------------------------------- running in the sandbox


_armed = [False]  # the alarm raises only while a bounded call runs


def _on_alarm(signum: int, frame: Any) -> None:
    if _armed[0]:
        raise _Timeout()


def _bounded(fn: Callable[[], Any], seconds: float | None) -> Any:
    """``fn()`` under a SIGALRM timer that keeps firing (every 50 ms) until cancelled (none when
    ``seconds`` is None), or its exception as data; the timer is disarmed and cancelled before returning."""
    try:
        try:
            if seconds is not None:
                _armed[0] = True
                signal.setitimer(signal.ITIMER_REAL, seconds, 0.05)
            return fn()
        finally:
            _armed[0] = False
            if seconds is not None:
                signal.setitimer(signal.ITIMER_REAL, 0)
    except BaseException as exc:  # the student's, or a timeout that hit the finally above
        return encode_error(exc)


def ipython_free(source: str) -> str:
    """The cell without IPython-only lines (``%magic``, ``!shell``): plain Python can exec it."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _write(fd: int, obj: dict) -> None:
    """One JSON line, whole; an unserialisable or oversized object becomes an error line instead."""
    try:
        line = json.dumps(obj, allow_nan=False, separators=(",", ":"))
        if len(line) > MAX_LINE:
            raise ValueError(f"{len(line)} characters of data")
    except BaseException as exc:
        key = "scenario" if "scenario" in obj else "cell"
        line = json.dumps({key: str(obj.get(key, "")), ("data" if key == "scenario" else "error"): encode_error(exc)})
    data = (line + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _compiled(grade_id: str, source: str) -> types.CodeType:
    return compile(ipython_free(source), f"<cell {grade_id}>", "exec")


def run(payload: dict) -> None:
    """Exec the notebook's setup and answer cells into one namespace, then record every scenario.

    ``payload``: {"seed": int, "scenario_source": the assignment's scenarios module, "setup": source,
    "cells": [[grade_id, source], ...], "scenarios": [names]},
    optionally "scenario_seconds" (default above) and "cell_seconds" (the grader's cell timeout;
    without it the cells are not timed here, only the sandbox's timeout bounds them).

    Every cell is compiled first, then the run-time walls are armed (``walls.arm``: torch's optimizers
    stubbed, an audit hook that lets only those cells' code be executed), then the cells run. Student
    code runs with fds 1 and 2 on /dev/null; the record goes to the fd that was stdout
    before, one JSON line per scenario as soon as it is done, then {"done": true}. Never raises.
    """
    saved_out = saved_err = -1
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        saved_out, saved_err = os.dup(1), os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
        try:
            previous = signal.signal(signal.SIGALRM, _on_alarm)
            timers = True
        except (ValueError, OSError):  # not the main thread: no time limits here, the sandbox has one
            previous, timers = None, False
        try:
            _run(payload, saved_out, timers)
        finally:
            if timers:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
    except BaseException:
        pass
    finally:
        for stream in (sys.stdout, sys.stderr):  # the student's buffered output goes to /dev/null, not the record
            try:
                stream.flush()
            except BaseException:
                pass
        for fd, target in ((saved_out, 1), (saved_err, 2)):
            try:
                if fd >= 0:
                    os.dup2(fd, target)
                    os.close(fd)
            except BaseException:
                pass


def _run(payload: dict, out: int, timers: bool) -> None:
    seed = int(payload.get("seed", 0))
    scenario_seconds = float(payload.get("scenario_seconds", SCENARIO_SECONDS)) if timers else None
    cell_seconds = float(payload["cell_seconds"]) if timers and "cell_seconds" in payload else None
    try:  # before any student code: the scenarios are the grader's (their text is dropped once compiled)
        scenarios = load_scenarios(str(payload.pop("scenario_source", "")))
    except BaseException as exc:
        _write(out, {"cell": "<scenarios>", "error": encode_error(exc)})
        scenarios = {}
    namespace: dict[str, Any] = {"__name__": "__main__"}
    cells = [("setup", payload.get("setup") or "")] + [cell for cell in payload.get("cells", [])
                                                         if isinstance(cell, (list, tuple)) and len(cell) == 2]
    code: dict[int, types.CodeType] = {}  # every cell compiled before any runs: the walls let only these be executed
    errors = [_bounded(lambda: code.__setitem__(i, _compiled(str(grade_id), str(source))), cell_seconds)
              for i, (grade_id, source) in enumerate(cells)]
    arm_walls(code.values())  # before any student code; a failure here ends the run with no data (fail closed)
    for i, (grade_id, _) in enumerate(cells):
        error = errors[i] if i not in code else _bounded(lambda: exec(code[i], namespace), cell_seconds)
        if error is not None:
            _write(out, {"cell": str(grade_id), "error": error})
    for name in payload.get("scenarios", list(scenarios)):
        if name in scenarios:
            data = _bounded(lambda: scenarios[name](namespace, seed), scenario_seconds)
            _write(out, {"scenario": name, "data": data})
    _write(out, {"done": True})
