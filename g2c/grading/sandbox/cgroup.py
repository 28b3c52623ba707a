"""A cgroup (v1 ``memory`` and ``pids``) per sandboxed run: the run's memory bounded as a whole, and measured.

RLIMIT_AS bounds each process; a run may fork, so only a group holding all its processes bounds their
sum. The zygote makes one group per run, a child of the group it is in itself (a machine's own limits
above it still apply), before it forks C1; C1 joins it before the sandbox's init exists, so every
process of the run is in it from its start; C1 reads what the kernel counted once the init is gone; the
zygote removes the group after C1 (and with it the whole PID namespace) has ended. cgroupfs is not in the
sandbox's root and no student uid may write it: root only opens paths under /sys/fs/cgroup it made.

Where no v1 ``memory`` hierarchy is writable (cgroup v2 alone, no root, a container without it),
:meth:`RunGroup.create` returns None and the sandbox's init watches the run's memory itself (``box``).
"""

from __future__ import annotations

import errno
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from g2c.grading.sandbox.syscalls import open_no_follow

HIERARCHIES = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids")
PREFIX = "g2c-run-"  # every run's group is named so


def _own_group(controller: str) -> Path | None:
    """This process's group in the v1 hierarchy of ``controller``, None when there is none."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            folder = HIERARCHIES / controller / path.lstrip("/")
            return folder if (folder / "cgroup.procs").exists() else None
    return None


def _write(folder: Path, name: str, value: int | str) -> None:
    fd = open_no_follow(folder / name, os.O_WRONLY)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def _read(folder: int, name: str) -> str:
    """A file of the group whose folder ``folder`` (a descriptor) is: C1 reads it after the sandbox's pivot_root
    moved C1's root too, when /sys is no longer a path it can name."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder)
    try:
        return os.read(fd, 4096).decode()
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Usage:
    """What the kernel counted for a run's group."""

    peak_mb: float  # the run's largest total memory (memory.max_usage_in_bytes: its processes, files in its tmpfs)
    failcnt: int  # how often the total reached the bound (memory.failcnt, memory.memsw.failcnt)
    oom_kills: int  # processes the kernel killed to keep the run under it (memory.oom_control's oom_kill)


@dataclass(frozen=True)
class RunGroup:
    """One run's groups: in the memory hierarchy (bound and counts) and in the pids hierarchy (a task bound)."""

    memory: Path
    pids: Path | None

    @classmethod
    def create(cls, memory_mb: int | None, max_tasks: int) -> RunGroup | None:
        """A new group bounding a run to ``memory_mb`` (None: measured, not bounded) and ``max_tasks`` tasks;
        None when this machine gives none."""
        parent = _own_group("memory")
        if parent is None:
            return None
        name = f"{PREFIX}{secrets.token_hex(6)}"
        try:
            (parent / name).mkdir(mode=0o700)
        except OSError:
            return None
        pids_parent = _own_group("pids")
        group = cls(parent / name, pids_parent / name if pids_parent else None)
        try:
            if memory_mb:
                _write(group.memory, "memory.limit_in_bytes", memory_mb * 2**20)
                if (group.memory / "memory.memsw.limit_in_bytes").exists():  # swap counted too, where the kernel counts it
                    _write(group.memory, "memory.memsw.limit_in_bytes", memory_mb * 2**20)
            if group.pids:
                group.pids.mkdir(mode=0o700)
                _write(group.pids, "pids.max", max_tasks)
        except OSError:
            group.remove()
            return None
        return group

    def join(self) -> None:
        """Put the calling process (and so all it will fork) in the group."""
        for folder in (self.memory, self.pids):
            if folder:
                _write(folder, "cgroup.procs", os.getpid())

    def counters(self) -> int:
        """A descriptor of the memory group's folder, for :func:`usage`."""
        return os.open(self.memory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)

    def remove(self) -> bool:
        """Remove the group; False while a task is still in it (a PID namespace being torn down): try again later."""
        for folder in (self.pids, self.memory):
            if folder:
                try:
                    folder.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as err:
                    if err.errno == errno.EBUSY:
                        return False
                    return True  # nothing more to do about it: never retried
        return True


def usage(counters: int) -> Usage:
    """What the kernel counted in the memory group whose folder is the descriptor ``counters``."""
    oom = dict(line.split() for line in _read(counters, "memory.oom_control").splitlines() if line.strip())
    failcnt = int(_read(counters, "memory.failcnt"))
    try:
        failcnt += int(_read(counters, "memory.memsw.failcnt"))
    except FileNotFoundError:  # no swap accounting on this kernel
        pass
    return Usage(int(_read(counters, "memory.max_usage_in_bytes")) / 2**20, failcnt, int(oom.get("oom_kill", 0)))
