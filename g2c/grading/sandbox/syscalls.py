"""The Linux calls the sandbox needs that Python 3.11's ``os`` lacks, and their flags: one home for libc.

Every wrapper raises ``OSError`` with the errno when the kernel refuses, so no caller can forget
to check. Imported by the zygote before it forks, so runs inside the sandbox (where ``g2c`` is
the kit, without ``g2c.grading``) still have it.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

# mount(2) flags
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2  # umount2(2)
# unshare(2) flags: the namespaces of a sandbox
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x04000000, 0x08000000, 0x20000000, 0x40000000
SANDBOX_NAMESPACES = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
# prctl(2) options
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _bytes(text: str | Path | None) -> bytes | None:
    return None if text is None else str(text).encode()


def mount(source: str, target: str | Path, fstype: str | None = None, flags: int = 0, data: str | None = None) -> None:
    _check(_libc.mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data)), f"mount {source} on {target}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def pivot_root_here() -> None:
    """Make the current directory the root and detach the old root (it sat under the new one)."""
    _check(_libc.pivot_root(b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "detach the old root")


def prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, value, 0, 0, 0), f"prctl {option}")


def open_no_follow(path: str | Path, flags: int, mode: int = 0o600) -> int:
    """``os.open`` that refuses a link as the last component (ELOOP): root never follows a link a run
    could plant. Also an ``opener`` for ``open()``; a file it creates is root's alone."""
    return os.open(path, flags | os.O_NOFOLLOW, mode)
