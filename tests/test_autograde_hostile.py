"""A hostile class, graded in one batch beside honest students: every submission gets its row.

Every attack is the solution notebook with a WRONG implementation (AdamW.step does nothing,
clip_grad_norm_ returns 0, the schedule returns 0, p1 = 0, a wrong diagnosis: the student
``wrong``, graded plainly in the same batch) and its demos skipped, plus one attack, in an answer cell (which runs in
the probe and in the kernel) and/or in an ordinary cell (which runs only in the kernel). Each
must score no more than ``wrong`` on every autograded cell. Attacks that ride on an honest
notebook (the solution, its demos skipped too: a hang, a memory bomb, a crash or a flood in an
ordinary cell, tampered metadata) must keep full marks and no more. Around the batch: the course repository's tracked files and
the other students' submitted files are unchanged, the host's /tmp and /dev/shm gain nothing
named g2c-*, System V IPC is unchanged, no process of a sandbox uid survives, every status is
a clear one and never ``grading failed``.

The longer attack sources live in tests/hostile/ (see its README). The class is graded in the shared
batch of conftest.py (``batch_submissions`` below), beside the round trip's students.
"""

from __future__ import annotations

import ast
import base64
import copy
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from conftest import (
    HANG_TIMEOUT,
    MEMORY,
    RELEASED,
    ROOT,
    SOURCE,
    SPEC,
    TEST_CELLS,
    TIMEOUT,
    TOKEN,
    BatchPaths,
    Link,
    autograde_command,
    cell_of,
    feedback_page,
    g2c_entries,
    grade_id,
    grading_env,
    rows,
    solution,
    still_there,
    without_demos,
    write_submission,
)

from g2c.grading import notebook_build as build
from g2c.grading.sandbox.box import UID_BASE, isolation_available

HOSTILE = Path(__file__).resolve().parent / "hostile"
POINTS = build.autograded_points(SPEC)
AUTOGRADED = list(POINTS)
FULL = sum(POINTS.values())
PART_CELLS = {part: [gid for gid, _, _, _ in cells] for part, cells in TEST_CELLS.items()}
CLEAR = {"graded", "timeout", "memory", "crashed", "unreadable notebook", "missing notebook"}
IPC_KEYS = (0x67326301, 0x67326302, 0x67326303)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(isolation_available() is not None, reason=f"no sandbox here: {isolation_available()}"),
]

# ---------------------------------------------------------------- building submissions

WRONG_BODIES = {  # grade_id -> what replaces its ### BEGIN/END SOLUTION region
    "adamw": "pass  # does nothing",
    "clip": "return torch.tensor(0.0)",
    "schedule": "return 0.0",
    "adamw_by_hand_answer": "p1 = 0.0",
    "diagnosis_answer": "diagnosis = {'A': 'train longer', 'B': 'train longer', 'C': 'train longer', 'D': 'train longer'}",
}
SOLUTION_REGION = re.compile(r"^([ \t]*)### BEGIN SOLUTION.*?### END SOLUTION[ \t]*$", re.S | re.M)


def hostile(*names: str) -> str:
    return "\n\n".join((HOSTILE / name).read_text() for name in names)


def encoded(source: str) -> str:
    """``source`` run through exec from base64: no name of it is visible in the cell."""
    return f"exec(__import__('base64').b64decode({base64.b64encode(source.encode()).decode()!r}).decode())"


def wrong():
    nb = solution()
    for cell in nb.cells:
        if (gid := grade_id(cell)) in WRONG_BODIES:
            cell.source = SOLUTION_REGION.sub(lambda m: m.group(1) + WRONG_BODIES[gid], cell.source)
            assert "SOLUTION" not in cell.source, gid
    return nb


def attack_base():
    """What an attack is added to: the wrong notebook with its demos skipped (``without_demos``).

    The plain ``wrong`` student keeps them, so every attack is held to a wrong implementation
    that did its demos.
    """
    return without_demos(wrong())


def attack_with(cells: dict[str, str]):
    """The attack base with each text appended to the cell of its grade id."""
    nb = attack_base()
    for gid, text in cells.items():
        nb = appended(nb, gid, text)
    return nb


def appended(nb, gid: str, source: str):
    """``nb`` with ``source`` added at the end of the cell ``gid`` (an answer cell: probe and kernel)."""
    nb = copy.deepcopy(nb)
    cell = cell_of(nb, gid)
    cell.source = cell.source.rstrip() + "\n\n\n" + source
    return nb


def prefixed(nb, line: str):
    """``nb`` with ``line`` (an IPython magic: the probe drops it, a Python parser chokes on it) first in every answer cell."""
    nb = copy.deepcopy(nb)
    for gid in ("adamw", "clip", "schedule"):
        cell = cell_of(nb, gid)
        cell.source = line + cell.source
    return nb


def inserted(nb, source: str, *, at_end: bool = False):
    """``nb`` with a new ordinary cell (kernel only) after the setup cell, or at the end."""
    nb = copy.deepcopy(nb)
    new = nbformat.v4.new_code_cell(source)
    nb.cells.insert(len(nb.cells) if at_end else 2, new)
    return nb


def as_bytes(nb) -> bytes:
    return nbformat.writes(nb).encode()


def probe_paths(paths: dict[str, Path], write_: bool = False) -> str:
    """Cell source that tries each path and prints OPENED or BLOCKED (never raises)."""
    mode, action = ("ab", "f.write(b'x')") if write_ else ("rb", "f.read(64)")
    return "\n".join(
        f"try:\n    with open({str(path)!r}, {mode!r}) as f:\n        {action}\n"
        f"    print('OPENED {label}')\nexcept Exception as e:\n    print('BLOCKED {label}', type(e).__name__)"
        for label, path in paths.items())


DELEGATION = hostile("torch_adamw.py", "torch_clip.py", "torch_schedule.py")
PLAIN_BINDINGS = {
    "adamw": "AdamW = _delegated_adamw(torch.optim.AdamW)",
    "clip": "clip_grad_norm_ = _delegated_clip(torch.nn.utils)",
    "schedule": "cosine_with_warmup = _delegated_schedule(torch.optim.lr_scheduler)",
}
ENCODED_BINDINGS = {  # the same through importlib, to be run from base64 (exec)
    "adamw": (
        "import importlib\n"
        "AdamW = _delegated_adamw(getattr(importlib.import_module('tor' + 'ch.o' + 'ptim'), 'Ad' + 'amW'))"
    ),
    "clip": (
        "import importlib\n"
        "clip_grad_norm_ = _delegated_clip(importlib.import_module('.'.join(['torch', 'nn', 'utils'])))"
    ),
    "schedule": (
        "import importlib\n"
        "cosine_with_warmup = _delegated_schedule(importlib.import_module('torch.optim.' + 'lr_' + 'scheduler'))"
    ),
}
GETATTR_BINDINGS = {  # no import, no exec: torch's names split in two strings
    "adamw": "AdamW = _delegated_adamw(getattr(torch, 'opt' + 'im').AdamW)",
    "clip": "clip_grad_norm_ = _delegated_clip(torch.nn.utils)",
    "schedule": "cosine_with_warmup = _delegated_schedule(getattr(getattr(torch, 'opt' + 'im'), 'lr_' + 'scheduler'))",
}
DELEGATION_BY_GETATTR = (
    DELEGATION
    .replace("utils.get_total_norm(", "getattr(utils, 'get_total' + '_norm')(")
    .replace("utils.clip_grads_with_norm_(", "getattr(utils, 'clip_grads' + '_with_norm_')(")
    .replace("_torch.optim.SGD", "getattr(_torch, 'opt' + 'im').SGD")
)
assert DELEGATION_BY_GETATTR.count("getattr(utils") == 2
SUBSTITUTES = hostile("torch_adamw.py", "torch_clip.py", "torch_schedule.py", "context.py", "substitutes.py")
GAMING = """import math, torch, pytest, ipytest, builtins
from IPython import get_ipython
get_ipython().showtraceback = lambda *args, **kwargs: None  # silenced tracebacks
torch.testing.assert_close = lambda *a, **k: None
torch.allclose = lambda *a, **k: True
math.isclose = lambda *a, **k: True
pytest.approx = lambda expected, *a, **k: expected
import _pytest.reports
_pytest.reports.TestReport.passed = property(lambda self: True)
_pytest.reports.TestReport.failed = property(lambda self: False)
ipytest.run = lambda *a, **k: 0"""
# In the probe only, where points would be decided: in the kernel, the lies slowed every later cell tenfold (30 s).
LYING_BUILTINS = hostile("context.py") + """
import builtins, sys
_real = {name: getattr(builtins, name) for name in ('float', 'bool', 'isinstance', 'len', 'abs', 'str', 'sorted')}
def _from_harness():
    f = sys._getframe(2)
    return f is not None and f.f_code.co_filename.endswith(('probe.py', 'compare.py', 'worker.py', '<scenarios>'))
class _LyingFloat(float):
    def __new__(cls, x=0.0):
        return _real['float'](1.0 if _from_harness() and not isinstance(x, _real['str']) else x)  # no knowledge, only a lie
if _CTX is not None:
    builtins.float = _LyingFloat
    builtins.bool = lambda x=False: True if _from_harness() else _real['bool'](x)
    builtins.abs = lambda x: 0.0 if _from_harness() else _real['abs'](x)
    builtins.isinstance = lambda o, t: True if _from_harness() else _real['isinstance'](o, t)"""
TORCH_INTERNALS = """import ctypes, gc, torch
import torch.optim.adamw, torch.optim.adam, torch.nn.utils.clip_grad
_d = gc.get_referents(torch._C.TensorBase.__dict__)[0]  # the C tensor type's real dict, through its mappingproxy
_d['tolist'] = lambda self: [0.0] * self.numel()
_d['item'] = lambda self: 0.0
ctypes.pythonapi.PyType_Modified(ctypes.py_object(torch._C.TensorBase))
torch.optim.adamw.adamw = lambda *a, **k: None
torch.nn.utils.clip_grad.clip_grad_norm_ = lambda *a, **k: torch.tensor(0.0)
torch.nn.utils.clip_grad_norm_ = torch.nn.utils.clip_grad.clip_grad_norm_
torch.testing.assert_close = lambda *a, **k: None"""
IMPORT_HOOKS = """import sys, types, importlib.abc, importlib.machinery
class _Fake(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name.startswith(('g2c.grading.compare', 'g2c.grading.worker', 'g2c.grading.verdict', 'pytest', 'nbgrader')):
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__getattr__ = lambda attr: (lambda *a, **k: True)
        return module
    def exec_module(self, module):
        pass
sys.meta_path.insert(0, _Fake())
for _name in [n for n in sys.modules if n.startswith(('g2c.grading.compare', 'pytest', '_pytest', 'ipytest'))]:
    del sys.modules[_name]
class _Proxy(types.ModuleType):
    def __init__(self, real):
        super().__init__(real.__name__)
        self.__dict__['_real'] = real
    def __getattr__(self, name):
        if name in ('randn', 'rand'):
            return lambda *a, **k: self._real.zeros(*[x for x in a if not isinstance(x, self._real.Generator)],
                                                     **{k_: v for k_, v in k.items() if k_ != 'generator'})
        return getattr(self._real, name)
import torch as _real_torch
sys.modules['torch'] = _Proxy(_real_torch)
_P = sys.modules.get('g2c.grading.sandbox.probe')
if _P is not None:
    _P.torch = sys.modules['torch']
sys.modules['torch'] = _real_torch"""
EARLY_DONE_THEN_HANG = hostile("context.py") + """
import os, signal, time
if _CTX is not None:
    os.write(_CTX['out'], b'{"done": true}\\n')
signal.signal(signal.SIGALRM, signal.SIG_IGN)  # the per-scenario alarm: ignored, cancelled, blocked
signal.setitimer(signal.ITIMER_REAL, 0)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
def _forever(self):
    while True:
        time.sleep(60)  # asleep, not spinning: see batch_limit_bound
AdamW.step = _forever"""
LATE_HANG = """_honest_schedule = cosine_with_warmup
def cosine_with_warmup(step, **settings):  # right everywhere, but step 10**9 (the last check) never returns
    if step >= 10**9:  # plain Python that swallows the scenario's alarm: only the sandbox's timeout ends it
        while True:
            try:
                while True:
                    pass
            except BaseException:
                continue
    return _honest_schedule(step, **settings)"""
EXIT_PATHS = """import atexit, os, sys, threading, time
atexit.register(lambda: os.write(1, b'{"done": true}\\n'))
sys.exitfunc = lambda: None
threading.Thread(target=lambda: (time.sleep(1), os._exit(0)), daemon=True).start()
raise SystemExit(0)"""
SIGNALS = """import signal, os, time
for s in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
    signal.signal(s, signal.SIG_IGN)
signal.setitimer(signal.ITIMER_REAL, 0)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
def _slow(self):
    while True:
        time.sleep(60)  # asleep, not spinning: see batch_limit_bound
AdamW.step = _slow"""
IPC_CREATE = f"""import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
made = [libc.shmget({IPC_KEYS[0]}, 4096, 0o1000 | 0o666), libc.semget({IPC_KEYS[1]}, 1, 0o1000 | 0o666),
        libc.msgget({IPC_KEYS[2]}, 0o1000 | 0o666)]
print('IPC made', made)"""
IPC_READ = f"""import ctypes
libc = ctypes.CDLL(None, use_errno=True)
found = [libc.shmget({IPC_KEYS[0]}, 0, 0), libc.semget({IPC_KEYS[1]}, 0, 0), libc.msgget({IPC_KEYS[2]}, 0)]
print('IPC FOUND' if any(x >= 0 for x in found) else 'IPC GONE', found)"""
DAEMONS = f"""import os, subprocess, time
open('/tmp/{TOKEN}-marker', 'w').write('left behind')
subprocess.Popen(['sleep', '987654'], start_new_session=True)
if os.fork() == 0:  # double fork, setsid: a daemon
    os.setsid()
    if os.fork() == 0:
        for fd in range(3, 1024):  # the daemon keeps writing into whatever it inherited
            try:
                os.write(fd, b'{{"done": true}}\\n')
            except OSError:
                pass
        os.execvp('sleep', ['sleep', '987655'])
    os._exit(0)
time.sleep(0.5)"""
FORK_BOMB = """import os, time
children = 0
try:
    for _ in range(5000):
        pid = os.fork()
        if pid == 0:
            time.sleep(10**6)
            os._exit(0)
        children += 1
except OSError as e:
    print('fork bomb stopped after', children, type(e).__name__)"""
FILL_DISKS = """import os
written = {}
for folder in (os.environ.get('HOME', '/tmp'), '/tmp', '/var/tmp', '/dev/shm'):
    written[folder] = 0
    for i in range(64):
        try:
            with open(os.path.join(folder, f'g2c-fill-{i}'), 'wb') as f:
                for _ in range(32):
                    f.write(b'x' * 2**20)
                    written[folder] += 1
        except OSError:
            break
print('MB written', written)"""
MEMORY_BOMB = """hog = []
try:
    while True:
        hog.append(bytearray(2**28))
finally:
    del hog  # the host is shared: give it back once the limit is hit"""
HUGE_OUTPUT = """import sys
chunk = 'x' * 2**20
for _ in range(200):
    sys.stdout.write(chunk)"""
FLOOD_RECORD = hostile("context.py") + """
import os
if _CTX is not None:
    for _ in range(9):
        os.write(_CTX['out'], (' ' * (2**20 - 1) + '\\n').encode())"""
PLANT_SYMLINKS = """import os
home = os.getcwd()
for name, target in TARGETS.items():
    for where in (home, '/tmp', '/dev/shm'):
        try:
            os.symlink(target, os.path.join(where, name))
            print('planted', where, name)
        except OSError as e:
            print('BLOCKED plant', where, name, type(e).__name__)
try:  # the working folder itself replaced by a link to another student's work, then the root
    os.chdir('/')
    os.rename(home, home + '.moved')
    os.symlink(TARGETS['other-submitted'], home)
    print('replaced the working folder by a symlink')
except OSError as e:
    print('BLOCKED replacing the working folder', type(e).__name__)"""
NETWORK = """import socket
for target in [('127.0.0.1', PORT), ('1.1.1.1', 53), ('pypi.org', 443)]:
    try:
        socket.create_connection(target, timeout=3).close()
        print('OPENED', target)
    except Exception as e:
        print('BLOCKED', target, type(e).__name__)
for family in (socket.AF_INET, socket.AF_INET6):
    try:
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.sendto(b'x', ('1.1.1.1', 53) if family == socket.AF_INET else ('2606:4700:4700::1111', 53))
        print('SENT udp', family)
    except Exception as e:
        print('BLOCKED udp', family, type(e).__name__)"""


def set_nbgrader(cell, meta) -> None:
    cell.metadata["nbgrader"] = meta


def tampered_points(nb):
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader")
        if isinstance(meta, dict) and meta.get("grade_id"):
            meta.update(grade=True, points=100)
    return nb


def tampered_cells(nb):
    """Test cells switched to markdown, an answer cell to raw, the setup cell to markdown."""
    nb = copy.deepcopy(nb)
    for i, cell in enumerate(nb.cells):
        gid = grade_id(cell)
        if gid and gid.startswith("test_"):
            nb.cells[i] = nbformat.v4.new_markdown_cell(cell.source, metadata=cell.metadata)
        elif gid == "clip":
            nb.cells[i] = nbformat.v4.new_raw_cell(cell.source, metadata=cell.metadata)
        elif gid == "setup":
            nb.cells[i] = nbformat.v4.new_markdown_cell(cell.source, metadata=cell.metadata)
    return nb


def duplicated_and_deleted(nb):
    """Every test cell twice, the AdamW tests deleted, each answer cell twice (one copy empty)."""
    nb = copy.deepcopy(nb)
    out = []
    for cell in nb.cells:
        gid = grade_id(cell)
        if gid in PART_CELLS["adamw"]:
            continue
        out.append(cell)
        if gid and (gid.startswith("test_") or gid in WRONG_BODIES):
            twin = copy.deepcopy(cell)
            twin.id = f"twin-{gid}"[:64].replace("_", "-")
            if gid in WRONG_BODIES:
                twin.source = "pass"
            out.append(twin)
    nb.cells = out
    return nb


def extra_grade_cells(nb):
    nb = copy.deepcopy(nb)
    extras = [
        nbformat.v4.new_markdown_cell(
            "bogus",
            metadata={"nbgrader": {
                "grade": True,
                "grade_id": "bogus",
                "locked": False,
                "points": 100,
                "schema_version": 3,
                "solution": True,
                "task": False,
            }},
        ),
        nbformat.v4.new_markdown_cell(
            "I answer twice",
            metadata={"nbgrader": dict(cell_of(nb, "lr_choice").metadata["nbgrader"])},
        ),
        nbformat.v4.new_markdown_cell(
            "a markdown test",
            metadata={"nbgrader": dict(cell_of(nb, "test_adamw_matches_torch").metadata["nbgrader"])},
        ),
        nbformat.v4.new_code_cell(
            "x = 1",
            metadata={"nbgrader": {
                "grade": True,
                "grade_id": "test_adamw_extra",
                "locked": True,
                "points": 50,
                "schema_version": 3,
                "solution": False,
                "task": False,
            }},
        ),
        nbformat.v4.new_markdown_cell(
            "a task",
            metadata={"nbgrader": {
                "grade": False,
                "grade_id": "task_bogus",
                "locked": True,
                "points": 5,
                "schema_version": 3,
                "solution": False,
                "task": True,
            }},
        ),
    ]
    for k, cell in enumerate(extras):
        nb.cells.insert(5 + 3 * k, cell)
    return nb


def nbgrader_not_a_dict(nb):
    nb = copy.deepcopy(nb)
    set_nbgrader(nb.cells[0], "x")
    set_nbgrader(nb.cells[2], None)
    set_nbgrader(nb.cells[4], ["grade_id", "adamw"])
    nb.cells.insert(
        6,
        nbformat.v4.new_code_cell("y = 2", metadata={"nbgrader": {"grade_id": ["adamw"], "grade": True, "points": 5}}),
    )
    nb.cells.insert(6, nbformat.v4.new_code_cell("z = 3", metadata={"nbgrader": {"grade_id": {"a": 1}, "solution": True}}))
    return nb


def stripped_metadata(nb):
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    return nb


def games_the_checks(nb):
    nb = inserted(nb, GAMING)
    for cell in nb.cells:
        if (gid := grade_id(cell)) and gid.startswith("test_"):
            cell.source = "%%ipytest -qq\ndef test_nothing():\n    pass"  # visible tests "edited"
    return nb


def peek_cell(course: Path, out: Path, submitted: Path) -> str:
    reads = {
        "source notebook": SOURCE,
        "release notebook": RELEASED,
        "course git": course / ".git" / "HEAD",
        "reference optim": course / "g2c" / "grading" / "notebook_build.py",
        "gradebook": out / "gradebook.db",
        "grades file": out / "grades.csv",
        "other student": submitted / "honest" / "03b-training" / "training.ipynb",
        "root home": Path("/root/.bashrc"),
        "shadow": Path("/etc/shadow"),
        "shared notes": Path("/work/shared/notes/trusted-verdict.md"),
        "host tmp": Path(tempfile.gettempdir()) / "pytest-of-root",
    }
    writes = {
        "gradebook": out / "gradebook.db",
        "grades file": out / "grades.csv",
        "source notebook": SOURCE,
        "other student": submitted / "honest" / "03b-training" / "training.ipynb",
        "other feedback": out / "feedback" / "honest" / "03b-training" / "training.html",
        "kit": course / "g2c" / "training" / "optim.py",
        "venv": Path(sys.prefix) / "pyvenv.cfg",
    }
    return (
        f"READ = {json.dumps({k: str(v) for k, v in reads.items()})}\n"
        f"WRITE = {json.dumps({k: str(v) for k, v in writes.items()})}\n"
        + hostile("peek.py")
    )


def delegations(W) -> dict[str, nbformat.NotebookNode]:
    """student -> ``W`` with the exercises delegated to torch, each route tuned to the contract (reproducing the
    reference bit for bit): the grader must give 0 for every part."""
    return {
        "delegates-plainly": appended(appended(appended(W, "adamw", DELEGATION + "\n" + PLAIN_BINDINGS["adamw"]),
                                               "clip", DELEGATION + "\n" + PLAIN_BINDINGS["clip"]),
                                      "schedule", DELEGATION + "\n" + PLAIN_BINDINGS["schedule"]),
        "delegates-by-getattr": appended(appended(appended(W, "adamw", DELEGATION_BY_GETATTR + "\n" + GETATTR_BINDINGS["adamw"]),
                                                  "clip", DELEGATION_BY_GETATTR + "\n" + GETATTR_BINDINGS["clip"]),
                                         "schedule", DELEGATION_BY_GETATTR + "\n" + GETATTR_BINDINGS["schedule"]),
        "delegates-encoded": appended(appended(appended(W, "adamw", encoded(DELEGATION + "\n" + ENCODED_BINDINGS["adamw"])),
                                               "clip", encoded(DELEGATION + "\n" + ENCODED_BINDINGS["clip"])),
                                      "schedule", encoded(DELEGATION + "\n" + ENCODED_BINDINGS["schedule"])),
        "delegates-behind-a-magic": appended(appended(appended(prefixed(W, "%matplotlib inline\n"),
                                                               "adamw", DELEGATION + "\n" + PLAIN_BINDINGS["adamw"]),
                                                      "clip", DELEGATION + "\n" + PLAIN_BINDINGS["clip"]),
                                             "schedule", DELEGATION + "\n" + PLAIN_BINDINGS["schedule"]),
        "delegates-from-another-cell": appended(W, "diagnosis_answer", DELEGATION + "\n" + "\n".join(PLAIN_BINDINGS.values())),
        "delegates-functional": appended(
            W,
            "adamw",
            hostile("functional_adamw.py")
            + "\nimport torch.optim.adamw\nAdamW = _functional_adamw(_python_kernel(torch.optim.adamw.adamw))",
        ),
        "delegates-fused-kernel": appended(
            W,
            "adamw",
            hostile("functional_adamw.py")
            + "\nAdamW = _functional_adamw(_fused_kernel(getattr(torch.ops.aten, '_fused_' + 'adamw_')))",
        ),
    }


def batch_submissions(paths: BatchPaths) -> dict[str, object]:
    """student -> notebook (raw bytes, None: no notebook, a Link). Baselines first, then one attack each."""
    course, out, submitted, port = paths.course, paths.out, paths.submitted, paths.port
    W, S = attack_base(), without_demos(solution())  # demos run once in the class: test_autograde's solution keeps them
    forged = {mode: SUBSTITUTES + f"\nMODE = {mode!r}\n" + hostile("forge.py") for mode in ("first", "report", "table", "code")}
    targets = {"other-submitted": str(submitted / "honest"), "out": str(out), "course": str(course), "root": "/",
               "init-root": "/proc/1/root", "kernel.json": str(out / "gradebook.db")}
    return {
        # baselines
        "honest": S, "wrong": wrong(),
        # delegation to torch, graded end to end (the others: test_every_route_to_torch_costs_every_answer_before_any_run)
        **{student: nb for student, nb in delegations(W).items() if student in DELEGATED},
        # forging the probe's record (the answer cells stay wrong)
        "forges-record-first": appended(W, "diagnosis_answer", encoded(forged["first"])),
        "forges-record-through-report": appended(W, "diagnosis_answer", encoded(forged["report"])),
        "patches-harness-table": appended(W, "adamw_by_hand_answer", encoded(forged["table"])),
        "swaps-harness-code": appended(W, "adamw_by_hand_answer", forged["code"]),
        "writes-malformed-record": appended(W, "adamw", hostile("malformed.py")),
        "floods-the-record": appended(W, "adamw", FLOOD_RECORD),
        "early-done-then-hangs": appended(W, "adamw", EARLY_DONE_THEN_HANG),
        "exits-early": appended(W, "clip", EXIT_PATHS),
        "defeats-the-alarm": appended(W, "adamw", SIGNALS),
        # patching what runs the checks
        "games-the-checks": games_the_checks(W),
        "games-the-checks-in-answers": appended(
            W,
            "adamw",
            GAMING.replace(
                "get_ipython().showtraceback",
                "(get_ipython() or __import__('types').SimpleNamespace()).showtraceback",
            ),
        ),
        "lying-builtins": appended(W, "diagnosis_answer", LYING_BUILTINS),
        "patches-torch-internals": appended(W, "adamw", TORCH_INTERNALS),
        "import-hooks": appended(W, "adamw", IMPORT_HOOKS),
        # looking for the reference, the keys, the hidden tests
        "steals-the-reference": appended(W, "diagnosis_answer", hostile("loot.py")),
        "peeks-from-the-kernel": inserted(W, peek_cell(course, out, submitted), at_end=True),
        # the sandbox's walls
        "leaves-daemons": appended(W, "adamw", DAEMONS),
        "leaves-ipc": appended(W, "adamw", IPC_CREATE),
        "reads-ipc": inserted(W, IPC_READ, at_end=True),
        "network": appended(W, "adamw", NETWORK.replace("PORT", str(port))),
        "fork-bomb": appended(W, "clip", FORK_BOMB),
        "fills-the-disks": appended(W, "clip", FILL_DISKS),
        "plants-symlinks": inserted(W, f"TARGETS = {json.dumps(targets)}\n" + PLANT_SYMLINKS),
        "huge-output-in-answer": appended(W, "schedule", HUGE_OUTPUT),
        "answer-hangs": appended(W, "adamw", "while True:\n    pass"),
        "answer-memory-bomb": appended(W, "adamw", MEMORY_BOMB),
        "answer-aborts": appended(W, "adamw", "import os\nos.abort()"),
        # honest answers, trouble in an ordinary cell: costs nothing
        "honest-ordinary-hang": inserted(S, "while True:\n    pass"),
        "honest-hangs-in-a-late-scenario": appended(S, "schedule", LATE_HANG),
        "honest-ordinary-memory-bomb": inserted(S, MEMORY_BOMB),
        "honest-ordinary-abort": inserted(S, "import os\nos.abort()"),
        "honest-huge-output": inserted(S, HUGE_OUTPUT),
        "honest-ignores-signals": inserted(S, "import signal, time\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
                                              "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    time.sleep(60)"),
        # nbgrader metadata tampering
        "meta-points-100": tampered_points(W),
        "meta-honest-points-100": tampered_points(S),
        "meta-cell-types-switched": tampered_cells(W),
        "meta-duplicated-and-deleted": duplicated_and_deleted(W),
        "meta-extra-grade-cells": extra_grade_cells(W),
        "meta-honest-extra-grade-cells": extra_grade_cells(S),
        "meta-nbgrader-not-a-dict": nbgrader_not_a_dict(W),
        "meta-stripped": stripped_metadata(W),
        # broken files
        "truncated-json": as_bytes(S)[: len(as_bytes(S)) // 2],
        "not-utf8": b"\xff\xfe" + as_bytes(S)[:1000],
        "no-notebook": None,
        # links: to another student's notebook, to the solution, another student's folder
        "symlink-to-honest": Link("notebook", "../../honest/03b-training/training.ipynb"),
        "symlink-to-solution": Link("notebook", str(SOURCE)),
        "symlinked-folder": Link("folder", "honest"),
    }


# Students whose hang (or wedged kernel) runs into the limits: graded in the batch's second run, with the tight
# limits HANG_TIMEOUT and HANG_CELL_TIMEOUT (conftest.py), so that each holds a worker (and, spinning, a core) for
# seconds, not a minute, and no spinning hang slows the first run's students. Not the fork bomb: forking ~250
# kernels on a loaded machine takes longer than HANG_CELL_TIMEOUT, and its cell must print how far it got.
# The hangs that last until the run's limit sleep instead of spinning (early-done-then-hangs, defeats-the-alarm,
# honest-ignores-signals): every limit of the grader is wall-clock time, so a sleeping hang is stopped the same way,
# and it leaves the core to the rest of the suite. The canonical infinite loop still spins where it is cut early
# (answer-hangs, honest-ordinary-hang: one cell timeout each), and so does the late hang: an honest answer cell may
# import nothing that sleeps.
batch_limit_bound = {"answer-hangs", "honest-ordinary-hang", "honest-hangs-in-a-late-scenario", "early-done-then-hangs",
                     "defeats-the-alarm", "honest-ignores-signals", "leaves-daemons"}

STATUS = {  # student -> allowed statuses; every other student: graded
    "answer-hangs": {"timeout", "graded"},
    "honest-hangs-in-a-late-scenario": {"timeout"},
    "early-done-then-hangs": {"timeout", "graded"},  # graded: the probe's audit hook stops its frame search first
    "defeats-the-alarm": {"timeout"},
    "answer-memory-bomb": {"memory", "graded", "crashed"},
    "answer-aborts": {"crashed"},
    "exits-early": {"crashed", "graded"},
    "floods-the-record": {"crashed", "graded"},
    "truncated-json": {"unreadable notebook"},
    "not-utf8": {"unreadable notebook"},
    "no-notebook": {"missing notebook"},
    "symlink-to-honest": {"unreadable notebook", "missing notebook", "graded"},
    "symlink-to-solution": {"unreadable notebook", "missing notebook", "graded"},
    "symlinked-folder": {"unreadable notebook", "missing notebook", "graded"},
}
HONEST = {
    "honest",
    "honest-ordinary-hang",
    "honest-ordinary-memory-bomb",
    "honest-ordinary-abort",
    "honest-huge-output",
    "honest-ignores-signals",
    "meta-honest-points-100",
    "meta-honest-extra-grade-cells",
}
# A probed cell that reaches for torch's optimizers (or anything but tensors, math and plain Python) costs
# every autograded cell: the cells share one namespace and one torch, so it could serve any answer.
# Graded end to end: the plain route and one built only at run time (exec of base64). What tells the other routes
# apart is how a cell's source reaches torch, and the grader reads that source before any point is decided: each
# route is held to it on its own by test_every_route_to_torch_costs_every_answer_before_any_run, with no sandbox.
DELEGATED = {"delegates-plainly", "delegates-encoded"}

# ---------------------------------------------------------------- the host around the batch


def moved(before: str, after: str) -> set[str]:
    """Files a commit, merge or checkout by someone else changed between two HEADs."""
    if before == after:
        return set()
    diff = subprocess.run(["git", "-C", str(ROOT), "diff", "--name-only", before, after], capture_output=True, text=True).stdout
    return set(diff.split())


def our_leftovers(grace: float = 15.0) -> list[str]:
    """Processes of a sandbox uid started by this batch (TOKEN in their environment or command line)."""
    deadline = time.monotonic() + grace
    while True:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                uid = os.stat(f"/proc/{pid}").st_uid
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if (uid >= UID_BASE and TOKEN.encode() in environ) or b"sleep 98765" in cmdline or TOKEN.encode() in cmdline:
                found.append(f"{pid} uid={uid} {cmdline[:150].decode(errors='replace')}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def sandbox_uid_processes() -> list[str]:
    ps = subprocess.run(["ps", "-eo", "uid=,pid=,args="], capture_output=True, text=True).stdout
    return [line[:200] for line in ps.splitlines() if line.split() and int(line.split()[0]) >= UID_BASE]


def running(text: str, grace: float = 15.0) -> list[str]:
    deadline = time.monotonic() + grace
    while True:
        ps = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True).stdout
        found = [line[:200] for line in ps.splitlines() if text in line]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def autograded(row) -> dict[str, float]:
    return {c: float(row[c] or 0) for c in AUTOGRADED}


def result(out: Path, student: str) -> dict:
    return json.loads((out / "results" / f"{student}.json").read_text())


def printed(out: Path, student: str) -> str:
    """Everything the student's cells printed in the notebook run, from the autograded notebook."""
    nb = nbformat.read(out / "autograded" / student / "03b-training" / "training.ipynb", as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


feedback = feedback_page


# ---------------------------------------------------------------- verdicts


def test_the_batch_finishes_and_every_submission_gets_one_row_with_a_clear_status(batch):
    assert batch.run.returncode == 0, batch.run.stderr[-3000:]
    graded = batch.rows
    assert set(graded) == {p.name for p in batch.submitted.iterdir()}
    for student, row in sorted(graded.items()):
        print(f"  {student:32s} {row['status']:20s} {row['score']:>5s}/{row['max_score']}")
    failed = {s: result(batch.out, s).get("detail") for s, r in graded.items() if r["status"] not in CLEAR}
    assert failed == {}, f"statuses that are not clear (detail): {failed}"
    wrong_status = {s: r["status"] for s, r in graded.items() if r["status"] not in STATUS.get(s, {"graded"})}
    assert wrong_status == {}


def test_the_hangs_were_stopped_by_the_tight_limits_and_everyone_else_graded_under_the_first(batch):
    """The limit-bound students were graded by the second run (their results carry its limits), the
    others by the first: the hang tests prove the tight limits stop them."""
    limits = {s: result(batch.out, s).get("limits") for s in batch.rows if "limits" in result(batch.out, s)}
    tight = {"timeout": HANG_TIMEOUT, "memory_mb": MEMORY}
    assert {s for s, lim in limits.items() if lim == tight} == batch_limit_bound
    assert all(lim == {"timeout": TIMEOUT, "memory_mb": MEMORY} for s, lim in limits.items() if s not in batch_limit_bound)


def test_honest_students_keep_full_marks_and_no_more(batch):
    graded = batch.rows
    assert graded["wrong"]["max_score"] == graded["honest"]["max_score"]
    lost = {s: {c: v for c, v in autograded(graded[s]).items() if v != POINTS[c]} for s in HONEST}
    assert {s: cells for s, cells in lost.items() if cells} == {}
    assert {s: graded[s]["max_score"] for s in HONEST} == {s: graded["honest"]["max_score"] for s in HONEST}


def test_the_plain_wrong_implementation_scores_nothing(batch):
    assert autograded(batch.rows["wrong"]) == {c: 0.0 for c in AUTOGRADED}


# honest answers whose probe hung late: what was recorded before the hang is verified and counts
VERIFIED_BEFORE_A_HANG = {"honest-hangs-in-a-late-scenario": "schedule_floor"}  # the scenario that hangs: those before it count


def test_no_attack_scores_more_than_its_plain_wrong_implementation(batch):
    graded = batch.rows
    base = autograded(graded["wrong"])
    gains = {}
    for student in batch.contributed[__name__] - HONEST - set(VERIFIED_BEFORE_A_HANG) - {"wrong"}:
        row = graded[student]
        more = {c: v for c, v in autograded(row).items() if v > base[c]}
        if more:
            gains[student] = f"{sum(autograded(row).values()):g} of {FULL}: " + ", ".join(sorted(more))
    assert gains == {}, (
        "attacks that beat the plain wrong implementation:\n"
        + "\n".join(f"  {s}: {g}" for s, g in sorted(gains.items()))
    )


@pytest.mark.parametrize("student", sorted(delegations(attack_base())))
def test_every_route_to_torch_costs_every_answer_before_any_run(student):
    """The grader's own reading of the submitted notebook (its probed cells, as the worker takes them), short of
    the sandbox: beside a record that would pass everything, the cell costs every answer and says why."""
    assert_costs_every_answer(delegations(attack_base())[student])


def assert_costs_every_answer(nb) -> None:
    """``nb``'s probed cells, as the worker takes them from the submitted notebook, fail every scenario and say why,
    next to the record the reference implementation writes (which alone passes everything): the grader's reading
    of a cell's source, with no sandbox."""
    from test_probe_compare import SEED, lines_of, parse
    from test_probe_compare import student as reference_answers

    from g2c.grading.autograde import graded_cells
    from g2c.grading.compare import decide
    from g2c.grading.worker import probed_sources, sanitized

    submitted = sanitized(as_bytes(nb), graded_cells(SOURCE))
    perfect = parse(lines_of(reference_answers(), SEED))
    assert all(check.passed for check in decide(SPEC, perfect, SEED, {}).values())
    checks = decide(SPEC, perfect, SEED, probed_sources(submitted, SPEC.probed))
    assert not any(check.passed for check in checks.values()) and all("yourself" in c.message for c in checks.values())


def test_delegating_to_torch_gets_nothing_and_says_why(batch):
    graded, out = batch.rows, batch.out
    paid = {s: [c for c in AUTOGRADED if float(graded[s][c] or 0)] for s in DELEGATED}
    assert {s: cells for s, cells in paid.items() if cells} == {}
    for student in DELEGATED:
        reasons = result(out, student).get("reasons", {})
        for cell in AUTOGRADED:
            assert any("yourself" in r for r in reasons.get(cell, [])), (student, cell, reasons)


def test_the_grades_csv_the_results_and_the_gradebook_agree(batch):
    from nbgrader.api import Gradebook

    graded, out = batch.rows, batch.out
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        scores = {s.student.id: s.score for s in gb.assignment_submissions("03b-training")}
    assert set(scores) == set(graded)
    mismatched = {s: (scores[s], r["score"], r["status"]) for s, r in graded.items() if abs(scores[s] - float(r["score"])) > 1e-9}
    assert mismatched == {}, "gradebook score, grades.csv score, status"


def test_nothing_outside_the_job_changed(batch):
    before, after = batch.before, batch.after
    assert after["course"] == before["course"], "files of the graded course changed"
    editing = before["wip"] | after["wip"] | moved(before["head"], after["head"])  # the working tree is shared
    changed = {p for p in before["tracked"].keys() | after["tracked"].keys()
               if before["tracked"].get(p) != after["tracked"].get(p) and p not in editing}
    assert changed == set(), "files of the working tree changed by the batch"
    assert after["submitted"] == before["submitted"], "submitted files changed by the batch"
    assert after["first"] == before["first"], "submitted files of the first run changed by the batch"
    assert still_there(after["g2c"] - before["g2c"]) == set(), "g2c-* left in the host's /tmp or /dev/shm"
    assert not Path(f"/tmp/{TOKEN}-marker").exists()
    assert not any(Path(folder, f"g2c-fill-{i}").exists() for folder in ("/tmp", "/var/tmp", "/dev/shm") for i in range(2))


def test_system_v_ipc_dies_with_each_sandbox(batch):
    before, after, out = batch.before, batch.after, batch.out
    assert after["ipcs"] == before["ipcs"]
    assert not any(f"0x{key:08x}" in after["ipcs"] for key in IPC_KEYS)
    assert "IPC made" in printed(out, "leaves-ipc")
    assert "IPC GONE" in printed(out, "reads-ipc") and "IPC FOUND" not in printed(out, "reads-ipc")


def test_nothing_the_students_started_is_still_running(batch):
    assert our_leftovers() == []
    left = sandbox_uid_processes()
    if left:  # not ours (no TOKEN): another batch on this machine; shown, not failed
        print("processes of sandbox uids from elsewhere:", *left, sep="\n  ")


def test_no_network(batch):
    page = printed(batch.out, "network")
    assert "OPENED" not in page and "SENT" not in page and page.count("BLOCKED") >= 3
    assert batch.listener.connections == 0


def test_the_kernel_reads_writes_and_captures_nothing_it_should_not(batch):
    page = printed(batch.out, "peeks-from-the-kernel")
    assert "BLOCKED instructor environment" in page and "OPENED instructor environment" not in page
    opened = [line for line in page.splitlines() if line.startswith(("OPENED", "FOUND")) or " FOUND" in line]
    assert opened == [], "\n".join(opened)
    for label in ("source notebook", "course git", "gradebook", "other student", "shadow", "shared notes"):
        assert f"BLOCKED read {label}" in page, label
    for label in ("gradebook", "grades file", "source notebook", "other student", "kit", "venv"):
        assert f"BLOCKED write {label}" in page, label


def test_the_reference_and_the_keys_are_nowhere_to_be_found(batch):
    page = printed(batch.out, "steals-the-reference")
    assert "LOOT []" in page, page[-3000:]
    assert "FOUND" not in page, page[-3000:]


def test_forged_kernel_outputs_change_no_point_and_no_verdict_shown(batch):
    out = batch.out
    page = feedback(out, "peeks-from-the-kernel")
    assert autograded(batch.rows["peeks-from-the-kernel"]) == autograded(batch.rows["wrong"])
    summary = page.split("why points were lost", 1)[1][:20000]
    assert "passed: 3 of 3" not in summary


def test_hidden_parts_never_reach_the_kernel_or_the_feedback(batch):
    out = batch.out
    for student in ("honest", "wrong", "peeks-from-the-kernel"):
        page = feedback(out, student)
        assert "BEGIN HIDDEN TESTS" not in page and "graded outside your notebook" not in page, student


def test_huge_output_is_truncated_and_feedback_stays_small(batch):
    out = batch.out
    for student in ("honest-huge-output", "huge-output-in-answer"):
        page = feedback(out, student)
        assert "output truncated" in page, student
        assert len(page) < 2_000_000, student
        assert (out / "autograded" / student / "03b-training" / "training.ipynb").stat().st_size < 2_000_000


def test_fork_bombs_and_full_disks_stay_inside(batch):
    out = batch.out
    forks = re.search(r"fork bomb stopped after (\d+)", printed(out, "fork-bomb"))
    assert forks and int(forks[1]) < 256, "RLIMIT_NPROC (256 per sandbox uid) must stop a fork bomb"
    written = ast.literal_eval(re.search(r"MB written (\{.*?\})", printed(out, "fills-the-disks"))[1])
    home, *others = written  # HOME lives in the sandbox's /tmp
    assert written[home] + written["/tmp"] <= 256 and written["/var/tmp"] <= 64 and written["/dev/shm"] <= 64, written
    assert written[home] > 0, "the sandbox's own /tmp is writable"  # a full disk, not a read-only one


def test_trouble_in_an_ordinary_cell_is_reported_but_costs_nothing(batch):
    out = batch.out
    for student in ("honest-ordinary-hang", "honest-ignores-signals"):
        nb = nbformat.read(out / "autograded" / student / "03b-training" / "training.ipynb", as_version=4)
        assert "CellTimeoutError" in json.dumps(nb.cells[2].outputs), student
    assert "kernel died" in result(out, "honest-ordinary-abort").get("detail", "")


def test_a_second_run_grades_nothing_again(batch):
    out = batch.out
    before = {p.name: p.stat().st_mtime_ns for p in (out / "results").iterdir()}
    again = batch.grade_again()
    assert again.returncode == 0, again.stderr[-2000:]
    failed = {f"{s}.json" for s, r in batch.rows.items() if r["status"] == "grading failed"}  # regraded by design
    assert {n: t for n, t in ((p.name, p.stat().st_mtime_ns) for p in (out / "results").iterdir()) if n not in failed} == \
        {n: t for n, t in before.items() if n not in failed}
    assert {s: r for s, r in rows(out / "grades.csv").items() if f"{s}.json" not in failed} == \
        {s: r for s, r in batch.rows.items() if f"{s}.json" not in failed}


def test_a_run_killed_halfway_resumes_with_what_is_missing(tmp_path):
    submitted, out = tmp_path / "submitted", tmp_path / "out"
    honest = as_bytes(without_demos(solution()))
    for student in ("a", "b"):  # killed after the first result: the second is what is missing
        write_submission(submitted, student, honest)
    command = autograde_command(ROOT, submitted, out, jobs=1)
    env = grading_env()
    before_g2c = g2c_entries()
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    deadline = time.monotonic() + 300
    while not list((out / "results").glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(first.pid, signal.SIGKILL)  # the coordinator alone: its pool and sandboxes must follow it
    first.wait()
    assert our_leftovers() == []
    assert still_there(g2c_entries() - before_g2c) == set()
    done = {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")}
    assert len(done) == 1
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert all((out / "results" / name).stat().st_mtime_ns == mtime for name, mtime in done.items())
    assert {s: r["status"] for s, r in rows(out / "grades.csv").items()} == {"a": "graded", "b": "graded"}
    assert all(json.loads((out / "results" / f"{s}.json").read_text())["score"] == FULL for s in "ab")
    assert not list(out.rglob("*.partial"))
    assert our_leftovers() == []


def test_a_hang_late_in_the_probe_keeps_only_what_was_verified_before_it(batch):
    order = SPEC.scenario_names  # the order the probe runs them in
    for student, hang in VERIFIED_BEFORE_A_HANG.items():
        row = batch.rows[student]
        assert row["status"] == "timeout"
        verified = {g.grade_id for g in SPEC.graded.values() if all(order.index(s) < order.index(hang) for s in g.scenarios)}
        assert {"test_adamw_matches_torch", "test_schedule_cosine"} <= verified and "test_diagnosis" not in verified
        for gid, points in POINTS.items():
            assert float(row[gid]) == (points if gid in verified else 0), (student, gid)
