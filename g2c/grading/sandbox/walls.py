"""The probe's run-time walls: what holds when the grader's reading of a cell (cellcheck) misses.

``arm`` runs in the probe's process once the harness has compiled everything it will run and
before any student code (the setup preamble included). It is for the probe only: the notebook run
decides nothing. Two walls, both for the life of the process (it ends after the record):

1. **Stubs.** Every function and class method of torch's optimizers, schedulers and clipping
   (``torch.optim`` and its modules, ``torch.nn.utils.clip_grad``) is neutered *in place*: its code
   object is swapped for one that raises, so every reference to it (a module attribute, a class
   reached by ``__subclasses__``, a decorator's closure, ``__wrapped__``) reaches the stub. The fused
   optimizer kernels (``aten::_fused_adamw_`` and its kind, in every overload) get a CPU kernel that
   raises, so the dispatcher stops them whatever the route (``torch._fused_adamw_``,
   ``torch.ops.aten``, ``torch._C``). ``torch._foreach_*`` stays: an honest answer may use it.
2. **An audit hook** (``sys.addaudithook``: it cannot be removed) that refuses the events below.
   Only what the harness itself compiled may be executed; nothing new may be loaded, decoded or
   built into code; no frame, no file, no process, no socket.

The hook holds everything it uses (its tables copied, the builtins it calls, the harness's code, the
kernels' library) where no cell reaches: rewriting this module or the builtins changes nothing.
Both raise ``RuntimeError("... is not available while grading")``: the probe records it as the
cell's or scenario's error, the grader sees data unlike the reference's, the part scores nothing.
This module imports nothing but the standard library and torch (the sandbox side, see probe.py).
"""

from __future__ import annotations

import functools
import importlib
import sys
import types
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.library

MESSAGE = "not available while grading"

# Modules whose own functions and classes are stubbed (by prefix of a __module__); imported here so
# the zygote's import of the probe loads them before it forks, and none is loaded under the hook.
TORCH_WORK = ("torch.optim", "torch.nn.utils.clip_grad")
# torch._subclasses.schema_check_mode: torch imports it on the first dispatch once a Python kernel is registered (below).
LOADED = ("torch.optim", "torch.optim.lr_scheduler", "torch.optim._functional", "torch.optim.swa_utils",
          "torch.nn.utils.clip_grad", "torch._subclasses.schema_check_mode")
# aten operators that are whole optimizer steps (torch 2.13: each with its in-place, functional and out overloads)
FUSED_OPS = ("_fused_adamw_", "_fused_adamw", "_fused_adam_", "_fused_adam", "_fused_sgd_", "_fused_sgd",
             "_fused_adagrad_", "_fused_adagrad")
DEVICES = ("torch.cuda", "torch.xpu", "torch.mtia")  # whose seeding torch.manual_seed queues (see _quiet_device_seeding)

for _name in LOADED:
    importlib.import_module(_name)

# ---------------------------------------------------------------- the audit hook's refusals, and why
# Each event is refused outright once armed, with its reason (the report's list; tests read this table).
REFUSED = {
    "compile": "builds code at run time, out of the grader's sight (the harness compiled every cell before)",
    "import": "loads a module the probe had not loaded (every module it needs is loaded before arming)",
    "pickle.find_class": "unpickling reaches any object of any module by name (torch.optim.adamw.adamw)",
    "marshal.loads": "turns bytes into code objects",
    "marshal.load": "turns a file into code objects",
    "code.__new__": "builds a code object (types.CodeType, code.replace)",
    "function.__new__": "makes a function of a code object (types.FunctionType)",
    "sys._getframe": "a frame: the harness's locals, its record descriptor, its scenario table",
    "sys._current_frames": "every thread's frame",
    "sys._current_exceptions": "every thread's exception, with its frames",
    "sys.settrace": "a tracer sees (and may change) every frame, the harness's included",
    "sys.setprofile": "a profiler sees every call, the harness's included",
    "sys.addaudithook": "a hook of the student's would watch the harness",
    "gc.get_objects": "every object of the process, the harness's included",
    "gc.get_referrers": "the objects that hold one: the harness's frames and tables",
    "gc.get_referents": "the objects one holds",
    "open": "a file: the sandbox's files, or a descriptor the record goes to",
    "builtins.input": "reads stdin",
    "builtins.breakpoint": "starts a debugger",
    "_thread.start_new_thread": "a thread that outlives the scenario's time limit",
    "signal.pthread_kill": "signals the harness's thread",
}
# Refused by prefix: foreign code, processes, the file system, the network.
REFUSED_PREFIXES = {
    "ctypes.": "raw memory and native calls (dlopen, addressof, cdata, call_function)",
    "os.": "processes (system, exec, spawn, fork, kill), the file system (listdir, remove, chmod...), the environment",
    "subprocess.": "a process",
    "pty.": "a process on a terminal",
    "socket.": "the network",
    "shutil.": "the file system",
    "tempfile.": "the file system",
    "glob.": "the file system",
    "mmap.": "shared memory",
    "fcntl.": "descriptors",
    "resource.": "the process's limits",
    "syslog.": "the host's log",
    "sqlite3.": "a database (and its native extensions)",
    "urllib.": "the network",
    "http.": "the network",
    "webbrowser.": "a process",
}
FRAME_ATTRIBUTES = {"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_code", "gi_code", "cr_code", "ag_code"}
WHY_ATTRIBUTES = {
    "object.__getattr__": f"frame and code attributes of running code ({', '.join(sorted(FRAME_ATTRIBUTES))}); "
                          "a function's __code__ stays readable (torch.no_grad() reads it when it decorates)",
    "object.__setattr__": "swaps a function's code or defaults (__code__, __defaults__, __kwdefaults__): "
                          "torch's functions, the harness's; a class attribute write raises no event (the static check's)",
    "object.__delattr__": "the same, deleting",
    "exec": "runs a code object the harness did not compile (exec, eval of built code)",
}


def audit_hook(harness: frozenset[int]) -> Callable[[str, tuple], None]:
    """The hook: raises for the events above; ``harness`` are the ids of the code objects the harness
    will exec (kept alive by the caller, so an id is that object). Everything it uses is bound here,
    at arming: the tables copied, the builtins it calls captured. Nothing a cell can reach (this
    module's globals, the builtins module) changes what it refuses."""
    refused, prefixes, frames = frozenset(REFUSED), tuple(REFUSED_PREFIXES), frozenset(FRAME_ATTRIBUTES)

    def hook(event: str, args: tuple, _id: Callable = id, _len: Callable = len, _error: type = RuntimeError,
             _message: str = MESSAGE) -> None:
        why = None
        if event in refused or event.startswith(prefixes):
            why = event
        elif event == "exec":
            why = None if args and _id(args[0]) in harness else "exec of code the grader did not compile"
        elif event == "object.__getattr__":
            why = f"{args[1]} (a frame)" if _len(args) > 1 and args[1] in frames else None
        elif event in ("object.__setattr__", "object.__delattr__"):
            why = f"writing function.{args[1]}" if _len(args) > 1 else "writing a function's attribute"
        if why is not None:
            raise _error(f"{why} is {_message}")

    return hook


# ---------------------------------------------------------------- arming


_armed: list[bool] = []  # once per process: a second hook would be refused by the first


def arm(harness_code: Iterable[types.CodeType]) -> None:
    """Stub torch's optimizers, clipping and fused kernels, then add the audit hook; ``harness_code``
    are the code objects the harness will exec (its cells, compiled before any of them ran)."""
    if _armed:
        raise RuntimeError("the grading walls are already armed")
    stub_torch_work()
    _quiet_device_seeding()
    keep = (tuple(harness_code), _stub_fused_kernels())  # alive for the process: the codes' ids, the kernels' library
    hook = audit_hook(frozenset(id(code) for code in keep[0]))
    sys.addaudithook(lambda event, args, _hook=hook, _keep=keep: _hook(event, args))
    _armed.append(True)


def stub_torch_work() -> list[str]:
    """Neuter every function of TORCH_WORK in place; the qualified names neutered."""
    done = []
    for fn in _work_functions():
        fn.__code__ = _stub_code(f"{fn.__module__}.{fn.__qualname__}", len(fn.__code__.co_freevars))
        done.append(f"{fn.__module__}.{fn.__qualname__}")
    return done


def _ours(obj: Any) -> bool:
    return str(getattr(obj, "__module__", "") or "").startswith(TORCH_WORK)


def _work_functions() -> Iterator[types.FunctionType]:
    """TORCH_WORK's functions: its modules' own functions and classes' methods, and whatever they
    wrap (``__wrapped__``, a decorator's closure), each once."""
    todo: list[Any] = [value for name, module in list(sys.modules.items()) if module is not None and name.startswith(TORCH_WORK)
                       for value in list(vars(module).values())]
    seen: set[int] = set()
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (staticmethod, classmethod)):
            todo.append(obj.__func__)
        elif isinstance(obj, property):
            todo += [obj.fget, obj.fset, obj.fdel]
        elif isinstance(obj, functools.partial):
            todo.append(obj.func)
        elif isinstance(obj, type) and _ours(obj):
            todo += list(vars(obj).values())
        elif isinstance(obj, types.FunctionType) and _ours(obj):
            todo.append(vars(obj).get("__wrapped__"))
            todo += [_content(cell) for cell in obj.__closure__ or ()]
            yield obj


def _content(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


def _stub_code(name: str, free: int) -> types.CodeType:
    """The code of a function that raises "<name> is not available while grading", with ``free``
    free variables (a function's code may only be swapped for one with as many)."""
    return _code_of(f"raise RuntimeError({f'{name} is {MESSAGE}'!r})", free)


def _quiet_device_seeding() -> None:
    """torch.manual_seed queues each device's seeding, with traceback.format_stack() (a frame, source
    files: refused), until that device starts; in the probe none is available, none ever starts."""
    for name in DEVICES:
        module = sys.modules.get(name)
        lazy = getattr(module, "_lazy_call", None)
        try:
            absent = not module.is_available()  # type: ignore[union-attr]
        except Exception:
            absent = True
        if isinstance(lazy, types.FunctionType) and absent:
            lazy.__code__ = _code_of("return None", len(lazy.__code__.co_freevars))


@functools.cache
def _code_of(statement: str, free: int) -> types.CodeType:
    """The code of a function of any arguments that runs ``statement``, with ``free`` free variables."""
    cells = [f"_{i}" for i in range(free)]
    source = ("def _outer():\n" + "".join(f"    {c} = None\n" for c in cells)
              + "    def stub(*args, **kwargs):\n" + (f"        {', '.join(cells)}\n" if cells else "")
              + f"        {statement}\n    return stub\n")
    namespace: dict[str, Any] = {}
    exec(compile(source, "<grading wall>", "exec"), namespace)
    return namespace["_outer"]().__code__


def _stub_fused_kernels() -> torch.library.Library:
    """A CPU kernel that raises for every overload of FUSED_OPS; the library must stay alive."""
    library = torch.library.Library("aten", "IMPL")
    with warnings.catch_warnings():  # "overriding a previously registered kernel": that is the point
        warnings.simplefilter("ignore")
        for op in FUSED_OPS:
            packet = getattr(torch.ops.aten, op, None)
            for overload in packet.overloads() if packet is not None else ():
                name = op if overload == "default" else f"{op}.{overload}"
                library.impl(name, _refuse_kernel(f"torch.ops.aten.{name}"), "CPU")
    _unlisted(library)
    return library


def _unlisted(library: torch.library.Library) -> None:
    """Detach the finalizer torch.library registers for ``library``: weakref.finalize's registry,
    reachable from any module, would hand a cell the handle whose reset() undoes the override."""
    for finalizer, info in list(weakref.finalize._registry.items()):  # type: ignore[attr-defined]
        if info.weakref() is library:
            finalizer.detach()


def _refuse_kernel(name: str) -> Callable[..., Any]:
    def kernel(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{name} is {MESSAGE}")

    return kernel
