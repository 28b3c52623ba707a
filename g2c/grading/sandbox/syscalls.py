"""The Linux calls the sandbox needs that Python 3.11's ``os`` lacks, and their flags: one home for libc.

Every wrapper raises ``OSError`` with the errno when the kernel refuses, so no caller can forget
to check. Imported by the zygote before it forks, so runs inside the sandbox (where ``g2c`` is
the kit, without ``g2c.grading``) still have it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

# mount(2) flags
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2  # umount2(2)
# unshare(2) flags: the namespaces of a sandbox
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x04000000, 0x08000000, 0x20000000, 0x40000000
SANDBOX_NAMESPACES = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
CLONE_NEWCGROUP, CLONE_NEWUSER = 0x02000000, 0x10000000
NEW_NAMESPACE_FLAGS = (CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP, CLONE_NEWUSER)
# prctl(2) options
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
# Calls a run's code gets EPERM for: state no namespace of the sandbox covers (kernel keyrings are per uid, not per
# namespace), ways into other processes or the kernel (ptrace, bpf, perf, userfaultfd, io_uring, modules, kexec), and
# ways to make namespaces or mounts of its own. Names unknown to this kernel's architecture are skipped.
DENIED_SYSCALLS = ("add_key", "request_key", "keyctl",
                   "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
                   "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
                   "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen",
                   "fsconfig", "fsmount", "fspick", "mount_setattr", "open_by_handle_at", "name_to_handle_at",
                   "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot", "swapon",
                   "swapoff", "acct", "quotactl", "syslog", "lookup_dcookie", "iopl", "ioperm")

_libc = ctypes.CDLL(None, use_errno=True)
_seccomp_name = ctypes.util.find_library("seccomp")  # libseccomp 2 (Debian's libseccomp2): names -> numbers, BPF
_seccomp = ctypes.CDLL(_seccomp_name) if _seccomp_name else None


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


# ---------------------------------------------------------------- seccomp (libseccomp 2)

_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_CMP_MASKED_EQ = 7  # (argument & datum_a) == datum_b


def _scmp_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)  # SCMP_ACT_ERRNO


class _ArgCmp(ctypes.Structure):  # struct scmp_arg_cmp
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def seccomp_available() -> str | None:
    """None when :func:`deny_syscalls` can work here, else why not."""
    return None if _seccomp is not None else "libseccomp (libseccomp.so.2) is not installed"


def deny_syscalls(names: tuple[str, ...] = DENIED_SYSCALLS) -> None:
    """Install a seccomp filter on this process and every child it will have: ``names`` fail with EPERM, clone3
    with ENOSYS (its flags sit in memory a filter cannot read: libc falls back to clone), and clone asking for
    a new namespace with EPERM. Everything else is allowed; other architectures' calls kill the process.
    Sets no_new_privs (libseccomp's default), which the filter needs without CAP_SYS_ADMIN."""
    if _seccomp is None:
        raise OSError(errno.ENOSYS, seccomp_available())
    _seccomp.seccomp_init.restype = ctypes.c_void_p
    _seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
    _seccomp.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                                ctypes.POINTER(_ArgCmp)]
    _seccomp.seccomp_load.argtypes = _seccomp.seccomp_release.argtypes = [ctypes.c_void_p]
    _seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    ctx = _seccomp.seccomp_init(_SCMP_ACT_ALLOW)
    if not ctx:
        raise OSError(errno.ENOMEM, "seccomp_init failed")
    try:
        def rule(action: int, name: str, *args: _ArgCmp) -> None:
            number = _seccomp.seccomp_syscall_resolve_name(name.encode())
            if number < 0:  # not a call of this architecture
                return
            array = (_ArgCmp * len(args))(*args) if args else None
            if (result := _seccomp.seccomp_rule_add_array(ctx, action, number, len(args), array)) < 0:
                raise OSError(-result, f"seccomp rule for {name}: {os.strerror(-result)}")

        for name in names:
            rule(_scmp_errno(errno.EPERM), name)
        rule(_scmp_errno(errno.ENOSYS), "clone3")
        for flag in NEW_NAMESPACE_FLAGS:  # clone(flags, ...): the flags are its first argument
            rule(_scmp_errno(errno.EPERM), "clone", _ArgCmp(0, _SCMP_CMP_MASKED_EQ, flag, flag))
        if (result := _seccomp.seccomp_load(ctx)) < 0:
            raise OSError(-result, f"seccomp_load: {os.strerror(-result)}")
    finally:
        _seccomp.seccomp_release(ctx)
