"""Run student code walled off: a root file system of its own, its own namespaces and uid.

The grading zygote (``g2c.grading.sandbox.zygote``) forks a child per run that enters new mount, PID,
network, IPC and UTS namespaces and calls :func:`init` as PID 1. ``init`` builds a new root
from an allow-list and pivots into it:

- read-only: the system folders (/usr, /etc and the merged-/usr links), the Python base
  installation, the virtual environment, and the student's *kit* build of ``g2c`` (solution
  regions replaced by stubs, no ``g2c.grading``) mounted where ``g2c`` lives;
- fresh and empty: /tmp (the run's working folder ``HOME`` lives there), /var/tmp, /dev/shm,
  a /dev with only null, zero, full, random and urandom, and /proc of the new PID namespace.

Nothing else of the host exists inside: no course repository, no other copy of it, no other
job's folders, no gradebook. The run's working folder lives in the sandbox's own /tmp, which
vanishes with the mount namespace, so root never opens, walks or removes a path the student
could have written. What the run produces leaves through a descriptor opened before any student
code ran (``output``), and the init, which no student code can touch, writes ``report``.

``init`` then forks the command as the job's unprivileged uid (no capabilities, no new
privileges, resource limits) and reaps. When the command ends, PID 1 returns and the kernel
kills whatever the student started. The network namespace has no interface up; IPC objects
(System V shared memory, semaphores, message queues) die with the IPC namespace.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from g2c.grading.sandbox.limits import MAX_FILE_BYTES
from g2c.grading.sandbox.syscalls import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    PR_SET_NO_NEW_PRIVS,
    SANDBOX_NAMESPACES,
    mount,
    open_no_follow,
    pivot_root_here,
    prctl,
)

UID_BASE = 200_000  # far above any login account; never in /etc/passwd
HOME = Path("/tmp/work")  # inside the sandbox: the run's cwd, HOME and TMPDIR
SYSTEM = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
DEVICES = ("null", "zero", "full", "random", "urandom")
KEPT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MPLBACKEND",
                    "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_ADDOPTS", "PYDEVD_DISABLE_FILE_VALIDATION")


@dataclass
class Box:
    """What one sandboxed run may see and use."""

    uid: int  # the unprivileged uid the run has
    kit: Path  # the student's build of the g2c package, mounted where g2c lives
    memory_mb: int | None  # address-space limit of each process in MB (None: no limit)

    def to_json(self) -> dict:
        """Plain data for the request to the zygote; :meth:`from_json` reads it back."""
        return {**asdict(self), "kit": str(self.kit)}

    @classmethod
    def from_json(cls, data: dict) -> Box:
        return cls(**{**data, "kit": Path(data["kit"])})


@dataclass(frozen=True)
class RunFacts:
    """What the sandbox's init tells the grader about a run, through a file no student code can reach."""

    max_rss_mb: float = 0.0  # the run's peak memory
    leftovers: int = 0  # processes it left running (killed with its sandbox)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def read(cls, path: Path) -> RunFacts:
        """The facts in ``path``; none (zeros) when the init wrote nothing readable."""
        try:
            with open(path, "rb", opener=open_no_follow) as f:
                data = json.loads(f.read(4096))
            return cls(float(data["max_rss_mb"]), int(data["leftovers"]))
        except (OSError, ValueError, KeyError, TypeError):
            return cls()


def job_uids(slot: int) -> tuple[int, int]:
    """Two uids per grading process: one for the notebook run, one for the probe."""
    base = UID_BASE + 2 * (slot % 400_000)
    return base, base + 1


def isolation_available() -> str | None:
    """None when sandboxing works here, else why not: a child process enters the sandbox's namespaces
    with the very call the zygote makes."""
    if os.geteuid() != 0:
        return "grading in a sandbox needs root (each run gets a uid and namespaces of its own)"
    code = f"from g2c.grading.sandbox.syscalls import unshare; unshare({SANDBOX_NAMESPACES})"
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"entering new namespaces failed: {probe.stderr.strip()[-200:]}"


# ---------------------------------------------------------------- inside the namespaces (PID 1)


def _bind_read_only(source: str, target: Path) -> None:
    """Bind ``source`` (a path or /proc/self/fd/N) at ``target``, read-only, with no setuid."""
    if os.path.isdir(source):
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    mount(source, target, None, MS_BIND | MS_REC)
    mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)


def _python_paths() -> list[Path]:
    """The base interpreter's installation and this virtual environment."""
    return sorted({Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()})


def _package_path() -> Path:
    """Where ``g2c`` is imported from (an editable install: the repository's folder)."""
    import g2c

    return Path(g2c.__file__).resolve().parent


def build_root(box: Box) -> None:
    """Make the allow-listed root described in the module docstring and pivot into it."""
    # Descriptors first: the venv or the kit may live under /tmp, which is about to be covered.
    sources = {path: os.open(path, os.O_PATH | os.O_DIRECTORY) for path in _python_paths()}
    sources[_package_path()] = os.open(box.kit, os.O_PATH | os.O_DIRECTORY)
    new = Path("/tmp")  # our mount namespace's view only: the host's /tmp is untouched
    mount("tmpfs", new, "tmpfs", MS_NOSUID, "size=16m,mode=0755")
    for name in SYSTEM:
        if os.path.islink(name):
            os.symlink(os.readlink(name), new / name.lstrip("/"))
        elif os.path.isdir(name):
            _bind_read_only(name, new / name.lstrip("/"))
    dev = new / "dev"
    dev.mkdir()
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
    for name in DEVICES:
        (dev / name).touch()
        mount(f"/dev/{name}", dev / name, None, MS_BIND)
    for name, target in {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                         "stderr": "/proc/self/fd/2"}.items():
        os.symlink(target, dev / name)
    for folder, size in ((dev / "shm", "64m"), (new / "tmp", "256m"), (new / "var" / "tmp", "64m")):
        folder.mkdir(parents=True)
        mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777")
    # After the fresh tmpfs mounts: a venv or repository under /tmp is bound on top of them, not hidden.
    for path, fd in sorted(sources.items()):  # the package after the venv that may hold it
        _bind_read_only(f"/proc/self/fd/{fd}", new / str(path).lstrip("/"))
        os.close(fd)
    (new / "proc").mkdir()
    mount("proc", new / "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chdir(new)
    pivot_root_here()
    os.chdir("/")
    mount("none", "/", None, MS_REMOUNT | MS_NOSUID | MS_RDONLY)  # only the tmpfs mounts stay writable
    HOME.mkdir(mode=0o700)
    os.chown(HOME, box.uid, box.uid)


def _become(uid: int, memory_mb: int | None) -> None:
    """In the child: resource limits, no new privileges, then drop root for good."""
    limits = {resource.RLIMIT_CORE: 0, resource.RLIMIT_FSIZE: MAX_FILE_BYTES, resource.RLIMIT_NOFILE: 1024,
              resource.RLIMIT_NPROC: 256}  # processes are counted per uid: a fork bomb stops here
    if memory_mb:
        limits[resource.RLIMIT_AS] = memory_mb * 2**20
    for kind, value in limits.items():
        resource.setrlimit(kind, (value, value))
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _other_processes() -> int:
    """Processes in this PID namespace besides its init: what the student left running."""
    alive = 0
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and entry != "1" and Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive += 1
        except (OSError, IndexError):
            pass  # gone meanwhile
    return alive


def init(box: Box, run: Callable[[], None], output: int, report: int) -> int:
    """Be the sandbox's PID 1: build the root, then ``run()`` in a child as the box's uid; reap.

    ``output`` becomes the child's stdout (its only way out); ``report`` stays the init's: it
    receives the child's :class:`RunFacts`. Returns the child's exit code.
    """
    build_root(box)
    env = {name: os.environ[name] for name in KEPT_ENVIRONMENT if name in os.environ}
    env.update(HOME=str(HOME), TMPDIR=str(HOME), MPLCONFIGDIR=str(HOME / ".mpl"), IPYTHONDIR=str(HOME / ".ipython"))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pid = os.fork()
    if pid == 0:
        code = 127
        try:
            os.close(report)
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(output, 1)
            os.dup2(devnull, 2)
            os.closerange(3, 65536)
            _become(box.uid, box.memory_mb)
            os.chdir(HOME)
            os.environ.clear()
            os.environ.update(env)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            run()
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(output)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    while True:  # reap orphans until the command itself ends
        try:
            done, status, usage = os.wait4(-1, 0)
        except ChildProcessError:
            return 1
        if done == pid:
            code = os.waitstatus_to_exitcode(status)
            os.write(report, RunFacts(usage.ru_maxrss / 1024, _other_processes()).to_json())
            return code & 0xFF
