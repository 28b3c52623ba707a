"""Issue 22 red team: torch's answers through names the cell never imported, and the walls that hold.

At e973aca the grader read each probed cell alone, but the probe runs the preamble and every probed
cell in one namespace: ``torch`` used without an import, or an alias an earlier cell bound, was a
name nobody checked, and from it torch's own AdamW, clipping and schedule scored full marks
(tests/hostile/namespace_delegation.py, unpickle_delegation.py, with pieces_delegation.py). Three walls:

1. static (``cellcheck``, read by ``compare.delegation``): each cell is read against the modules the
   preamble and the earlier probed cells bind; it explains a refusal to the student;
2. stubs (``g2c.grading.sandbox.walls``): in the probe, torch's optimizers, schedulers, clipping and
   fused kernels raise, whatever the route to them;
3. an audit hook: in the probe, no unpickling, marshal, import, built code, frame, file, process...

The static wall is decided in this process; the run-time walls in a real probe run (``probe.run`` in
a child process, no sandbox needed) with cells no static check saw: the record they write does not
match the reference's (``compare.decide`` with no sources, so the static wall is not there), where
the same cells run without walls, here, score full marks. An honest run through the same walls keeps
full marks. One student (the unpickling route) is graded end to end in the shared sandboxed batch.
"""

from __future__ import annotations

import json
import marshal
import subprocess
import sys

import pytest
import test_autograde_hostile as H  # its wrong notebook, hostile(), appended(), assert_costs_every_answer()
import test_pitfalls as TP  # its correct-but-different implementations (ALT_REGIONS)
from conftest import SOURCE, SPEC
from test_probe_compare import KEY, RIGHT_P1, SEED, failed, lines_of, parse

from g2c.grading import cellcheck, compare
from g2c.grading.autograde import graded_cells
from g2c.grading.notebook_build import answer_sources, preamble
from g2c.grading.sandbox import walls
from g2c.grading.worker import probed_sources, sanitized

PIECES = H.hostile("pieces_delegation.py")
NAMESPACE = H.hostile("namespace_delegation.py") + "\n\n" + PIECES
ALIAS = (H.hostile("namespace_delegation.py").replace("torch.functional", "_t.functional").replace("(torch)", "(_t)")
         + "\n\n" + PIECES)
UNPICKLE = H.hostile("unpickle_delegation.py") + "\n\n" + PIECES
assert ALIAS.count("(_t)") == 5

STUDENTS = {  # student -> {grade_id: text appended to that cell of the attacks' wrong notebook (H.attack_base)}
    # the preamble's torch, in a value cell that imports nothing: operator.attrgetter reaches torch's parts
    "i22-namespace-delegates": {"diagnosis_answer": NAMESPACE},
    # the same through an alias the AdamW cell bound (``import torch as _t``, a legal import there)
    "i22-alias-delegates": {"adamw": "import torch as _t", "diagnosis_answer": ALIAS},
    # torch's parts unpickled from bytes constants, pickle reached through the preamble's torch
    "i22-unpickle-delegates": {"diagnosis_answer": UNPICKLE},
}
GRADED = ("i22-unpickle-delegates",)  # end to end: one student, a few seconds of the batch
DELEGATED = {s for s in SPEC.scenario_names if SPEC.answer_of(s) in ("adamw", "clip", "schedule")}


def attacked(student: str):
    return H.attack_with(STUDENTS[student])


def batch_submissions(paths) -> dict[str, object]:
    return {student: attacked(student) for student in GRADED}


def probed(nb) -> dict[str, str]:
    """grade_id -> source of the probed cells, as the worker takes them from the submitted notebook."""
    return probed_sources(sanitized(H.as_bytes(nb), graded_cells(SOURCE)), SPEC.probed)


def cells_of(sources: dict[str, str]) -> list[list[str]]:
    return [[gid, sources[gid]] for gid in SPEC.probed if gid in sources]


# ---------------------------------------------------------------- the static wall: the namespace the cell runs in


@pytest.mark.parametrize("student", sorted(STUDENTS))
def test_each_attack_costs_every_answer_before_any_run(student):
    H.assert_costs_every_answer(attacked(student))


@pytest.mark.parametrize("student", sorted(STUDENTS))
def test_each_attack_is_clean_to_a_reader_of_its_cell_alone(student):
    """The premise: read without the cells before it (e973aca's reading), the attacking cell passes."""
    assert cellcheck.refused(probed(attacked(student))["diagnosis_answer"]) is None


def test_an_alias_from_an_earlier_cell_is_a_module_in_a_later_one():
    sources = probed(attacked("i22-alias-delegates"))
    assert compare.delegation(SPEC, "diagnosis", sources["diagnosis_answer"]) is None  # the preamble alone does not bind _t
    earlier = [sources[gid] for gid in SPEC.probed[:SPEC.probed.index("diagnosis_answer")]]
    assert "torch.functional" in compare.delegation(SPEC, "diagnosis", sources["diagnosis_answer"], earlier)


def test_modules_bound_are_those_the_preamble_and_earlier_cells_import():
    assert cellcheck.modules_bound([preamble(SPEC)]) == {"math": "math", "torch": "torch"}
    bound = cellcheck.modules_bound(["import torch.optim as o\nfrom torch import linalg as L, tensor\nimport os.path",
                                     "def f():\n    import pickle as p", "class (:"])
    assert bound == {"o": "torch.optim", "L": "torch.linalg", "os": "os", "p": "pickle"}


NAMESPACE_ROUTES = {  # one line each, with no import: every name below is the preamble's (torch, math)
    "torch as a value": "t = torch",
    "type(torch)": "M = type(torch)",
    "a module hanging off torch": "loads = torch.serialization.pickle.loads",
    "operator through torch": "get = torch.functional.operator.attrgetter",
    "torch through another module": "o = torch.nn.modules.module.torch.functional",
    "math's loader": "loader = math.__loader__",
    "torch rebound": "for torch in [print]:\n    pass",
    "torch passed": "print(torch)",
}


@pytest.mark.parametrize("route", sorted(NAMESPACE_ROUTES))
def test_a_name_the_preamble_binds_is_read_as_its_module(route):
    assert compare.delegation(SPEC, "p1", NAMESPACE_ROUTES[route])


def test_reading_the_namespace_refuses_no_honest_cell():
    sources = answer_sources(SPEC) | {"adamw_by_hand_answer": f"p1 = {RIGHT_P1!r}", "diagnosis_answer": f"diagnosis = {KEY!r}"}
    sources["adamw_by_hand_answer"] += "\nscale = math.sqrt(2.0) * float(torch.tensor(1.0))"  # the preamble's modules, as modules
    assert not failed(compare.decide(SPEC, parse(lines_of(_namespace(sources), SEED)), SEED, sources))


# ---------------------------------------------------------------- without walls, each attack scores


def _namespace(sources: dict[str, str]) -> dict:
    """The preamble and the probed cells run in one namespace, in this process, with no wall."""
    namespace: dict = {"__name__": "__main__"}
    for gid, source in [["setup", preamble(SPEC)], *cells_of(sources)]:
        exec(compile(source, f"<cell {gid}>", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("student", ["i22-namespace-delegates", "i22-unpickle-delegates"])
def test_without_walls_each_attack_scores_the_three_exercises(student):
    """The attacks are real: run with no wall and read with no static check, torch's answers pass."""
    checks = compare.decide(SPEC, parse(lines_of(_namespace(probed(attacked(student))), SEED)), SEED, {})
    assert DELEGATED and not failed(checks) & DELEGATED
    assert failed(checks) == set(SPEC.scenario_names) - DELEGATED  # the attack base's p1 and diagnosis are wrong


# ---------------------------------------------------------------- the run-time walls, in a real probe run

_TENSORS = "_p = [torch.zeros(2, requires_grad=True)]\n_p[0].grad = torch.ones(2)\n_s = [torch.tensor(1.0)]\n"
_FUSED_ARGS = "(_p, [_p[0].grad], [torch.zeros(2)], [torch.zeros(2)], [], _s, lr=0.1, beta1=0.9, beta2=0.999, " \
              "weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)"
_ADAM = "torch.serialization.sys.modules['torch.optim.adam']"
_MARSHALLED = marshal.dumps(compile("import torch.optim", "<m>", "exec"))
RUN_TIME_ROUTES = {  # route -> (what a cell evaluates, no static check in the way; the wall's words in the error)
    "unpickled functional AdamW": ("torch.serialization.pickle.loads(b'ctorch.optim.adamw\\nadamw\\n.')", "pickle.find_class"),
    "marshalled code": (f"__import__('marshal').loads({_MARSHALLED!r})", "marshal.loads"),
    "code built at run time": ("exec('x = 1')", "compile"),
    "a code object not the harness's": ("exec((lambda: 0).__code__)", "exec of code the grader did not compile"),
    "a function made of a code object": ("type(lambda: 0)((lambda: 0).__code__, {})", "function.__new__"),
    "a code object rebuilt": ("(lambda: 0).__code__.replace(co_name='x')", "code.__new__"),
    "a function's code swapped": ("setattr(_f, '__code__', (lambda: 1).__code__)", "writing function.__code__"),
    "a module not loaded": ("__import__('wave')", "import"),
    "a frame": ("__import__('sys')._getframe()", "sys._getframe"),
    "a traceback's frame": ("_frame()", "tb_frame"),
    "a tracer": ("__import__('sys').settrace(print)", "sys.settrace"),
    "another audit hook": ("_hooked()", "ran: 'not added'"),  # the hook's refusal is silent: sys.addaudithook returns
    "every object": ("__import__('gc').get_objects()", "gc.get_objects"),
    "a file": ("open('/proc/self/status')", "open"),
    "a process": ("__import__('os').system('true')", "os.system"),
    "native code": ("torch.serialization.sys.modules['ctypes'].CDLL(None)", "ctypes.dlopen"),
    "torch.optim.AdamW": ("torch.optim.AdamW(_p, lr=0.1)", "torch.optim.adamw.AdamW.__init__"),
    "an AdamW subclass": ("type('A', (torch.optim.AdamW,), {})(_p, lr=0.1)", "AdamW.__init__"),
    "an optimizer through __subclasses__": ("[c for c in torch.optim.Optimizer.__subclasses__() if c.__name__ == 'SGD'][0]"
                                            "(_p, lr=0.1)", "torch.optim.sgd.SGD.__init__"),
    "type(torch)": ("type(torch).__getattribute__(torch, 'optim').Adam(_p)", "torch.optim.adam.Adam.__init__"),
    "torch through another module": ("torch.nn.modules.module.torch.optim.SGD(_p, lr=0.1)", "torch.optim.sgd.SGD.__init__"),
    "functional AdamW": ("torch.optim._functional.adamw(_p, [], [], [], [], _s)", "torch.optim.adamw.adamw"),
    # torch 2.13's AdamW is Adam with decoupled decay: its loops are torch.optim.adam's (adamw has no _single_tensor_adamw)
    "AdamW's single-tensor loop": (f"{_ADAM}._single_tensor_adam()", "torch.optim.adam._single_tensor_adam"),
    "AdamW's foreach loop": (f"{_ADAM}._multi_tensor_adam()", "torch.optim.adam._multi_tensor_adam"),
    "AdamW's fused path": (f"{_ADAM}._fused_adam()", "torch.optim.adam._fused_adam"),
    "the fused kernel": ("torch._fused_adamw_" + _FUSED_ARGS, "torch.ops.aten._fused_adamw_"),
    "the fused kernel by torch.ops": ("torch.ops.aten._fused_adamw_.default" + _FUSED_ARGS, "torch.ops.aten._fused_adamw_"),
    "the fused kernel by torch._C": ("torch._C._VariableFunctions._fused_adam_" + _FUSED_ARGS, "torch.ops.aten._fused_adam_"),
    "the functional fused kernel": ("torch.ops.aten._fused_adamw" + _FUSED_ARGS, "torch.ops.aten._fused_adamw"),
    "clip_grad_norm_": ("torch.nn.utils.clip_grad_norm_(_p, 1.0)", "clip_grad_norm_"),
    "clip_grad.clip_grad_norm": ("torch.nn.utils.clip_grad.clip_grad_norm(_p, 1.0)", "clip_grad_norm"),
    "clip_grad_value_": ("torch.nn.utils.clip_grad_value_(_p, 1.0)", "clip_grad_value_"),
    "get_total_norm": ("torch.nn.utils.get_total_norm([_p[0].grad])", "_get_total_norm"),
    "clip_grads_with_norm_": ("torch.nn.utils.clip_grads_with_norm_(_p, 1.0, torch.tensor(2.0))", "_clip_grads_with_norm_"),
    "a scheduler": ("torch.optim.lr_scheduler.CosineAnnealingLR(None, 3)", "CosineAnnealingLR.__init__"),
    "a scheduler's closed form": ("torch.optim.lr_scheduler.CosineAnnealingLR._get_closed_form_lr(None)", "_get_closed_form_lr"),
    # the override's handle, from weakref.finalize's registry (the walls detach it), reset: torch's kernel would be back
    "the fused kernel's override undone": ("_undo_override() or torch._fused_adamw_" + _FUSED_ARGS,
                                           "torch.ops.aten._fused_adamw_"),
}
ROUTES_CELL = _TENSORS + '''
REPORT = {}
_f = lambda: 0

# First, what would open the hook if it read its tables from its module: they are emptied.
_walls = torch.serialization.sys.modules["g2c.grading.sandbox.walls"]
for _table in (_walls.REFUSED, _walls.REFUSED_PREFIXES, _walls.FRAME_ATTRIBUTES):
    _table.clear()


def _undo_override():
    for info in list(torch.library.weakref.finalize._registry.values()):
        if "_fused_adamw_/CPU" in str(info.args[1]):
            info.args[5].reset()


def _frame():
    try:
        1 / 0
    except ZeroDivisionError as e:
        return e.__traceback__.tb_frame


def _hooked():
    seen = []
    __import__("sys").addaudithook(lambda event, args: seen.append(event))
    id(seen)  # an audited event
    return "added" if seen else "not added"


def _try(route, attempt):
    try:
        REPORT[route] = f"ran: {attempt()!r}"
    except BaseException as e:
        REPORT[route] = f"{type(e).__name__}: {e}"

''' + "\n".join(f"_try({route!r}, lambda: {expression})" for route, (expression, _) in RUN_TIME_ROUTES.items())
REPORT_SCENARIO = '\n\nSCENARIOS["walls report"] = lambda namespace, seed: namespace.get("REPORT")\n'


def probe_run(cells: list[list[str]], tmp_path) -> tuple[dict, dict, str]:
    """``probe.run`` in a child process with the preamble and ``cells``, walls armed as in the sandbox:
    (the parsed record, the data of the "walls report" scenario, the record's text)."""
    payload = {"seed": SEED, "scenario_source": SPEC.scenarios.read_text() + REPORT_SCENARIO, "setup": preamble(SPEC),
               "cells": cells, "scenarios": [*SPEC.scenario_names, "walls report"]}
    code = "import json, sys\nfrom g2c.grading.sandbox import probe\nprobe.run(json.load(sys.stdin))"
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(payload).encode(), capture_output=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    lines = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert lines[-1] == {"done": True}
    report = next(line["data"] for line in lines if line.get("scenario") == "walls report")
    return parse(out.stdout), report, out.stdout.decode()


def test_the_run_time_walls_stop_every_route_and_the_unpickling_student_scores_nothing(tmp_path):
    """The unpickling student's cells plus a cell of every route, run with no static check: each route
    is stopped by the wall named, and the three exercises score nothing (they score everything
    without walls, above)."""
    sources = probed(attacked("i22-unpickle-delegates"))
    record, report, _ = probe_run([*cells_of(sources), ["routes", ROUTES_CELL]], tmp_path)
    assert record["cells"]["diagnosis_answer"]["message"] == "pickle.find_class is not available while grading"
    assert failed(compare.decide(SPEC, record, SEED, {})) == set(SPEC.scenario_names)
    assert {route: report.get(route) for route, (_, words) in RUN_TIME_ROUTES.items() if words not in report.get(route, "")} == {}
    assert sum(walls.MESSAGE in words for words in report.values()) == len(RUN_TIME_ROUTES) - 1  # all but the hook's


def test_the_stubs_stop_torchs_parts_reached_with_no_audited_event(tmp_path):
    """attrgetter raises no audit event: the stubs alone stop torch's functional AdamW, clipping and scheduler.
    (The attack's warmup and floor are its own arithmetic, each a point of its own.)"""
    record, _, text = probe_run(cells_of(probed(attacked("i22-namespace-delegates"))), tmp_path)
    checks = compare.decide(SPEC, record, SEED, {})
    assert failed(checks) == set(SPEC.scenario_names) - {"schedule_warmup", "schedule_floor"}
    for stub in ("torch.optim.adamw.adamw", "torch.nn.utils.clip_grad._get_total_norm", "torch.optim.sgd.SGD.__init__"):
        assert f"{stub} is {walls.MESSAGE}" in text, stub


def test_honest_answers_keep_full_marks_through_the_walls(tmp_path):
    """Correct answers written another way (torch._foreach_* kernels, @torch.no_grad() as a decorator,
    a seeded demo printed) pass every scenario in a walled probe (the reference does: test_probe_compare)."""
    texts = {a: TP.with_region(a, TP.ALT_REGIONS[a]) for a in TP.ALT_REGIONS}
    decorated = texts["adamw"].replace("    def step(self", "    @torch.no_grad()\n    def step(self", 1)
    assert decorated != texts["adamw"] and "_foreach_" in texts["adamw"]
    sources = answer_sources(SPEC, texts | {"adamw": decorated})
    sources |= {"adamw_by_hand_answer": f"p1 = {RIGHT_P1!r}", "diagnosis_answer": f"diagnosis = {KEY!r}"}
    sources["adamw_by_hand_answer"] += "\ntorch.manual_seed(0)\nprint(torch.randn(2))"  # CUDA's lazy seeding reads a frame
    sources["adamw_by_hand_answer"] += "\n" + TYPED  # typing's inert names work under the hook
    builders = [[f"uses {name}", source] for name, source in TYPING_BUILDERS.items()]
    record, _, _ = probe_run([*cells_of(sources), *builders], tmp_path)
    assert not failed(compare.decide(SPEC, record, SEED, sources))
    # typing's code builders are stopped at run time, so the reading must refuse them first (below)
    assert {cell: error["error"] for cell, error in record["cells"].items()} == dict.fromkeys(dict(builders), "RuntimeError")


TYPED = ("from typing import Optional, Protocol, cast\nfrom collections.abc import Iterable\n"
         "class _Sized(Protocol):\n    def numel(self) -> int: ...\n"
         "def _total(xs: Iterable[_Sized], scale: Optional[float] = None) -> int:\n"
         "    return cast(int, sum(x.numel() for x in xs))\n_n = _total([torch.zeros(2)])")
TYPING_BUILDERS = {"NamedTuple": "from typing import NamedTuple\nclass P(NamedTuple):\n    a: int",
                   "TypedDict": "from typing import TypedDict\nclass D(TypedDict):\n    a: int",
                   "TypeVar": "from typing import TypeVar\nT = TypeVar('T')",
                   "NewType": "from typing import NewType\nU = NewType('U', int)",
                   "ParamSpec": "from typing import ParamSpec\nP = ParamSpec('P')",
                   "TypeVarTuple": "from typing import TypeVarTuple\nTs = TypeVarTuple('Ts')"}


def test_the_reading_refuses_typings_code_builders_and_says_why():
    """What the hook stops at run time (test above) is refused before any run, with a reason the student
    can act on; typing's inert names are not."""
    for name, source in TYPING_BUILDERS.items():
        assert "builds code at run time" in compare.delegation(SPEC, "adamw", source), name
    assert compare.delegation(SPEC, "adamw", TYPED) is None


# ---------------------------------------------------------------- the hook's table


def test_the_hook_refuses_its_events_and_lets_the_harness_exec_its_own_code():
    harness = compile("x = 1", "<cell adamw>", "exec")
    mine = compile("x = 1", "<cell adamw>", "exec")
    hook = walls.audit_hook(frozenset({id(harness)}))

    def refused(event: str, *args) -> bool:
        try:
            hook(event, args)
        except RuntimeError as err:
            assert walls.MESSAGE in str(err)
            return True
        return False

    for event in [*walls.REFUSED, "ctypes.dlopen", "os.system", "socket.connect", "subprocess.Popen"]:
        assert refused(event), event
    assert not refused("exec", harness) and refused("exec", mine)
    assert refused("object.__getattr__", None, "tb_frame")
    assert not refused("object.__getattr__", None, "__code__")  # torch.no_grad() reads it when it decorates
    assert refused("object.__setattr__", None, "__code__", None)
    for harmless in ("array.__new__", "builtins.id", "time.sleep"):
        assert not refused(harmless), harmless


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
def test_the_unpickling_student_scores_nothing_and_is_told_why(batch):
    assert {c: v for c, v in H.autograded(batch.rows["i22-unpickle-delegates"]).items() if v} == {}
    reasons = H.result(batch.out, "i22-unpickle-delegates").get("reasons", {})
    assert reasons and all(any("torch.serialization" in r for r in cell) for cell in reasons.values()), reasons
