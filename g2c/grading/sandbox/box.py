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

``init`` then forks the command as the run's own unprivileged uid (``run_uid``: no other run of the
batch has it), with no capabilities, no new privileges, resource limits and a seccomp filter
(``syscalls.deny_syscalls``: kernel keyrings, which belong to a uid and to no namespace, ptrace, bpf,
perf, io_uring, mounts and new namespaces are refused), and reaps. When the command ends, PID 1
returns and the kernel kills whatever the student started. The network namespace has no interface
up; IPC objects (System V shared memory, semaphores, message queues) die with the IPC namespace.

Memory has two walls: RLIMIT_AS bounds each process, and the run's memory cgroup (``cgroup``) bounds
all of them together; where the machine gives no cgroup, the init sums its processes' memory every
MEMORY_SAMPLE_SECONDS and kills the run above the bound. What the sandbox saw (the command's exit,
the peaks, the kills) is the run's :class:`RunFacts`: the grader's statuses come from it alone.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from g2c.grading.sandbox.limits import MAX_FILE_BYTES, MAX_PROCESSES, MEMORY_SAMPLE_SECONDS
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
    deny_syscalls,
    mount,
    open_no_follow,
    pivot_root_here,
    prctl,
    seccomp_available,
)

UID_BASE = 200_000  # far above any login account; never in /etc/passwd
RUNS_PER_PROCESS = 512  # uids of one grading process's runs: UID_BASE + 2**22 * 512 stays below 2**32 - 1
ADDRESS_MARGIN = 1 / 8  # a process that reached 7/8 of its address-space limit (RLIMIT_AS) hit it: the next
# allocation a real program makes near its limit is rarely larger (the memory bomb's: 256 MB of 2048 MB)
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
    memory_mb: int | None  # MB: each process's address space, and all the run's processes together (None: no limit)

    def to_json(self) -> dict:
        """Plain data for the request to the zygote; :meth:`from_json` reads it back."""
        return {**asdict(self), "kit": str(self.kit)}

    @classmethod
    def from_json(cls, data: dict) -> Box:
        return cls(**{**data, "kit": Path(data["kit"])})


@dataclass(frozen=True)
class RunFacts:
    """What the sandbox saw of a run, from outside it: written by the init and C1 (root, no student code) into
    a file created before the run, read by the grader. The run's status is decided from these alone
    (:meth:`memory_hit`), never from anything the student's code wrote or raised."""

    exit_code: int = 0  # the command's exit code, or minus the signal that ended it
    max_rss_mb: float = 0.0  # the command's peak resident memory
    leftovers: int = 0  # processes it left running (killed with its sandbox)
    address_peak_mb: float = 0.0  # the largest address space a process of the run reached (sampled)
    memory_wall: str = ""  # what bounded the run's total memory: "cgroup" or "watch" (the init), "" when unbounded
    memory_peak_mb: float = 0.0  # the run's largest total memory (the cgroup's count, or the init's sampled sum)
    memory_failcnt: int = 0  # how often that total reached the bound (the cgroup's failcnt)
    memory_kills: int = 0  # processes killed to hold the bound (the cgroup's OOM kills, or the init's watch)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def parse(cls, raw: bytes) -> RunFacts:
        """The facts in ``raw``; none (zeros) when nothing readable was written."""
        try:
            data = json.loads(raw)
            return cls(**{f.name: _typed(f.default, data[f.name]) for f in fields(cls)})
        except (ValueError, KeyError, TypeError, RecursionError):
            return cls()

    @classmethod
    def read(cls, path: Path) -> RunFacts:
        try:
            with open(path, "rb", opener=open_no_follow) as f:
                return cls.parse(f.read(4096))
        except OSError:
            return cls()

    def memory_hit(self, memory_mb: int | None) -> str | None:
        """Which memory bound the run reached, as a reason, or None: its processes together (the run's group or
        the init's watch), or one process's address space (RLIMIT_AS, within ADDRESS_MARGIN of it)."""
        if self.memory_kills or self.memory_failcnt:
            return f"together, the run's processes reached its {memory_mb} MB memory limit ({self.memory_wall})"
        if memory_mb and self.address_peak_mb >= memory_mb * (1 - ADDRESS_MARGIN):
            return f"a process of the run reached its {memory_mb} MB address-space limit"
        return None


def _typed(default: object, value: object) -> object:
    """``value`` as the type of the field's default; TypeError for anything else (a bool is not a number)."""
    kind = type(default)
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
        raise TypeError(f"{value!r} is not a {kind.__name__}")
    return kind(value)


def run_uid(pid: int, run: int) -> int:
    """The uid of the ``run``-th sandboxed run of grading process ``pid``: a uid of its own, never another run's.

    Pids are below 2**22 (PID_MAX_LIMIT) and unique among live processes, so no two runs of one batch's
    workers share a uid, and nothing the kernel keys by uid (keyrings, RLIMIT_NPROC's count, a file's
    owner) reaches another run; a worker's 513th run (its 257th submission) has its first run's uid again.
    """
    return UID_BASE + (pid % 2**22) * RUNS_PER_PROCESS + run % RUNS_PER_PROCESS


def isolation_available() -> str | None:
    """None when sandboxing works here, else why not: a child process enters the sandbox's namespaces
    with the very call the zygote makes."""
    if os.geteuid() != 0:
        return "grading in a sandbox needs root (each run gets a uid and namespaces of its own)"
    if problem := seccomp_available():
        return f"a run's system calls cannot be filtered: {problem}"
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
    """In the child: resource limits, the system-call filter, no new privileges, then drop root for good."""
    limits = {resource.RLIMIT_CORE: 0, resource.RLIMIT_FSIZE: MAX_FILE_BYTES, resource.RLIMIT_NOFILE: 1024,
              resource.RLIMIT_NPROC: MAX_PROCESSES}  # processes are counted per uid (one per run): a fork bomb stops here
    if memory_mb:
        limits[resource.RLIMIT_AS] = memory_mb * 2**20
    for kind, value in limits.items():
        resource.setrlimit(kind, (value, value))
    with open("/proc/self/oom_score_adj", "w") as f:  # the run's processes go first when the OOM killer must choose,
        f.write("1000")  # never the init or C1 (lowering their score would need CAP_SYS_RESOURCE; raising needs nothing)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    deny_syscalls()  # inherited by every process the run starts; set*id and setgroups stay allowed
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _other_processes() -> list[int]:
    """Processes in this PID namespace besides its init, not yet zombies: what runs beside (or after) the command."""
    alive = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and entry != "1" and Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive.append(int(entry))
        except (OSError, IndexError):
            pass  # gone meanwhile
    return alive


def _status_kb(pid: int, field: str) -> int:
    """A ``kB`` line of /proc/<pid>/status (VmPeak, VmRSS); 0 when the process is gone or has no memory."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _pss_kb(pid: int) -> int:
    """The process's proportional share of resident memory: pages shared with the zygote count once in all."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class _MemoryWatch:
    """The init's look at the run's memory every MEMORY_SAMPLE_SECONDS: each process's peak address space, and,
    where no cgroup bounds the run (``bound_mb``), the sum of their memory, killing the run above it."""

    def __init__(self, bound_mb: int | None) -> None:
        self.bound_mb = bound_mb
        self.address_peak_kb = self.total_peak_kb = self.kills = 0

    def sample(self) -> None:
        processes = _other_processes()
        for pid in processes:
            self.address_peak_kb = max(self.address_peak_kb, _status_kb(pid, "VmPeak"))
        if self.bound_mb is None:
            return
        total = sum(_pss_kb(pid) for pid in processes)
        self.total_peak_kb = max(self.total_peak_kb, total)
        if total > self.bound_mb * 1024:
            self.kills += len(processes)
            os.kill(-1, signal.SIGKILL)  # every process of the namespace but its init

    def facts(self, exit_code: int, usage: resource.struct_rusage) -> RunFacts:
        return RunFacts(exit_code, usage.ru_maxrss / 1024, len(_other_processes()), self.address_peak_kb / 1024,
                        "watch" if self.bound_mb is not None else "", self.total_peak_kb / 1024, 0, self.kills)


def init(box: Box, run: Callable[[], None], output: int, report: int, watch_total: bool = False) -> int:
    """Be the sandbox's PID 1: build the root, then ``run()`` in a child as the box's uid; reap.

    ``output`` becomes the child's stdout (its only way out); ``report`` stays the init's: it
    receives the run's :class:`RunFacts`. ``watch_total``: no cgroup bounds the run's memory, the
    init does (:class:`_MemoryWatch`). Returns the child's exit code.
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
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})  # woken by a child's end, or by the next sample
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    watch = _MemoryWatch(box.memory_mb if watch_total and box.memory_mb else None)
    while True:  # reap orphans until the command itself ends
        try:
            while (done := os.wait4(-1, os.WNOHANG))[0]:
                if done[0] == pid:
                    code = os.waitstatus_to_exitcode(done[1])
                    os.write(report, watch.facts(code, done[2]).to_json())
                    return code & 0xFF
        except ChildProcessError:
            return 1
        watch.sample()
        signal.sigtimedwait({signal.SIGCHLD}, MEMORY_SAMPLE_SECONDS)
