"""A warm process that forks sandboxed kernels and contract runs with torch already imported.

Each grading worker starts one (``Zygote``). It imports what every submission needs (torch,
matplotlib, IPython, ipykernel, pytest, ipytest, g2c) once, then serves requests on a Unix
socket: for each it forks a child that enters new mount, network and PID namespaces and becomes
the sandbox's init (``sandbox.init``), which forks the student's process as the job's uid. That
process runs the kernel or the contract's pytest in place, with every import already done:
a fork instead of a new interpreter importing torch for every submission.

    zygote ─ fork ─ C1 (setsid; unshare; waits) ─ fork ─ init, PID 1 ─ fork ─ kernel / pytest

The requester holds the connection for the life of the run and gets ``{"exit": code}`` at its
end; closing the connection kills the run (C1, and with it the PID namespace). jupyter_client
launches ``client.py`` as "the kernel": it asks the zygote for a kernel and stays its stand-in.
"""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
from pathlib import Path

from g2c.grading.sandbox import KEPT_ENVIRONMENT, Box

CLIENT = Path(__file__).with_name("zygote_client.py")
CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
MS_REC, MS_PRIVATE, MS_NOSUID, MS_NODEV, MS_NOEXEC = 16384, 1 << 18, 2, 4, 8
PR_SET_PDEATHSIG = 1
WARM = ["torch", "numpy", "matplotlib.pyplot", "matplotlib_inline.backend_inline", "IPython", "ipykernel.kernelapp",
        "ipykernel.ipkernel", "ipytest", "pytest", "_pytest.junitxml", "ipywidgets", "g2c.training", "g2c.nn", "g2c.data", "g2c.widgets"]


def box_json(box: Box) -> str:
    return json.dumps({"uid": box.uid, "home": str(box.home), "hide": [str(p) for p in box.hide], "memory_mb": box.memory_mb,
                       "env": box.env, "quiet": box.quiet, "report": str(box.report) if box.report else None, "see": [str(p) for p in box.see]})


def box_from(data: dict) -> Box:
    report = Path(data["report"]) if data.get("report") else None
    return Box(data["uid"], Path(data["home"]), [Path(p) for p in data["hide"]], data["memory_mb"], data["env"], data["quiet"], report, [Path(p) for p in data["see"]])


class Zygote:
    """The worker's handle: start the warm process once, then ask it for sandboxed runs."""

    def __init__(self, folder: Path) -> None:
        self.socket = folder / "zygote.sock"
        # stdin stays open for the zygote's life: when this process dies, the zygote sees EOF and ends.
        # Only the kept variables: student code forked from it can read its /proc/self/environ.
        env = {name: os.environ[name] for name in (*KEPT_ENVIRONMENT, "HOME") if name in os.environ}
        self.process = subprocess.Popen([sys.executable, "-m", "g2c.grading.zygote", str(self.socket)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=folder, env=env)
        if self.process.stdout.readline().strip() != b"ready":
            raise RuntimeError("the grading zygote did not start")

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, kind: str, args: list[str], box: Box, cwd: Path, timeout: float) -> int | None:
        """Run ``kind`` (pytest) in ``box``; its exit code, or None when stopped after ``timeout`` s."""
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(str(self.socket))
            conn.sendall(json.dumps({"kind": kind, "args": args, "box": json.loads(box_json(box)), "cwd": str(cwd)}).encode() + b"\n")
            conn.settimeout(timeout)
            reply = b""
            try:
                while not reply.endswith(b"\n") or b'"exit"' not in reply:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return None
                    reply += chunk
            except TimeoutError:
                return None  # closing the connection kills the run
            return json.loads(reply.splitlines()[-1])["exit"]

    def kernel_argv(self, box: Box) -> list[str]:
        """What jupyter_client launches as the kernel: a stand-in that asks the zygote for one."""
        return [sys.executable, "-I", "-S", str(CLIENT), str(self.socket), box_json(box), "{connection_file}"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


# ---------------------------------------------------------------- the zygote process


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def _target(kind: str, args: list[str]):
    """What the student's process runs, in place, with the zygote's imports."""

    def kernel(env: dict[str, str]) -> None:
        os.environ.clear()
        os.environ.update(env)
        from ipykernel import kernelapp

        sys.argv = ["ipykernel_launcher", *args]
        kernelapp.launch_new_instance()

    def pytest_run(env: dict[str, str]) -> None:
        os.environ.clear()
        os.environ.update(env)
        import pytest

        sys.dont_write_bytecode = True
        sys.path[:0] = [os.getcwd()]
        sys.stdout.flush()
        raise SystemExit(int(pytest.main(args)))

    return {"kernel": kernel, "pytest": pytest_run}[kind]


def _spawn(request: dict) -> int:
    """Fork C1, which walls itself off and runs the request; C1's pid."""
    from g2c.grading.sandbox import init

    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.closerange(3, 65536)  # no socket of the zygote's reaches student code
        libc = _libc()
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the zygote gone, C1 goes
        _check(libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET), "unshare")
        _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
        child = os.fork()
        if child == 0:  # PID 1 of the new namespace
            code = 1
            try:
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # C1 gone, the whole namespace goes
                _check(libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount /proc")
                code = init(box_from(request["box"]), _target(request["kind"], request["args"]), Path(request["cwd"]))
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
        code = os.waitstatus_to_exitcode(status) & 0xFF
    finally:
        os._exit(code)


def serve(path: str) -> None:
    """Accept requests until stdin closes; each connection owns one run."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in WARM:
        __import__(name)
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ, "accept")
    selector.register(sys.stdin, selectors.EVENT_READ, "parent")
    runs: dict[socket.socket, int] = {}  # connection -> C1 pid
    stopped: set[int] = set()  # C1s killed after their requester left, to reap
    pending: dict[socket.socket, bytes] = {}
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        for key, _ in selector.select(timeout=0.05):
            if key.data == "parent":
                if not os.read(sys.stdin.fileno(), 1):  # the worker is gone: so is everything
                    for pid in runs.values():
                        os.kill(pid, signal.SIGKILL)
                    return
            elif key.data == "accept":
                conn, _ = server.accept()
                pending[conn] = b""
                selector.register(conn, selectors.EVENT_READ, "conn")
            else:
                conn = key.fileobj
                chunk = conn.recv(65536)
                if conn in pending and chunk:
                    pending[conn] += chunk
                    if pending[conn].endswith(b"\n"):
                        request = json.loads(pending.pop(conn))
                        runs[conn] = _spawn(request)
                        conn.sendall(json.dumps({"pid": runs[conn]}).encode() + b"\n")
                elif not chunk:  # the requester left: stop its run
                    selector.unregister(conn)
                    pending.pop(conn, None)
                    if conn in runs:
                        pid = runs.pop(conn)
                        os.kill(pid, signal.SIGKILL)
                        stopped.add(pid)
                    conn.close()
        for conn, pid in list(runs.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                del runs[conn]
                try:
                    conn.sendall(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
                except OSError:
                    pass
        for pid in list(stopped):
            if os.waitpid(pid, os.WNOHANG)[0]:
                stopped.discard(pid)


if __name__ == "__main__":
    serve(sys.argv[1])
