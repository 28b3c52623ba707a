"""Run the 21-test contract on a notebook's answer cells in a fresh Python process.

The hidden test cells of the assignment call :func:`check`: the tests themselves are
``tests/test_training.py`` (one source, never copied by hand) and they run in a process of
their own, where the student's other cells cannot reach the references (torch.optim.AdamW,
torch.nn.utils.clip_grad_norm_, the closed-form schedule) nor the comparison helpers. The
grader computes the verdicts before the kernel starts (``G2C_VERDICTS``); without it the first
hidden cell computes them once. Under ``g2c autograde`` the run happens in a sandbox of its own
(another uid than the student's kernel, see ``g2c.grading.sandbox``) and the stored verdicts are
the authority for the hidden parts: nothing the kernel does can raise them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from g2c.grading.sandbox import Box, kill_uid, sandboxed

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "tests" / "test_training.py"
KIT_CONFTEST = Path(__file__).with_name("kit_conftest.py")
PREFIX = "PITFALL: "

Verdicts = dict[str, tuple[bool, str]]
_cache: dict[str, Verdicts] = {}


def notebook_digest(notebook: Path) -> str:
    return hashlib.sha256(Path(notebook).read_bytes()).hexdigest()


def plain_message(text: str) -> str:
    """The plain-words part of a failure: no pytest assert rewriting, no code, one paragraph."""
    text = (text or "").strip()
    if text.rstrip(": ") == "NotImplementedError":
        return "not written yet: the answer cell still raises NotImplementedError"
    text = re.sub(r"^\w*(Error|Exception|Failed): ", "", text)
    kept = []
    for line in text.splitlines():
        if line.lstrip().startswith(("assert ", "where ", "+  ", "-  ", "At index", "Mismatched elements")):
            break
        kept.append(line.strip())
    return " ".join(kept).strip()[:600] or "the test failed"


def _limit_memory(memory_mb: int | None):
    if not memory_mb:
        return None

    def apply() -> None:
        import resource

        limit = int(memory_mb) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def run_contract(notebook: Path, timeout: float = 120.0, memory_mb: int | None = None, box: Box | None = None, zygote=None) -> Verdicts:
    """test name -> (passed, plain failure message) for ``notebook``'s answer cells.

    With ``box`` the run is sandboxed in ``box.home`` (forked by ``zygote`` when given, else a new
    interpreter); without, in a temporary folder.
    """
    with tempfile.TemporaryDirectory(prefix="g2c-verdict-", dir=box.home if box else None) as tmp:
        work = Path(tmp)
        (work / "tests").mkdir()
        shutil.copyfile(CONTRACT, work / "tests" / "test_training.py")
        shutil.copyfile(KIT_CONFTEST, work / "conftest.py")
        shutil.copyfile(notebook, work / "training.ipynb")
        (work / "pytest.ini").write_text("[pytest]\n")  # keep the course's pytest settings out
        report = work / "report.xml"
        env = {**os.environ, "G2C_NOTEBOOK": str(work / "training.ipynb"), "PYTHONDONTWRITEBYTECODE": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        env.pop("G2C_TRAINING_MODULE", None)
        args = ["-q", "-p", "no:cacheprovider", f"--junitxml={report}", "tests/test_training.py"]
        command, limit = [sys.executable, "-m", "pytest", *args], _limit_memory(memory_mb)
        sandbox = Box(box.uid, box.home, box.hide, memory_mb, {"G2C_NOTEBOOK": env["G2C_NOTEBOOK"]}, quiet=True) if box else None
        if zygote and sandbox:
            finished = zygote.run("pytest", args, sandbox, work, timeout) is not None
        else:
            if sandbox:
                command, limit = sandboxed(command, sandbox), None
            try:
                subprocess.run(command, cwd=work, env=env, capture_output=True, timeout=timeout, check=False, preexec_fn=limit)
                finished = True
            except subprocess.TimeoutExpired:
                finished = False
        if not finished:
            return {name: (False, f"the answer cells did not finish the tests within {timeout:.0f} s (an endless loop?)") for name in contract_names()}
        if box:
            kill_uid(box.uid)  # anything the answer cells left running
        if not report.exists():
            return {name: (False, "the answer cells could not be loaded") for name in contract_names()}
        verdicts: Verdicts = {}
        try:
            with open(report, "rb", opener=lambda path, flags: os.open(path, flags | os.O_NOFOLLOW)) as f:  # written by student code's uid
                cases = list(ET.parse(f).getroot().iter("testcase"))
        except (OSError, ET.ParseError):
            cases = []
        for case in cases:
            problem = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
            message = "" if problem is None else plain_message(problem.get("message") or problem.text or "")
            verdicts[case.get("name")] = (problem is None, message)
        for name in contract_names():
            verdicts.setdefault(name, (False, "the test could not run"))
        return verdicts


def contract_names() -> list[str]:
    return re.findall(r"^def (test_\w+)", CONTRACT.read_text(), re.M)


def verdicts(notebook: Path | None = None) -> Verdicts:
    """Verdicts for ``notebook`` (default ``G2C_NOTEBOOK`` or ./training.ipynb), computed once.

    In a grading sandbox ``G2C_VERDICTS_FILE`` names the verdicts the grader computes meanwhile.
    """
    if os.environ.get("G2C_VERDICTS_FILE"):
        digest = os.environ["G2C_VERDICTS_FILE"]
    else:
        notebook = Path(notebook or os.environ.get("G2C_NOTEBOOK") or "training.ipynb")
        if not notebook.exists():
            raise AssertionError(PREFIX + f"the grader cannot find the notebook {notebook}")
        digest = notebook_digest(notebook)
    if digest not in _cache:
        stored = Path(os.environ.get("G2C_VERDICTS_FILE") or Path(os.environ.get("G2C_VERDICTS", "/nonexistent")) / f"{digest}.json")
        deadline = time.monotonic() + float(os.environ.get("G2C_VERDICTS_WAIT", "0"))
        while not stored.exists() and time.monotonic() < deadline:  # the grader is computing them
            time.sleep(0.05)
        if stored.exists():
            _cache[digest] = {k: tuple(v) for k, v in json.loads(stored.read_text()).items()}
        elif os.environ.get("G2C_VERDICTS_FILE"):
            raise AssertionError(PREFIX + "the grader's run of the tests did not finish in time")
        else:
            _cache[digest] = run_contract(notebook)
    return _cache[digest]


def store_verdicts(notebook: Path, path: Path, timeout: float = 120.0, memory_mb: int | None = None, box: Box | None = None, zygote=None) -> Verdicts:
    """Compute ``notebook``'s verdicts now (outside any kernel) and store them at ``path``."""
    results = run_contract(notebook, timeout, memory_mb, box, zygote)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(results, indent=1, sort_keys=True))
    partial.chmod(0o644)
    partial.replace(path)  # atomic: a waiting reader never sees half a file
    return results


def check(*tests: str) -> None:
    """Fail with the plain-words pitfall of every named contract test that did not pass."""
    results = verdicts()
    failed = [results.get(name, (False, f"{name} did not run"))[1] for name in tests if not results.get(name, (False, ""))[0]]
    if failed:
        raise AssertionError("\n".join(PREFIX + message for message in dict.fromkeys(failed)))
