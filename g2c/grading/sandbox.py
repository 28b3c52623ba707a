"""Run student code walled off: own network, mount and PID namespaces, its own unprivileged uid.

``sandboxed(command, box)`` wraps a command (a Jupyter kernel, the contract's pytest run) as

    setpriv --pdeathsig SIGKILL -- unshare --net --mount --pid --fork --kill-child --mount-proc \
        python -m g2c.grading.sandbox ... -- command

and ``python -m g2c.grading.sandbox`` is the namespace's init (PID 1, still root, ``init``): it
gives the sandbox empty /tmp, /var/tmp and /dev/shm, binds back only the interpreter, the venv,
g2c and the job's folder, hides the course's secrets behind empty mounts, gives the job's folder
to the job's uid, forks the command as that uid with resource limits and a clean environment,
and waits. (The grading zygote calls ``init`` itself, in namespaces it makes with unshare(2).)
When the command ends, or when anything kills ``unshare`` (its ``--kill-child`` takes the init
down; the grader's death does, through the parent-death signal), the PID namespace ends and the
kernel kills every process the student started: orphans, daemons and code that ignores SIGTERM
included. The new network namespace has no interface up, so no network at all;
kernels talk to the grader over Unix sockets (``KernelManager.transport = "ipc"``).

As root every job gets a uid of its own, so jobs cannot read one another's folders. Without
root, ``unshare --user --map-root-user`` gives the same namespaces but no uid change.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

UID_BASE = 200_000  # far above any login account; never in /etc/passwd
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC = 1, 2, 4, 4096, 16384
PRIVATE = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))  # fresh and empty in every sandbox
KEPT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MPLBACKEND",
                    "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_ADDOPTS", "PYDEVD_DISABLE_FILE_VALIDATION")


@dataclass
class Box:
    """What one sandboxed command may see and use."""

    uid: int  # the unprivileged uid the command runs as (ignored without root)
    home: Path  # the only folder it owns: cwd, HOME and TMPDIR live here
    hide: list[Path] = field(default_factory=list)  # folders and files replaced by empty ones
    memory_mb: int | None = None  # address-space limit
    env: dict[str, str] = field(default_factory=dict)  # extra variables (G2C_VERDICTS_FILE, ...)
    quiet: bool = False  # send the command's own stdout and stderr to /dev/null (a kernel's banner)
    report: Path | None = None  # where the init writes the command's exit and peak memory (root only)
    see: list[Path] = field(default_factory=list)  # more folders it may read (under /tmp, say)


def job_uids(slot: int) -> tuple[int, int]:
    """Two uids per grading process: one for the kernel, one for the contract run."""
    base = UID_BASE + 2 * (slot % 400_000)
    return base, base + 1


def isolation_available() -> str | None:
    """None when sandboxing works here, else why not (checked by running ``true`` in one)."""
    if shutil.which("unshare") is None or shutil.which("setpriv") is None:
        return "the `unshare` and `setpriv` commands (util-linux) are missing"
    probe = subprocess.run([*_unshare(), "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"`unshare` failed: {probe.stderr.strip()[:200]}"


def _unshare() -> list[str]:
    """unshare, killed with the grader (setpriv's parent-death signal), taking the sandbox along."""
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return ["setpriv", "--pdeathsig", "SIGKILL", "--", "unshare", *user, "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc"]


def sandboxed(command: list[str], box: Box) -> list[str]:
    """``command`` wrapped so that it runs inside ``box``."""
    init = [sys.executable, "-m", "g2c.grading.sandbox", "--uid", str(box.uid), "--home", str(box.home)]
    if box.memory_mb:
        init += ["--memory", str(int(box.memory_mb))]
    for path in box.hide:
        init += ["--hide", str(path)]
    for name, value in box.env.items():
        init += ["--env", f"{name}={value}"]
    if box.quiet:
        init.append("--quiet")
    if box.report:
        init += ["--report", str(box.report)]
    for path in box.see:
        init += ["--see", str(path)]
    return [*_unshare(), *init, "--", *command]


def kill_uid(uid: int) -> int:
    """SIGKILL every process of ``uid`` on this machine; how many were found."""
    found = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            real_uid = int((entry / "status").read_text().split("\nUid:", 1)[1].split()[0])
            if real_uid == uid:
                found += 1
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            pass  # gone meanwhile
    return found


# ---------------------------------------------------------------- inside the namespaces (PID 1)


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags, data.encode() if data else None) != 0:
        raise OSError(ctypes.get_errno(), f"mount {source} on {target}: {os.strerror(ctypes.get_errno())}")


def _hide(path: Path) -> None:
    if path.is_dir():
        _mount("tmpfs", str(path), "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0755")
    elif path.exists():
        _mount("/dev/null", str(path), None, MS_BIND)


def _closed_ancestor(path: Path) -> Path | None:
    """The highest folder above ``path`` that other users cannot enter (e.g. /root, mode 0700)."""
    for folder in reversed(path.parents):
        if not folder.stat().st_mode & 0o001:
            return folder
    return None


def _expose(paths: list[Path]) -> None:
    """Give the sandbox empty /tmp, /var/tmp and /dev/shm, and empty closed folders, with only
    ``paths`` bound back in.

    So student code leaves no file behind and meets no other job's files, and the job's uid can
    reach the interpreter, the venv and g2c under, say, /root (mode 0700) and nothing else there.
    Binds are recursive, so a hidden folder inside a bound path stays hidden.
    """
    fds = {p: os.open(p, os.O_PATH) for p in paths if p.exists()}  # before anything covers them
    covers = set(PRIVATE)
    if os.geteuid() == 0:
        covers |= {a for p in fds if (a := _closed_ancestor(p)) is not None}
    for folder in sorted(covers, key=lambda f: len(f.parts)):
        folder.mkdir(parents=True, exist_ok=True)
        _mount("tmpfs", str(folder), "tmpfs", MS_NOSUID | MS_NODEV, "size=128m,mode=1777" if folder in PRIVATE else "size=64k,mode=0755")
    for path, fd in sorted(fds.items(), key=lambda item: len(item[0].parts)):
        if any(c == path or c in path.parents for c in covers):
            path.mkdir(parents=True, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", str(path), None, MS_BIND | MS_REC)
        os.close(fd)


def _needed_paths() -> list[Path]:
    """What a Python child needs: the base interpreter, this venv and the g2c package."""
    import g2c

    return [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), Path(g2c.__file__).resolve().parent]


def _own(folder: Path, uid: int) -> None:
    for root, dirs, files in os.walk(folder):
        for name in (root, *(os.path.join(root, n) for n in dirs + files)):
            os.lchown(name, uid, uid)


def _become(uid: int, memory_mb: int | None) -> None:
    """In the child: resource limits, then drop root for good."""
    limits = {resource.RLIMIT_CORE: 0, resource.RLIMIT_FSIZE: 512 * 2**20, resource.RLIMIT_NOFILE: 1024}
    if memory_mb:
        limits[resource.RLIMIT_AS] = memory_mb * 2**20
    if os.geteuid() == 0:
        limits[resource.RLIMIT_NPROC] = 256  # counted per uid: a fork bomb stops here
    for kind, value in limits.items():
        resource.setrlimit(kind, (value, value))
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def init(box: Box, run: Callable[[dict[str, str]], None], cwd: Path | None = None) -> int:
    """Be the sandbox's PID 1: wall off, then ``run(env)`` in a child as the box's uid; reap.

    ``run`` replaces the child (exec) or runs in it and returns; either way the child ends there.
    """
    cwd = cwd or Path.cwd()  # as a path: the folder itself is about to be covered and bound back
    report = os.open(box.report, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) if box.report else None  # out of sight soon
    _expose([*_needed_paths(), box.home, *box.see])
    for path in box.hide:
        _hide(path)
    (box.home / "tmp").mkdir(exist_ok=True)
    if os.geteuid() == 0:
        _own(box.home, box.uid)
    env = {name: os.environ[name] for name in KEPT_ENVIRONMENT if name in os.environ}
    env.update(HOME=str(box.home), TMPDIR=str(box.home / "tmp"), MPLCONFIGDIR=str(box.home / ".mpl"), IPYTHONDIR=str(box.home / ".ipython"))
    env.update(box.env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt reaches the kernel through its process group
    pid = os.fork()
    if pid == 0:
        code = 127
        try:
            if report is not None:
                os.close(report)  # the init's alone
            _become(box.uid, box.memory_mb)
            os.chdir(cwd)
            if box.quiet:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            run(env)
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        finally:
            os._exit(code)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    while True:  # reap orphans until the command itself ends
        try:
            done, status, usage = os.wait4(-1, 0)
        except ChildProcessError:
            return 1
        if done == pid:
            code = os.waitstatus_to_exitcode(status)
            if report is not None:  # a kernel that died at its memory limit is told apart from a crash
                os.write(report, json.dumps({"exit": code, "max_rss_mb": usage.ru_maxrss / 1024}).encode())
            return code & 0xFF


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="init of a grading sandbox (run through unshare)")
    parser.add_argument("--uid", type=int, required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--memory", type=int, default=None)
    parser.add_argument("--hide", type=Path, action="append", default=[])
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--see", type=Path, action="append", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    box = Box(args.uid, args.home, args.hide, args.memory, dict(item.split("=", 1) for item in args.env), args.quiet, args.report, args.see)
    return init(box, lambda env: os.execvpe(command[0], command, env))


if __name__ == "__main__":
    sys.exit(main())
