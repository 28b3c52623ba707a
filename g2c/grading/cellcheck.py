"""What a probed cell may use, read from its source (parsed, never run) before its data counts.

torch holds a correct AdamW, clipping and schedule, and a probed cell shares its process with the
probe harness, so a cell that can reach torch's optimizers, the harness or code it builds at run
time could hand back numbers it did not compute. What a correct answer needs is small: tensor
operations, math and plain Python. So this is an allow-list, not a list of known tricks:

- imports: ``math`` and ``torch`` (``import``), and names from ``typing``, ``collections.abc``
  and ``__future__``;
- a module is only ever the root of a dotted name (``torch.linalg.vector_norm``): never a value
  (passed, assigned, matched, returned), never rebound, never written into;
- each such dotted name is resolved here, step by step, on the real modules: it may pass through
  ``torch``, ``torch.linalg`` and ``math`` only, names nothing private but ``torch._foreach_*``
  and nothing of torch's optimizers, schedulers or clipping;
- any other attribute (``p.grad``, ``self.lr``) is public, or private on ``self``/``cls`` where
  those are a method's own first parameter and never rebound; no dunder but ``__init__``,
  ``__name__``, ``__qualname__``, ``__class__`` and ``__doc__``, no frame or code attribute, also
  not as a class pattern's keyword;
- no builtin that reaches beyond the cell (``getattr``, ``exec``, ``globals``, ``open``...), no
  dunder name, no annotation evaluator, no string naming torch's optimizers;
- a cell too deep for the parser is refused (the probe could still compile it).

A cell is read against the namespace it runs in: the probe runs the setup preamble and every probed
cell, in order, in one namespace, so a module bound there before the cell (the preamble's ``torch``,
``import torch as t`` in an earlier cell) is a module in the cell too (``modules_bound``), though the
cell never imports it. The probe's run-time walls (``g2c.grading.sandbox.walls``) hold where this misses.
"""

from __future__ import annotations

import ast
import importlib
import re
import types
from collections.abc import Iterable, Mapping
from typing import Any

IMPORTABLE = {"math", "torch"}  # import X
IMPORTABLE_FROM = {"math", "torch", "typing", "collections.abc", "__future__"}  # from X import name
# typing's names that build code or read the caller's frame when used (namedtuple's exec, TypeVar's module lookup):
# the probe's audit hook refuses both at run time, so the reading refuses them first, with a reason the student can act on.
BUILDS_CODE = {"NamedTuple", "TypedDict", "TypeVar", "NewType", "ParamSpec", "TypeVarTuple"}
PASSABLE = {"math", "torch", "torch.linalg"}  # the modules a dotted name may pass through
TORCH_WORK = ("torch.optim", "torch.nn", "torch.distributed", "torch.ao")  # where torch keeps optimizers and clipping
TORCH_PARTS = {"optim", "lr_scheduler", "clip_grad_norm_", "clip_grad_norm", "clip_grad_value_", "clip_grads_with_norm_",
               "get_total_norm", "clip_grad", "_fused_adamw_", "_fused_adam_", "_single_tensor_adamw", "_multi_tensor_adamw"}
ESCAPES = {"__import__", "importlib", "exec", "eval", "compile", "globals", "locals", "vars", "open", "breakpoint", "input",
           "memoryview", "getattr", "setattr", "delattr", "get_type_hints", "ForwardRef", "evaluate_forward_ref", "sys",
           "gc", "inspect", "ctypes", "builtins"}
FRAMES = {"tb_frame", "tb_next", "f_back", "f_globals", "f_locals", "f_builtins", "f_code", "gi_frame", "gi_code",
          "cr_frame", "ag_frame", "co_code", "gi_yieldfrom", "cr_await", "ag_await"}
HARMLESS_DUNDERS = {"__init__", "__name__", "__qualname__", "__class__", "__doc__"}  # no door: a type, names, text
# attribute names that lead out of the cell from any object (model.eval() is a method, not the builtin)
DOORS = {"sys", "os", "gc", "modules", "builtins", "inspect", "ctypes", "importlib", "get_type_hints", "ForwardRef",
         "evaluate_forward_ref"}


def refused(source: str, modules: Mapping[str, str] | None = None) -> str | None:
    """What the cell may not use, as a dotted name or a short phrase; None when it is clean or does
    not parse (the probe then reports the cell's SyntaxError). ``modules``: the names that are
    modules before the cell runs (name -> module, see ``modules_bound``)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    except (RecursionError, MemoryError):
        return "code nested too deeply for the grader to read"
    try:
        return _Reader(tree, modules or {}).first()
    except RecursionError:
        return "code nested too deeply for the grader to read"


def modules_bound(sources: Iterable[str]) -> dict[str, str]:
    """name -> module of every name that ``sources`` (run in order in one namespace: the preamble, then
    earlier cells) bind to a module by an import, wherever it stands: what a later cell finds there."""
    modules: dict[str, str] = {}
    for source in sources:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue  # it never ran: the probe reports its error
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:  # import a.b binds a (the package), import a.b as c binds c (a.b)
                    root = alias.name.partition(".")[0]
                    modules[alias.asname or root] = alias.name if alias.asname else root
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                for alias in node.names:
                    if alias.name != "*" and _is_module(f"{node.module}.{alias.name}"):
                        modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return modules


def _is_module(name: str) -> bool:
    """Whether ``name`` is a module (``from torch import linalg``), by the real one if it is loaded or loads."""
    try:
        importlib.import_module(name)
        return True
    except Exception:
        return False


class _Reader:
    """Walks one cell: module aliases first (imports), then every node."""

    def __init__(self, tree: ast.Module, modules: Mapping[str, str]) -> None:
        self.tree = tree
        self.modules: dict[str, str] = dict(modules)  # local name -> the module it names (the namespace's, then the cell's)
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node

    def first(self) -> str | None:
        imports = [node for node in ast.walk(self.tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
        for node in imports:  # every alias known before any use is read, wherever the import stands
            if found := self._import(node):
                return found
        for node in ast.walk(self.tree):
            if found := self._bound(node):
                return found
            if isinstance(node, ast.Attribute):
                found = self._attribute(node)
            elif isinstance(node, ast.Name):
                found = self._name(node)
            elif isinstance(node, ast.MatchClass):
                found = next((a for a in node.kwd_attrs if _bad_attribute(a, private_ok=False)), None)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                found = self._parameters(node)
            elif isinstance(node, (ast.Global, ast.Nonlocal)):
                found = next((n for n in node.names if n in self.modules or n in ("self", "cls")), None)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                found = _forbidden_text(node.value)
            else:
                found = None
            if found:
                return found
        return None

    def _bound(self, node: ast.AST) -> str | None:
        """A module name, ``self`` or ``cls`` bound by anything but its import or a method's first parameter."""
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(  # its first parameter is no instance
                    isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list):
                names += [a.arg for a in (node.args.posonlyargs + node.args.args)[:1]]
        elif isinstance(node, ast.ExceptHandler):
            names = [node.name]
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)):
            names = [node.name]
        elif isinstance(node, ast.MatchMapping):
            names = [node.rest]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.asname or alias.name for alias in node.names if (alias.asname or alias.name) in ("self", "cls")]
        else:
            return None
        return next((f"{name} rebound" for name in names if name in self.modules or name in ("self", "cls")), None)

    # ---------------------------------------------------------------- imports and module names

    def _import(self, node: ast.Import | ast.ImportFrom) -> str | None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name not in IMPORTABLE:
                    return alias.name
                self.modules[alias.asname or alias.name] = alias.name
            return None
        module = "." * node.level + (node.module or "")
        if module not in IMPORTABLE_FROM:
            return module
        for alias in node.names:
            if alias.name == "*" or alias.name.startswith("_") or alias.name in ESCAPES:
                return f"{module}.{alias.name}"
            if module == "typing" and alias.name in BUILDS_CODE:
                return f"typing.{alias.name} (it builds code at run time)"
            found = _resolved(module, [alias.name]) if module in ("math", "torch") else None
            if isinstance(found, str):
                return found
            if isinstance(found, types.ModuleType):
                self.modules[alias.asname or alias.name] = found.__name__
        return None

    def _name(self, node: ast.Name) -> str | None:
        if node.id in ESCAPES or (node.id.startswith("__") and node.id.endswith("__") and node.id not in HARMLESS_DUNDERS):
            return node.id
        if node.id in self.modules:
            parent = self.parents.get(node)
            if not isinstance(node.ctx, ast.Load):
                return f"{self.modules[node.id]} (a module rebound)"
            if not (isinstance(parent, ast.Attribute) and parent.value is node):
                return f"{self.modules[node.id]} as a value (a module may only start a dotted name)"
        if node.id in ("self", "cls") and not isinstance(node.ctx, ast.Load):
            return f"{node.id} rebound"
        return None

    def _parameters(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> str | None:
        """``self``/``cls`` only as a method's first parameter: there they are the instance or class."""
        args = node.args
        every = [*args.posonlyargs, *args.args, *args.kwonlyargs, *filter(None, [args.vararg, args.kwarg])]
        method = not isinstance(node, ast.Lambda) and isinstance(self.parents.get(node), ast.ClassDef)
        first = (args.posonlyargs + args.args)[:1]
        for arg in every:
            if arg.arg in self.modules:
                return f"{self.modules[arg.arg]} rebound"
            if arg.arg in ("self", "cls") and not (method and first and arg is first[0]):
                return f"{arg.arg} as a parameter that is not a method's first"
        return None

    # ---------------------------------------------------------------- attributes

    def _attribute(self, node: ast.Attribute) -> str | None:
        chain, root = _chain(node)
        if isinstance(root, ast.Name) and root.id in self.modules:
            if _outermost(node, self.parents) is not node:
                return None  # the whole chain is read once, from its outermost attribute
            if not isinstance(node.ctx, ast.Load):
                return f"{self.modules[root.id]}.{'.'.join(chain)} (a module written into)"
            found = _resolved(self.modules[root.id], chain)
            if isinstance(found, types.ModuleType):
                return f"{found.__name__} as a value (a module may only start a dotted name)"
            return found if isinstance(found, str) else None
        own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
        return _bad_attribute(node.attr, private_ok=own)


def _chain(node: ast.Attribute) -> tuple[list[str], ast.AST]:
    """``a.b.c`` -> (["b", "c"], the node of ``a``)."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    return names[::-1], node


def _outermost(node: ast.Attribute, parents: dict) -> ast.Attribute:
    while isinstance(parents.get(node), ast.Attribute) and parents[node].value is node:
        node = parents[node]
    return node


def _bad_attribute(name: str, *, private_ok: bool) -> str | None:
    if name in FRAMES or name in DOORS or name in TORCH_PARTS:
        return name
    if name.startswith("__") and name.endswith("__"):
        return None if name in HARMLESS_DUNDERS else name
    if name.startswith("_") and not private_ok:
        return name
    return None


def _resolved(module: str, chain: list[str]) -> Any:
    """The object ``module.chain`` names, on the real modules, or the dotted name of the first step a
    cell may not take (a str). An attribute that does not exist is left to the probe (AttributeError)."""
    whole = ".".join([module, *chain])  # what the refusal names: the whole dotted name, as the cell wrote it
    if module not in PASSABLE:  # bound before the cell by an import the cell could not make (os, pickle...)
        return whole
    obj: Any = importlib.import_module(module)
    for name in chain:
        if name.startswith("_") and not (module == "torch" and name.startswith("_foreach_")):
            return whole
        if name in TORCH_PARTS or (name.startswith("__") and name not in HARMLESS_DUNDERS):
            return whole
        try:
            obj = getattr(obj, name)
        except Exception:
            return None
        if isinstance(obj, types.ModuleType) and obj.__name__ not in PASSABLE:
            return whole
        if str(getattr(obj, "__module__", "") or "").startswith(TORCH_WORK):
            return whole
    return obj


def _forbidden_text(text: str) -> str | None:
    """A string naming torch's optimizers or an escape; prose that mentions torch.optim.AdamW is not one."""
    stripped = text.strip()
    if not re.fullmatch(r"[\w.]+", stripped):
        return None
    if stripped in TORCH_PARTS or stripped in ESCAPES or stripped.startswith(("torch.optim", "torch.nn.utils.clip")):
        return stripped
    return None
