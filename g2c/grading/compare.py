"""The comparator: decides every point from the probe's record, outside the sandbox.

It never imports or runs student code. The record is parsed as data only (strict JSON, capped,
anything malformed counts as missing); the expected data is made here, by running the
assignment's own scenarios (its ``scenarios.py``) on the reference with the same seed, and on
the mutants of its pitfall catalogue (``g2c.grading.pitfalls``) to name a mistake and to charge
it only to the cells it belongs to. Everything about the assignment comes from its spec.

A scenario passes when the student's data equals the reference's (within its tolerance), or
equals a mutant's (one pitfall, or two of the same answer) none of whose pitfalls is charged to
it: one mistake costs its own cell and the catch-all trajectory cells, which pass only on the
reference. A named mistake is said in the catalogue's words (every pitfall that fits the data, when
several do); a difference no pitfall names shows where, the expected and the student's values, the
inputs and lines that reproduce them: the inputs come from a seed drawn from the answers' code
(``g2c.grading.seeding``), so showing them helps the student and never fits another draw.

Wiring: ``checks = decide(spec, parse_record(raw_bytes_from_the_probe, spec.scenario_names), seed,
{grade_id: source})`` with the seed the probe ran with; ``checks[scenario].passed`` gives the
points of the grade cell mapped to that scenario, ``.message`` its feedback. Expected data is
cached per (assignment, seed, scenario): grading a batch with one seed computes the reference once.
"""

from __future__ import annotations

import array
import base64
import binascii
import fnmatch
import functools
import json
import math
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from g2c.grading import cellcheck
from g2c.grading.assignment import Assignment
from g2c.grading.notebook_build import preamble
from g2c.grading.pitfalls import catalogue
from g2c.grading.sandbox import probe

# ---------------------------------------------------------------- the record, as data


class _Missing:
    """Where the record has nothing usable: absent, malformed or too deep."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()
MAX_DEPTH = 12
MAX_ITEMS = 4096
MAX_ELEMENTS = 2**20
MAX_STRING = 1000
MAX_RECORD = 2**20  # bytes of the probe's output read (an honest 03b-training record: ~40 kB; parsing 8 MB cost ~7 s)


@dataclass(frozen=True)
class Array:
    """A decoded tensor: its original dtype, shape and values (float64)."""

    dtype: str
    shape: tuple[int, ...]
    values: tuple[float, ...]


def _decode_tensor(obj: dict) -> Array | _Missing:
    """{dtype, shape, b64} -> Array, or MISSING when anything about it is off."""
    dtype, shape, b64 = obj.get("dtype"), obj.get("shape"), obj.get("b64")
    if set(obj) != {"dtype", "shape", "b64"} or not isinstance(dtype, str) or len(dtype) > 40 or not isinstance(b64, str):
        return MISSING
    if not isinstance(shape, list) or len(shape) > 8 or not all(type(n) is int and 0 <= n <= MAX_ELEMENTS for n in shape):
        return MISSING
    count = math.prod(shape)
    if count > MAX_ELEMENTS or len(b64) != 4 * math.ceil(8 * count / 3):
        return MISSING
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return MISSING
    if len(raw) != 8 * count:
        return MISSING
    values = array.array("d")
    values.frombytes(raw)
    if sys.byteorder == "big":
        values.byteswap()  # the record is little-endian
    return Array(dtype, tuple(shape), tuple(values))


def clean(value: Any, depth: int = 0) -> Any:
    """JSON from the sandbox -> plain data the comparator trusts the *shape* of (never its truth)."""
    if depth > MAX_DEPTH:
        return MISSING
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value) if abs(value) < 2**1000 else MISSING
    if isinstance(value, float):
        return value if math.isfinite(value) else MISSING
    if isinstance(value, str):
        return value[:MAX_STRING]
    if isinstance(value, list):
        return [clean(v, depth + 1) for v in value[:MAX_ITEMS]]
    if isinstance(value, dict):
        if "b64" in value or ("dtype" in value and "shape" in value):
            return _decode_tensor(value)
        return {str(k)[:200]: clean(v, depth + 1) for k, v in list(value.items())[:MAX_ITEMS]}
    return MISSING


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _load(line: bytes) -> Any:
    try:
        return json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError, UnicodeDecodeError, MemoryError):
        return None


def parse_record(raw: bytes, scenarios: Collection[str], limit: int = MAX_RECORD) -> dict:
    """The probe's output -> {"scenarios": {name: data}, "cells": {grade_id: error}, "done": bool}.

    Reads at most ``limit`` bytes (a cut last line is dropped), ignores every line that is not
    one of the probe's three kinds or names a scenario not in ``scenarios``, keeps the first line
    of each scenario, and never raises.
    """
    out: dict[str, Any] = {"scenarios": {}, "cells": {}, "done": False}
    try:
        data = bytes(raw[:limit]) if isinstance(raw, (bytes, bytearray, memoryview)) else b""
        lines = data.split(b"\n")
        if len(raw) > limit:
            lines = lines[:-1]
        for line in lines:
            try:
                _take(out, _load(line), scenarios)
            except Exception:  # a line that defeats the cleaning is ignored like any bad line
                continue
    except Exception:  # never raise: what was read so far stands
        pass
    return out


def _take(out: dict, obj: Any, scenarios: Collection[str]) -> None:
    """File one parsed line into ``out`` if it is a scenario, a cell error or the end mark."""
    if not isinstance(obj, dict):
        return
    if obj == {"done": True}:
        out["done"] = True
    elif set(obj) == {"scenario", "data"} and isinstance(obj["scenario"], str) and obj["scenario"] in scenarios:
        out["scenarios"].setdefault(obj["scenario"], clean(obj["data"]))
    elif set(obj) == {"cell", "error"} and isinstance(obj["cell"], str) and _is_error(clean(obj["error"])):
        out["cells"].setdefault(obj["cell"][:200], clean(obj["error"]))


def _is_error(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"error", "message"} and all(isinstance(v, str) for v in value.values())


# ---------------------------------------------------------------- comparing two data


@dataclass(frozen=True)
class Diff:
    """The first place where the student's data differs from the expected data, in words."""

    path: tuple[str, ...]
    what: str
    error: dict | None = None

    def words(self) -> str:
        where = ", ".join(self.path)
        return f"{where}: {self.what}" if where else self.what


INPUTS = "inputs"  # a scenario's inputs in words (and lines that reproduce them): read for messages, never compared
Tolerance = Callable[[tuple[str, ...]], "tuple[float, float] | None"]  # a value's path -> (rtol, atol), None: exact


def tolerance(spec: Assignment, scenario: str) -> Tolerance:
    """The scenario's rule: the spec's (rtol, atol) for it, or None (bit for bit) where an ``exact``
    pattern matches the value's path ("case 1, gradient 2")."""
    tol = spec.tolerances.get(scenario, spec.tolerance)
    patterns = spec.exact.get(scenario, ())
    return lambda path: None if any(fnmatch.fnmatchcase(", ".join(path), p) for p in patterns) else tol


def _number(value: Any) -> float | None:
    """A recorded number (or "nan"/"inf"/"-inf") as a float; None if it is not one."""
    if isinstance(value, float):
        return value
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    return None


def _close(got: float, want: float, tol: tuple[float, float] | None) -> bool:
    if tol is None:
        return got == want or (math.isnan(got) and math.isnan(want))
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    if math.isinf(want) or math.isinf(got):
        return got == want
    return abs(got - want) <= tol[1] + tol[0] * abs(want)


def _error(got: float, want: float) -> float:
    """One element's error: relative to the expected value, absolute where that is 0."""
    return abs(got - want) / abs(want) if want else abs(got - want)


def _how_far(got: list[float], want: list[float], rule: tuple[float, float] | None, shape: tuple[int, ...] = ()) -> str:
    """How the values differ, element by element: how many are off, and the worst by its own error
    (a max over max would read an element off by 100% among large ones as rounding)."""
    if any(math.isnan(g) for g in got):
        return "contains NaN"
    if any(math.isinf(g) for g in got):
        return "contains an infinity"
    off = [i for i, (g, w) in enumerate(zip(got, want)) if not _close(g, w, rule)] or list(range(len(want)))
    worst = max(off, key=lambda i: _error(got[i], want[i]))
    g, w = got[worst], want[worst]
    kind = "relative error" if w else "absolute error"
    values = f"expected {w:.10g}, got {g:.10g} ({kind} {_error(g, w):.1e})"
    if len(want) == 1 and not shape:
        return f"is off: {values}"
    index = tuple(int(i) for i in _unravel(worst, shape)) if shape else (worst,)
    return f"is off in {len(off)} of {len(want)} elements; the worst, element {list(index)}: {values}"


def _unravel(flat: int, shape: tuple[int, ...]) -> list[int]:
    out = []
    for n in reversed(shape):
        out.append(flat % n if n else 0)
        flat = flat // n if n else 0
    return out[::-1]


def differ(want: Any, got: Any, tol: Tolerance, path: tuple[str, ...] = ()) -> Diff | None:
    """None when ``got`` matches ``want`` (expected data) under the tolerance rule ``tol``, else the
    first difference. Walks the expected data, so only its keys (never the student's) are read."""
    if _is_error(want):
        return None if _is_error(got) and got["error"] == want["error"] else Diff(path, "does not raise as expected")
    if _is_error(got):
        return Diff(path, f"raised {got['error']}", got)
    if got is MISSING:
        return Diff(path, "missing: the grader received no data")
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return Diff(path, "is not what the check records")
        for key, value in want.items():
            if key == INPUTS:
                continue
            if key not in got:
                return Diff(path + (key,), "is missing")
            found = differ(value, got[key], tol, path + (key,))
            if found:
                return found
        extra = [key for key in got if key not in want and key != INPUTS]
        return Diff(path + (extra[0],), "is not asked for") if extra else None
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return Diff(path, "is not what the check records")
        for i, (w, g) in enumerate(zip(want, got)):
            found = differ(w, g, tol, path + (f"item {i + 1}",))
            if found:
                return found
        return None
    if isinstance(want, Array):
        return _differ_array(want, got, tol, path)
    if want is None:
        return None if got is None else Diff(path, "is set: it should stay None")
    if isinstance(want, bool):
        return None if got is want else Diff(path, "is not as it should be" if isinstance(got, bool) else "is not True or False")
    if isinstance(want, float):
        return _differ_float(want, got, tol, path)
    if isinstance(want, str):
        return None if got == want else Diff(path, "is not the right answer")
    return Diff(path, "is not what the check records")


def _differ_array(want: Array, got: Any, tol: Tolerance, path: tuple[str, ...]) -> Diff | None:
    if got is None:
        return Diff(path, "is None")
    if not isinstance(got, Array):
        return Diff(path, "is not a tensor")
    if got.dtype != want.dtype:
        return Diff(path, f"has dtype {got.dtype}, not {want.dtype}")
    if got.shape != want.shape:
        return Diff(path, f"has shape {list(got.shape)}, not {list(want.shape)}")
    rule = tol(path)
    if all(_close(g, w, rule) for g, w in zip(got.values, want.values)):
        return None
    if rule is None and all(math.isfinite(g) for g in got.values):
        return Diff(path, "changed")
    return Diff(path, _how_far(list(got.values), list(want.values), rule, want.shape))


def _differ_float(want: float, got: Any, tol: Tolerance, path: tuple[str, ...]) -> Diff | None:
    value = _number(got)
    if value is None:
        if isinstance(got, str) and got.startswith("<"):
            return Diff(path, f"is a {got.strip('<>')}, not a number")
        return Diff(path, "is not a number")
    if _close(value, want, tol(path)):
        return None
    return Diff(path, _how_far([value], [want], tol(path)))


# ---------------------------------------------------------------- expected data, cached per seed


@functools.cache
def scenarios(spec: Assignment) -> dict[str, Callable[[dict, int], Any]]:
    """The assignment's scenario functions, from the same text the probe runs."""
    return probe.load_scenarios(spec.scenarios.read_text())


@functools.lru_cache(maxsize=256)
def reference_data(spec: Assignment, seed: int, scenario: str) -> Any:
    """The scenario's data on the reference, cleaned like the student's (the probe's encoders already
    made it plain JSON data: a round trip through json.dumps/loads would change nothing)."""
    return mutant_data(spec, seed, scenario, ())


@functools.lru_cache(maxsize=8192)
def mutant_data(spec: Assignment, seed: int, scenario: str, names: tuple[str, ...]) -> Any:
    """The scenario's data on the reference with the named pitfalls (none: the reference itself)."""
    namespace = catalogue(spec).namespace(spec.answer_of(scenario), names)
    return clean(probe.record(scenarios(spec)[scenario], namespace, seed))


# ---------------------------------------------------------------- deciding


@dataclass
class Check:
    passed: bool
    message: str


PASS = Check(True, "")
SILENT_ERRORS = {"NotImplementedError", "Timeout", "NameError"}  # no mutant raises these


@dataclass
class _Case:
    """What deciding one submission needs at hand."""

    spec: Assignment
    seed: int
    record: dict
    evidence: dict[str, set]  # answer -> the mutants the student's data matched so far
    found: dict | None = None  # scenario -> the student's data (all of it, for ruling explanations out)

    def consistent(self, names: tuple[str, ...], scenario: str) -> bool:
        """Whether the mutant ``names`` fits the student's data on every other isolating scenario of
        its answer: a pitfall the student's other data rules out explains nothing here."""
        answer = self.spec.answer_of(scenario)
        others = [s for s in self.spec.scenario_names if s != scenario and self.spec.answer_of(s) == answer
                  and s not in self.spec.catch_all(answer) and (self.found or {}).get(s, MISSING) is not MISSING]
        return all(differ(mutant_data(self.spec, self.seed, s, names), self.found[s], tolerance(self.spec, s)) is None
                   for s in others)

    def charged(self, names: tuple[str, ...], scenario: str) -> bool:
        return any(scenario in catalogue(self.spec).by_name[n].charged_to for n in names)

    def messages(self, names: tuple[str, ...], scenario: str | None = None) -> str:
        """The pitfalls' messages, those charged to ``scenario`` first."""
        chosen = sorted((catalogue(self.spec).by_name[n] for n in names), key=lambda p: scenario not in p.charged_to)
        return "; and ".join(p.message for p in chosen)

    def matches(self, scenario: str, got: Any, candidates: list[tuple[str, ...]], first: bool = False) -> list[tuple[str, ...]]:
        """The candidates whose data equals the student's (only the first one found if ``first``)."""
        found, tol = [], tolerance(self.spec, scenario)
        for names in candidates:
            if differ(mutant_data(self.spec, self.seed, scenario, names), got, tol) is None:
                found.append(names)
                if first:
                    break
        return found

    def error_words(self, diff: Diff, scenario: str) -> str:
        """What a raised exception means for the student, with the answer cell's own error if any."""
        err = diff.error or {}
        kind = err.get("error", "")
        if kind == "NotImplementedError":
            return "not written yet: still raises NotImplementedError"
        if kind == "Timeout":
            return "did not finish within the time limit"
        answer = self.spec.answers[self.spec.answer_of(scenario)]
        cell_error = self.record.get("cells", {}).get(answer.grade_id)
        if kind == "NameError" and _is_error(cell_error):
            if cell_error["error"] == "NotImplementedError":
                return "not written yet: the answer cell still raises NotImplementedError"
            return (f"your answer cell raised {cell_error['error']}: {' '.join(cell_error['message'].split())[:300]}, "
                    f"so {answer.name} was never defined")
        where = ", ".join(diff.path)
        message = " ".join(err.get("message", "").split())[:300]
        return f"raised {kind}: {message}" + (f" ({where})" if where else "")

    def unexplained(self, diff: Diff, scenario: str) -> Check:
        """A difference no pitfall explains: where it is, the values, the cell's hint, then the inputs
        that showed it and lines that reproduce them (the reference's record of them, never the student's)."""
        if diff.error:
            return Check(False, self.error_words(diff, scenario))
        hint = self.spec.hint(scenario)
        answer = self.spec.answers[self.spec.answer_of(scenario)]
        if not answer.source and "expected" in diff.words():  # a value answer's inputs are the notebook's own:
            where = ", ".join(diff.path) or answer.name  # its expected number is the answer itself, never shown
            return Check(False, f"{where}: is not the value the question's inputs give" + (f"; {hint}" if hint else ""))
        if not answer.source:
            return Check(False, diff.words() + (f"; {hint}" if hint else ""))
        return Check(False, diff.words() + (f"; {hint}" if hint else "") + self.inputs_words(scenario, diff.path))

    def inputs_words(self, scenario: str, path: tuple[str, ...]) -> str:
        """The inputs of the case at ``path`` (its first step), as the scenario described them."""
        reference = reference_data(self.spec, self.seed, scenario)
        described = reference.get(INPUTS) if isinstance(reference, dict) else None
        case = described.get(path[0]) if isinstance(described, dict) and path else None
        if not isinstance(case, dict):
            return ""
        step = next((part.split()[-1] for part in path if part.startswith("step ")), "")
        lines = [f"  {key}: {value}" for key, value in case.items() if key != "try" and isinstance(value, str)]
        text = f"\nInputs of this case ({path[0]}):\n" + "\n".join(lines)
        if isinstance(case.get("try"), str):
            code = case["try"].replace("{step}", step or "0")
            lines = "\n".join(f"    {line}" for line in code.splitlines())
            text += "\nTo see it yourself, run in a new cell below your answer:\n" + lines
        return text

    def named(self, matched: list[tuple[str, ...]], scenario: str) -> Check:
        """The pitfalls behind data several of them produce alike: each said, as alternatives."""
        distinct = list(dict.fromkeys(self.messages(names, scenario) for names in matched))
        if len(distinct) == 1:
            return Check(False, distinct[0])
        return Check(False, "these numbers fit more than one mistake: " + "; or ".join(distinct))


def _decide_one(case: _Case, scenario: str, got: Any) -> Check:
    """One scenario's verdict (``case.evidence`` collects the mutants the student's data matched)."""
    spec, cat = case.spec, catalogue(case.spec)
    diff = differ(reference_data(spec, case.seed, scenario), got, tolerance(spec, scenario))
    if diff is None:
        return PASS
    if diff.error and diff.error.get("error") in SILENT_ERRORS:
        return Check(False, case.error_words(diff, scenario))
    answer = spec.answer_of(scenario)
    if scenario in spec.catch_all(answer):
        return _decide_catch_all(case, scenario, got, diff)
    matched = case.matches(scenario, got, [(p.name,) for p in cat.of(answer)])
    if not matched:  # two mistakes (two that leave this scenario alone each may still change it together)
        pairs = [(a.name, b.name) for a, b in cat.pairs(answer)]
        free_pairs = [c for c in pairs if not case.charged(c, scenario)]
        matched = case.matches(scenario, got, free_pairs, first=True)
        matched = matched or case.matches(scenario, got, [c for c in pairs if case.charged(c, scenario)], first=True)
    if any(not case.charged(m, scenario) for m in matched) and any(case.charged(m, scenario) for m in matched):
        # the same data from a mistake of this cell and from one of another: the student's other data decides
        matched = [m for m in matched if case.consistent(m, scenario)] or matched
    case.evidence[answer].update(matched)
    if any(not case.charged(m, scenario) for m in matched):
        return PASS
    if matched:
        return case.named(matched, scenario)
    return case.unexplained(diff, scenario)


def _decide_catch_all(case: _Case, scenario: str, got: Any, diff: Diff) -> Check:
    """Fails (it passes only on the reference); names the pitfall if one the student showed elsewhere,
    one charged to no other cell, or a pair of those, explains it."""
    answer, cat = case.spec.answer_of(scenario), catalogue(case.spec)
    evidence = case.evidence[answer]
    seen = sorted({n for names in evidence for n in names})
    extra = [p.name for p in cat.of(answer) if set(p.charged_to) <= {scenario}]
    singles = [(n,) for n in dict.fromkeys(seen + extra)]
    pairs = [c for c in evidence if len(c) == 2]
    pairs += [(a.name, b.name) for a, b in cat.pairs(answer) if a.name in seen and b.name in seen]
    for candidates in (singles, list(dict.fromkeys(pairs))):
        matched = case.matches(scenario, got, candidates)
        if matched:
            return case.named(matched, scenario)
    return case.unexplained(diff, scenario)


def decide(spec: Assignment, record: dict, seed: int, sources: dict[str, str]) -> dict[str, Check]:
    """One Check per scenario of the assignment from a parsed record (see parse_record).

    ``sources`` maps answer cells' grade ids to their source: a cell that reaches for what the
    grader cannot check (see :func:`delegation`) fails every scenario with that sentence.
    """
    record = record if isinstance(record, dict) else {}
    found = record.get("scenarios") if isinstance(record.get("scenarios"), dict) else {}
    record = {"cells": record.get("cells") if isinstance(record.get("cells"), dict) else {}, "done": record.get("done") is True}
    sources = sources if isinstance(sources, dict) else {}
    case = _Case(spec, seed, record, {answer: set() for answer in spec.answers}, found)
    refused = _refusal(spec, sources)
    checks: dict[str, Check] = {}
    # isolating scenarios first: the catch-alls name the pitfalls the student showed there
    order = sorted(spec.scenario_names, key=lambda s: s in spec.catch_all(spec.answer_of(s)))
    for scenario in order:
        got = found.get(scenario, MISSING)
        if refused:
            checks[scenario] = Check(False, refused)
        elif got is MISSING:
            checks[scenario] = Check(False, "missing: the grader received no data" + ("" if record.get("done") else
                                     " (the run stopped before this check)"))
        else:
            checks[scenario] = _decide_one(case, scenario, got)
    return {scenario: checks[scenario] for scenario in spec.scenario_names}


def _refusal(spec: Assignment, sources: dict[str, str]) -> str | None:
    """The sentence of the first probed cell that reaches for what the grader cannot check. It costs
    every answer: the cells share one namespace and one torch, so a cell that may patch either may
    change what any other answer computes. Each is read after the cells the probe runs before it."""
    earlier: list[str] = []
    for answer in spec.answers.values():  # in the probe's order
        source = sources.get(answer.grade_id)
        if not isinstance(source, str):
            continue
        if sentence := delegation(spec, answer.key, source, earlier):
            return sentence
        earlier.append(source)
    return None


# ---------------------------------------------------------------- what the probed cells may use


def delegation(spec: Assignment, answer: str, source: str, earlier: Sequence[str] = ()) -> str | None:
    """One sentence when a probed cell reaches for torch's own optimizer, clipping or scheduler, or for
    anything beyond tensor operations, math and plain Python (``g2c.grading.cellcheck``); None when
    it is clean or does not parse (the probe reports that cell's SyntaxError). The cell is read in the
    namespace the probe runs it in: the preamble's modules and those the ``earlier`` probed cells bind."""
    modules = cellcheck.modules_bound([preamble(spec), *map(probe.ipython_free, earlier)])
    found = cellcheck.refused(probe.ipython_free(source), modules)
    if found is None:
        return None
    a = spec.answers[answer]
    subject, work = (f"your {a.name}" if a.source else f"the cell that sets {a.name}"), a.work
    if found.startswith("torch.") and any(part in cellcheck.TORCH_PARTS for part in found.split(".")):
        return f"{subject} calls {found}: the exercise is to write {work} yourself"
    return (f"{subject} uses {found}, which the grader cannot check: answer cells may use tensor operations, "
            f"math and plain Python only (no other imports, no code built at run time); write {work} yourself")
