"""Record, then compare: the probe's data and the comparator's verdicts tell right from wrong.

The "students" here are ours (the reference, its pitfall mutants, correct implementations written
differently, do-nothing and the untouched starter), so they run in this process; only one test
runs ``probe.run`` in a child process, to check the record's channel, cell errors and timeouts.
"""

from __future__ import annotations

import array
import ast
import base64
import json
import re
import subprocess
import sys

import pytest
import test_pitfalls as TP  # its correct-but-different implementations (ALT_REGIONS)
from conftest import CATALOGUE, ROOT, SPEC

import g2c.training
from g2c.grading import compare
from g2c.grading.notebook_build import answer_sources
from g2c.grading.regions import strip_solutions
from g2c.grading.sandbox import probe

CUT = [a for a in SPEC.answers.values() if a.source]  # adamw, clip, schedule: cut from g2c/training
SOURCES = {a.key: (ROOT / a.source).read_text() for a in CUT}
OBJECTS = {a.key: a.name for a in CUT}
SCENARIOS = compare.scenarios(SPEC)
SEED = 20261126
ALL = set(SPEC.scenario_names)
RIGHT_P1, KEY = CATALOGUE.build("p1", ()), CATALOGUE.build("diagnosis", ())


def obj(answer: str, text: str):
    """The answer object of a module source of ours, exec'd on its own."""
    namespace = {"__name__": f"student_{answer}"}
    exec(compile(text, f"<student {answer}>", "exec"), namespace)
    return namespace[OBJECTS[answer]]


def student(adamw: str | None = None, clip: str | None = None, schedule: str | None = None, **extra) -> dict:
    """A notebook namespace: the reference answers unless replaced, the right p1 and diagnosis."""
    texts = {"adamw": adamw, "clip": clip, "schedule": schedule}
    namespace = {OBJECTS[a]: obj(a, texts[a] or SOURCES[a]) for a in OBJECTS}
    namespace |= {"p1": RIGHT_P1, "diagnosis": dict(KEY)}
    return namespace | extra


def lines_of(namespace: dict, seed: int, cells: dict | None = None) -> bytes:
    """What probe.run writes for ``namespace``: one line per cell error and per scenario, then done."""
    out = [{"cell": gid, "error": err} for gid, err in (cells or {}).items()]
    out += [{"scenario": name, "data": probe.record(SCENARIOS[name], namespace, seed)} for name in SPEC.scenario_names]
    out.append({"done": True})
    return b"".join((json.dumps(o, allow_nan=False) + "\n").encode() for o in out)


def parse(raw, **kw) -> dict:
    return compare.parse_record(raw, ALL, **kw)


def decide(record, seed: int = SEED, sources: dict | None = None) -> dict:
    return compare.decide(SPEC, record, seed, sources or {})


def verdicts(namespace: dict, seed: int = SEED, sources: dict | None = None, cells: dict | None = None) -> dict:
    return decide(parse(lines_of(namespace, seed, cells)), seed, sources)


def differ(want, got, scenario: str):
    return compare.differ(want, got, compare.tolerance(SPEC, scenario))


def failed(checks: dict) -> set[str]:
    return {name for name, check in checks.items() if not check.passed}


# ---------------------------------------------------------------- right passes, wrong fails


def test_reference_passes_every_scenario_with_no_message():
    checks = verdicts(student())
    assert set(checks) == ALL
    assert failed(checks) == set()
    assert all(check.message == "" for check in checks.values())


def test_the_reference_rebuilt_from_its_source_is_the_package():
    # Otherwise a mutant could differ from the reference by more than its pitfall.
    package = {a.name: getattr(g2c.training, a.name) for a in CUT}
    for name in ALL - {"by_hand_p1", "diagnosis"}:
        data = compare.clean(probe.record(SCENARIOS[name], package, SEED))
        assert differ(compare.reference_data(SPEC, SEED, name), data, name) is None, name


@pytest.mark.parametrize("pitfall", [p.name for p in CATALOGUE.pitfalls])
def test_each_pitfall_fails_exactly_its_cells_and_is_named(pitfall):
    p = CATALOGUE.by_name[pitfall]
    seed = SEED + CATALOGUE.pitfalls.index(p) % 3  # three seeds across the catalogue
    checks = verdicts(student() | CATALOGUE.namespace(p.answer, (p.name,)), seed)
    assert failed(checks) == set(p.charged_to) | set(SPEC.catch_all(p.answer))
    for name in failed(checks):
        named = [q for q in CATALOGUE.of(p.answer) if q.message in checks[name].message]
        assert named, f"{pitfall}: the message of {name} names no pitfall: {checks[name].message}"
        # mutants with the same data on a scenario may share it (the torch clip wrapper is a fixed eps)
        assert any(differ(compare.mutant_data(SPEC, seed, name, (q.name,)), compare.mutant_data(SPEC, seed, name, (p.name,)),
                          name) is None for q in named)


def test_every_charged_scenario_exists_and_every_pitfall_costs_something():
    for p in CATALOGUE.pitfalls:
        assert set(p.charged_to) <= ALL, p.name
        assert p.answer in SPEC.answers
        assert p.charged_to or SPEC.catch_all(p.answer), f"{p.name} would cost nothing"


def test_two_pitfalls_of_one_answer_cost_only_their_own_cells():
    both = student() | CATALOGUE.namespace("adamw", ("no_bias_correction", "adam_l2"))
    checks = verdicts(both)
    assert failed(checks) == {"adamw_first_step", "adamw_decoupled_decay", *SPEC.catch_all("adamw")}
    assert CATALOGUE.by_name["adam_l2"].message in checks["adamw_decoupled_decay"].message
    for name in SPEC.catch_all("adamw"):
        assert CATALOGUE.by_name["no_bias_correction"].message in checks[name].message
        assert CATALOGUE.by_name["adam_l2"].message in checks[name].message
    # neither changes clip_none_and_eps' unclipped norm alone, together they do: still not that cell's fault
    both = student() | CATALOGUE.namespace("clip", ("clip_always_scales", "clip_returns_clipped_norm"))
    assert failed(verdicts(both)) == {"clip_small_untouched", "clip_matches"}


def test_different_correct_implementations_pass_everything():
    alternative = student(
        TP.with_region("adamw", TP.ALT_REGIONS["adamw"]),
        TP.with_region("clip", TP.ALT_REGIONS["clip"]),
        TP.with_region("schedule", TP.ALT_REGIONS["schedule"]),
    )
    for seed in (SEED, 1, 2):
        checks = verdicts(alternative, seed)
        assert failed(checks) == set(), {n: checks[n].message for n in failed(checks)}


def test_do_nothing_passes_nothing():
    nothing = student(
        TP.with_region("adamw", "        pass\n"),
        TP.with_region("clip", "    return torch.tensor(0.0)\n"),
        TP.with_region("schedule", "    return 0.0\n"),
        p1=0.0, diagnosis={},
    )
    assert failed(verdicts(nothing)) == ALL
    leaves_all = student(clip=TP.with_region("clip", "    return None\n"))
    assert {n for n in failed(verdicts(leaves_all)) if n.startswith("clip")} == {n for n in ALL if n.startswith("clip")}


def test_untouched_starter_passes_nothing_and_says_not_written_yet():
    starter = student(*(strip_solutions(SOURCES[a]) for a in ("adamw", "clip", "schedule")))
    del starter["p1"], starter["diagnosis"]
    cells = {cell: {"error": "NotImplementedError", "message": ""} for cell in ("adamw_by_hand_answer", "diagnosis_answer")}
    checks = verdicts(starter, cells=cells)
    assert failed(checks) == ALL
    assert all("not written yet" in check.message for check in checks.values()), {n: c.message for n, c in checks.items()}


def test_a_wrong_update_is_described_with_its_values_and_inputs():
    # issue 23: the inputs come from a seed drawn from the code, so showing them helps and fits no other draw
    wrong = student(SOURCES["adamw"].replace("value=-step_size", "value=-1.5 * step_size"))
    checks = verdicts(wrong)
    assert "adamw_first_step" in failed(checks) and "adamw_trajectory_float64" in failed(checks)
    message = checks["adamw_trajectory_float64"].message
    head = message.splitlines()[0]
    assert "setting" in head and "step" in head and "parameter" in head and "relative error" in head
    assert re.search(r"expected -?\d\.\d+.*, got -?\d\.\d+", head), head
    assert "settings: lr=" in message and "torch.optim.AdamW(" in message  # the inputs, and lines racing torch's


def test_a_wrong_value_answer_is_told_without_the_expected_number():
    """p1's inputs are the notebook's own, the same for everyone: its expected number would be the answer itself,
    read off a feedback page released before the deadline."""
    p1 = RIGHT_P1 + 0.02  # (+ 0.01 is what Adam + L2 gives)
    message = verdicts(student(p1=p1))["by_hand_p1"].message
    assert message.startswith("p1: is not the value") and f"{RIGHT_P1:.6f}"[:6] not in message and "expected" not in message


# ---------------------------------------------------------------- delegation


TORCH_ADAMW_SUBCLASS = '''
import torch


class AdamW(torch.optim.AdamW):
    def __init__(self, params, lr, *, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(list(params), lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=False)
'''
TORCH_CLIP_WRAPPER = '''
import torch


def clip_grad_norm_(parameters, max_norm, *, eps=1e-6):
    return torch.nn.utils.clip_grad_norm_(parameters, max_norm)
'''


def test_torch_adamw_wrapper_fails_the_step_counter_and_is_flagged():
    checks = verdicts(student() | {"AdamW": obj("adamw", TORCH_ADAMW_SUBCLASS)})
    assert "adamw_step_counter" in failed(checks)
    assert failed(checks) <= {"adamw_step_counter", *SPEC.catch_all("adamw")}
    sentence = compare.delegation(SPEC, "adamw", TORCH_ADAMW_SUBCLASS)
    assert sentence and "torch.optim" in sentence and "yourself" in sentence
    flagged = verdicts(student(), sources={"adamw": TORCH_ADAMW_SUBCLASS})
    assert failed(flagged) == ALL and all(check.message == sentence for check in flagged.values())


def test_torch_clip_wrapper_fails_eps_and_is_flagged():
    checks = verdicts(student() | {"clip_grad_norm_": obj("clip", TORCH_CLIP_WRAPPER)})
    assert "clip_none_and_eps" in failed(checks)
    assert "eps" in checks["clip_none_and_eps"].message
    assert "clip_grad_norm_" in compare.delegation(SPEC, "clip", TORCH_CLIP_WRAPPER)


@pytest.mark.parametrize("source", [
    "from torch.optim import AdamW",
    "import torch.optim as o",
    "from torch import optim",
    "import torch as T\nx = T.optim.AdamW",
    "import torch\ns = torch.optim.lr_scheduler.CosineAnnealingLR",
    "from torch.optim.adamw import _single_tensor_adamw",
    "from torch.nn.utils import clip_grad_norm_ as c",
    "import torch.nn as nn\nnn.utils.clip_grad_norm_([], 1.0)",
    "x = __import__('torch')",
    "import importlib",
    "exec('pass')",
    "eval('1')",
    "c = compile('1', 'x', 'eval')",
    "import sys\nsys.modules['torch']",
    "import ctypes",
    "import builtins",
    "import torch\ngetattr(torch, 'optim')",
    "from transformers import get_cosine_schedule_with_warmup",
])
def test_delegation_flags_every_route(source):
    assert compare.delegation(SPEC, "schedule", source)


def test_delegation_leaves_honest_answers_alone():
    for grade_id, source in answer_sources(SPEC).items():
        assert compare.delegation(SPEC, grade_id, source) is None, grade_id
    alt = TP.with_region("adamw", TP.ALT_REGIONS["adamw"])  # torch._foreach_* is fine
    assert compare.delegation(SPEC, "adamw", alt) is None
    assert compare.delegation(SPEC, "adamw", "def broken(:\n") is None  # the probe reports the cell's SyntaxError
    prose = ('import math\n\ndef f(model):\n    """Same as torch.optim.AdamW, written by hand."""\n'
             '    model.eval()\n    return math.sqrt(2)\n')
    assert compare.delegation(SPEC, "adamw", prose) is None
    linalg = "from torch import linalg\n\ndef norm(p):\n    return linalg.vector_norm(p)\n"  # a passable module, by its name
    assert compare.delegation(SPEC, "clip", linalg) is None


# ---------------------------------------------------------------- the record is only data


FACTS = {"adamw_no_autograd", "adamw_step_counter", "clip_global", "clip_none_and_eps"}  # record facts true on every draw


def test_seeds_change_every_input():
    for name in ALL - {"by_hand_p1", "diagnosis"} - FACTS:
        assert compare.reference_data(SPEC, 1, name) != compare.reference_data(SPEC, 2, name), name
        assert compare.reference_data(SPEC, 1, name) == compare.reference_data(SPEC, 1, name)
    # a student cannot pass with numbers recorded for another seed
    assert failed(decide(parse(lines_of(student(), 1)), 2)) >= ALL - {"by_hand_p1", "diagnosis"} - FACTS


def test_parse_record_survives_junk():
    good = json.dumps({"scenario": "schedule_warmup", "data": probe.record(SCENARIOS["schedule_warmup"], student(), SEED)})
    junk = b"\n".join([
        b'{"scenario": "clip_global", "data": {"case 1": ',  # truncated
        b"\xff\xfe not utf-8",
        b'{"scenario": 5, "data": []}', b'{"scenario": "no_such_scenario", "data": {}}', b"[1, 2, 3]", b"null",
        b'{"scenario": "clip_matches"}',  # no data
        b'{"scenario": "adamw_frozen", "data": {"parameter without a gradient": {"dtype": "torch.float64", '
        b'"shape": [2], "b64": "!!notbase64"}}}',
        b'{"scenario": "adamw_first_step", "data": {"run 1": {"after step 1": {"parameter 1": '
        b'{"dtype": "torch.float64", "shape": [1000], "b64": "AAAAAAAAAAA="}}}}}',  # wrong length
        b'{"scenario": "schedule_floor", "data": {"setting 1": {"step 1": NaN}}}',  # not JSON
        b'{"scenario": "schedule_cosine", "data": {"setting 1": "nan"}}',
        b'{"scenario": "by_hand_p1", "data": {"p1": 1e999999}}',
        b'{"scenario": "diagnosis", "data": {"diagnosis": '
        b'{"A": 12345678901234567890123456789012345678901234567890' + b"0" * 400 + b"}}}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"cell": "adamw", "error": "not a dict"}',
        good.encode(),
        b'{"scenario": "schedule_warmup", "data": "a second line for a scenario is ignored"}',
        b"x" * (3 * 2**20),  # a huge line
    ])
    record = parse(junk, limit=8 * 2**20)
    assert set(record) == {"scenarios", "cells", "done"} and record["done"] is False
    assert set(record["scenarios"]) <= ALL and "no_such_scenario" not in record["scenarios"]
    assert record["cells"] == {}
    checks = decide(record)
    assert failed(checks) == ALL - {"schedule_warmup"}
    assert "missing" in checks["clip_global"].message
    assert "missing" in checks["adamw_frozen"].message  # a malformed tensor is missing data
    for odd in (None, [], {"scenarios": [], "cells": 5}, {"scenarios": {"clip_global": 5}, "done": "yes"}):
        assert failed(decide(odd, SEED, {"adamw": 5})) == ALL  # never raises, passes nothing
    assert parse(b"") == {"scenarios": {}, "cells": {}, "done": False}
    assert parse("not bytes") == {"scenarios": {}, "cells": {}, "done": False}
    # over the limit, the cut last line is dropped; what came before stands
    cut = parse(good.encode() + b"\n" + good.encode(), limit=len(good) + 10)
    assert set(cut["scenarios"]) == {"schedule_warmup"}


def test_forged_done_or_forged_numbers_pass_nothing():
    checks = decide(parse(b'{"done": true}\n'))
    assert failed(checks) == ALL and all("missing" in c.message for c in checks.values())
    # the right structure with one number nudged by one part in a million
    data = probe.record(SCENARIOS["adamw_first_step"], student(), SEED)
    tensor = data["run 1"]["after step 1"]["parameter 1"]
    values = array.array("d", base64.b64decode(tensor["b64"]))  # little-endian on the machines we test on
    values[0] *= 1 + 1e-6
    tensor["b64"] = base64.b64encode(values.tobytes()).decode()
    forged = json.dumps({"scenario": "adamw_first_step", "data": data}).encode()
    check = decide(parse(forged))["adamw_first_step"]
    assert not check.passed and "run 1" in check.message
    # the right numbers for part of a scenario only: the comparator walks the expected data, not the record
    data = probe.record(SCENARIOS["schedule_warmup"], student(), SEED)
    part = json.dumps({"scenario": "schedule_warmup", "data": {"setting 1": data["setting 1"]}}).encode()
    assert not decide(parse(part))["schedule_warmup"].passed
    # numbers as strings, NaN strings, wrong types in place of tensors
    for fake in ("nan", "inf", 0, True, [], {"error": "X"}):
        line = json.dumps({"scenario": "schedule_warmup", "data": {"setting 1": {"step 1": fake}}}).encode()
        assert not decide(parse(line))["schedule_warmup"].passed


def test_tolerances_hold_the_line():
    # float32 may drift by 1e-5 relative but not 1e-3; clip's norm and gradients by float32 rounding, not 1e-4
    for name, small, large in [("adamw_trajectory_float32", 1e-6, 1e-3), ("clip_matches", 1e-7, 1e-4),
                               ("adamw_trajectory_float64", 1e-12, 1e-7), ("schedule_cosine", 1e-7, 1e-2)]:
        want = compare.reference_data(SPEC, SEED, name)
        assert differ(want, _scaled(want, 1 + small), name) is None, name
        assert differ(want, _scaled(want, 1 + large), name) is not None, name
    want = compare.reference_data(SPEC, SEED, "adamw_frozen")  # the frozen parameter must be bit-identical
    got = dict(want, **{"parameter without a gradient": _scaled(want["parameter without a gradient"], 1 + 1e-15)})
    assert differ(want, got, "adamw_frozen") is not None
    assert differ(want, _scaled(want, 1 + 1e-15), "adamw_frozen") is not None  # the others may drift, not it


def _scaled(data, factor):
    if isinstance(data, compare.Array):
        return compare.Array(data.dtype, data.shape, tuple(v * factor for v in data.values))
    if isinstance(data, dict) and not compare._is_error(data):
        return {k: _scaled(v, factor) for k, v in data.items()}
    return data * factor if isinstance(data, float) else data


def test_by_hand_and_diagnosis():
    assert RIGHT_P1 == pytest.approx(0.89, abs=0.01)  # p0 (1 - lr wd) - lr g/|g| for these constants
    assert verdicts(student(p1=RIGHT_P1 + 5e-7))["by_hand_p1"].passed
    assert not verdicts(student(p1=RIGHT_P1 + 5e-6))["by_hand_p1"].passed
    assert "Adam + L2" in verdicts(student(p1=CATALOGUE.build("p1", ("by_hand_adam_l2",))))["by_hand_p1"].message
    no_bias = CATALOGUE.build("p1", ("by_hand_no_bias_correction",))
    assert "bias correction" in verdicts(student(p1=no_bias))["by_hand_p1"].message
    check = verdicts(student(p1=float("nan")))["by_hand_p1"]
    assert not check.passed and "NaN" in check.message
    misread = dict(KEY, A="healthy")
    check = verdicts(student(diagnosis=misread))["diagnosis"]
    assert not check.passed and check.message.startswith("diagnosis, A:") and KEY["A"] not in check.message
    assert "five terms" in check.message  # the cell's hint
    assert "is missing" in verdicts(student(diagnosis={k: v for k, v in KEY.items() if k != "B"}))["diagnosis"].message
    assert not verdicts(student(diagnosis=dict(KEY, E="healthy")))["diagnosis"].passed
    assert "TypeError" in verdicts(student(diagnosis=list(KEY)))["diagnosis"].message


# ---------------------------------------------------------------- the probe itself


SANDBOX = ROOT / "g2c" / "grading" / "sandbox"


@pytest.mark.parametrize("path", [SANDBOX / "probe.py", SANDBOX / "walls.py", SPEC.scenarios],
                         ids=["probe", "walls", "scenarios"])
def test_probe_and_scenarios_import_only_the_standard_library_torch_and_the_probe(path):
    tree = ast.parse(path.read_text())
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    outside = {m for m in modules if m.split(".")[0] not in {"__future__", "torch", *sys.stdlib_module_names}}
    assert outside <= {"g2c.grading.sandbox.probe", "g2c.grading.sandbox.walls"}, outside


SLOW_SCHEDULE = '''
import math


def cosine_with_warmup(step, *, warmup_steps, max_steps, max_lr, min_lr=0.0):
    if step > 10**6:
        while True:
            try:
                pass
            except Exception:
                pass
    if step < warmup_steps:
        return max_lr * step / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / (max_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)
'''


def test_run_records_on_the_saved_stdout_only(tmp_path):
    answers = answer_sources(SPEC)
    payload = {
        "seed": SEED,
        "scenario_source": SPEC.scenarios.read_text(),
        "setup": "%matplotlib inline\nimport math\nimport torch\nprint('setup output must not reach the record')",
        "cells": [["adamw", answers["adamw"]],
                  ["broken", "import os\nos.write(2, b'noise')\nraise ValueError('boom')"],
                  ["clip", answers["clip"]],
                  ["schedule", SLOW_SCHEDULE], ["adamw_by_hand_answer", f"p1 = {RIGHT_P1!r}\n!ls\nprint(p1)"],
                  ["diagnosis_answer", f"print('noise')\ndiagnosis = {KEY!r}"]],
        "scenarios": SPEC.scenario_names,
        "scenario_seconds": 2.0,  # generous: a loaded machine must not time out the others
    }
    code = ("import json, sys\nfrom g2c.grading.sandbox import probe\n"
            "probe.run(json.load(sys.stdin))\nprint('after run', flush=True)")
    out = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(payload).encode(), capture_output=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    lines = out.stdout.decode().splitlines()
    assert lines[-1] == "after run" and json.loads(lines[-2]) == {"done": True}
    assert all(line.startswith("{") for line in lines[:-1]), "student output leaked into the record"
    record = parse(out.stdout)
    assert record["done"] and record["cells"] == {"broken": {"error": "ValueError", "message": "boom"}}
    assert list(record["scenarios"]) == SPEC.scenario_names  # one line each, in order, as they finished
    checks = decide(record, SEED, {n: s for n, s in payload["cells"]})
    assert failed(checks) == {"schedule_floor"}
    assert checks["schedule_floor"].message == "did not finish within the time limit"


def test_run_never_raises_and_reports_undefined_answers(tmp_path):
    payload = {"seed": 3, "scenario_source": SPEC.scenarios.read_text(), "setup": "", "cells": [["adamw", "class AdamW(:\n"]],
               "scenarios": ["adamw_first_step", "nope", "by_hand_p1"]}
    code = ("import json, sys\nfrom g2c.grading.sandbox import probe\n"
            "probe.run(json.load(sys.stdin))\nprobe.run(None)\nprint('ok')")
    out = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(payload).encode(), capture_output=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0 and out.stdout.decode().splitlines()[-1] == "ok", out.stderr.decode()[-2000:]
    record = parse(out.stdout)
    assert record["cells"]["adamw"]["error"] == "SyntaxError"
    checks = decide(record, 3)
    assert "SyntaxError" in checks["adamw_first_step"].message and "never defined" in checks["adamw_first_step"].message
    assert "missing" in checks["clip_matches"].message
    assert not checks["by_hand_p1"].passed


ROUTES_AROUND_THE_CHECK = {
    "a magic line first": "%time 0\nimport torch\nAdamW = torch.optim.AdamW",
    "a name built at run time": "import torch\nAdamW = getattr(torch, 'opt' + 'im').AdamW",
    "torch's fused kernel": "import torch\nkernel = torch.ops.aten._fused_adamw_",
    "a frame walk": "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    frame = e.__traceback__.tb_frame.f_back",
    "encoded code": "import base64\nexec(base64.b64decode('cHJpbnQoMSk='))",
    "the type system's back door": "hooks = ().__class__.__base__.__subclasses__()",
    "another module": "import os\nos.write(1, b'{}')",
    "a module hanging off torch": "import torch\nmodules = torch.sys.modules",
    "a module as a value": "import torch\nbox = [torch]",
    "a module rebound": "import torch\nfor torch in [print]:\n    pass",
    "torch written into": "import torch\ntorch.Tensor.addcdiv_ = print",
    "a class pattern's keyword": "match err:\n    case object(__traceback__=tb):\n        pass",
    "a frame through a class pattern": "match tb:\n    case object(tb_frame=frame):\n        pass",
    "self that is not the instance": "self = [].copy\nself._private",
    "self caught as an exception": "try:\n    1 / 0\nexcept ZeroDivisionError as self:\n    self._x",
    "self in a static method": "class A:\n    @staticmethod\n    def f(self):\n        return self._write",
    "self in a lambda": "f = lambda self: self._write",
    "an annotation evaluator": "from typing import get_type_hints",
    "a cell too deep to parse": "x = " + "-" * 3000 + "1",
}


@pytest.mark.parametrize("route", sorted(ROUTES_AROUND_THE_CHECK))
def test_every_probed_cell_is_held_to_tensor_operations_math_and_plain_python(route):
    assert compare.delegation(SPEC, "p1", ROUTES_AROUND_THE_CHECK[route])


@pytest.mark.parametrize("cell, source", [
    ("diagnosis_answer", "import torch\nAdamW = torch.optim.AdamW\ndiagnosis = {}"),
    ("clip", "import torch\nAdamW = torch.optim.AdamW\n" + SOURCES["clip"]),  # one answer's cell rebinding another's
    ("schedule", "import torch\ntorch.Tensor.addcdiv_ = lambda *a, **k: torch.optim.AdamW\n" + SOURCES["schedule"]),
], ids=["value cell", "answer cell", "patches torch"])
def test_a_probed_cell_that_reaches_outside_costs_every_answer(cell, source):
    """The cells share one namespace and one torch: whatever the record says, every scenario fails."""
    record = parse(lines_of(student(), SEED))
    assert not failed(decide(record))
    checks = decide(record, SEED, {cell: source})
    assert failed(checks) == ALL
    assert len({check.message for check in checks.values()}) == 1 and "yourself" in checks["clip_matches"].message
