"""A warm process that forks sandboxed runs with torch, IPython and nbclient already imported.

Each grading worker starts one (``Zygote``): a fresh interpreter that imports what every run
needs once, and nothing of the grader's (no reference solutions, no answer keys, no other
student's data: it never reads a request's payload). The worker talks to it over a socket pair;
for each run it passes a new connection (SCM_RIGHTS) carrying one request line, and the zygote
forks C1, which reads the payload and opens the output files (root, before any student code),
enters new mount, PID, network, IPC and UTS namespaces and forks the sandbox's init::

    zygote ─ fork ─ C1 (setsid; unshare; waits) ─ fork ─ init, PID 1 ─ fork ─ run (the student's uid)

Before forking C1, the zygote makes the run's memory and pids cgroup (``cgroup.RunGroup``); C1 joins
it before the init exists, and when the init is gone writes the run's facts (the init's, through a
pipe, and the group's counts) into ``report``. The zygote removes the group once C1 and its PID
namespace are gone.

The requester holds the connection for the life of the run and gets ``{"exit": code}`` at its
end; closing the connection kills the run (C1, and with it the PID namespace). The zygote has no
socket on the file system and no folder: nothing of it outlives its worker (a run's cgroup is
removed when the worker closes its end, not if the zygote itself is killed with SIGKILL).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from g2c.grading.sandbox.box import KEPT_ENVIRONMENT, Box, RunFacts, init
from g2c.grading.sandbox.cgroup import RunGroup, usage
from g2c.grading.sandbox.limits import MAX_PROCESSES
from g2c.grading.sandbox.syscalls import (
    MS_PRIVATE,
    MS_REC,
    PR_SET_PDEATHSIG,
    SANDBOX_NAMESPACES,
    mount,
    open_no_follow,
    prctl,
    unshare,
)

# torch._dynamo (with sympy; the first torch.optim optimizer imports it) and ipykernel.debugger (debugpy, at kernel
# start) are third-party only, and were ~1.5 s of every notebook run; here they are imported once per worker.
WARM = ["torch", "numpy", "matplotlib.pyplot", "matplotlib_inline.backend_inline", "IPython", "ipykernel.kernelapp",
        "ipykernel.ipkernel", "ipytest", "pytest", "ipywidgets", "nbformat", "nbclient", "jupyter_client",
        "torch._dynamo", "ipykernel.debugger", "g2c.grading.sandbox.probe", "g2c.grading.sandbox.runner"]


RUN_ROOT_TASKS = 8  # tasks of a run's group beside its uid's MAX_PROCESSES: C1 and the init, with room to spare


class Zygote:
    """The worker's handle: start the warm process once, then ask it for sandboxed runs."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # Only the kept variables: student code forked from it can read its /proc/self/environ.
        env = {name: os.environ[name] for name in (*KEPT_ENVIRONMENT, "HOME") if name in os.environ}
        self.process = subprocess.Popen([sys.executable, "-m", "g2c.grading.sandbox.zygote", str(theirs.fileno())],
                                        pass_fds=[theirs.fileno()], stdout=subprocess.PIPE, cwd="/", env=env)
        theirs.close()
        self.control = ours
        if self.process.stdout.readline().strip() != b"ready":
            raise RuntimeError("the grading zygote did not start")

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, kind: str, box: Box, payload: Path, output: Path, report: Path, timeout: float) -> int | None:
        """Run ``kind`` (``notebook`` or ``probe``) on ``payload`` in ``box``.

        ``output`` and ``report`` are created by C1 as root (they must not exist yet); the run's
        exit code, or None when it was stopped after ``timeout`` s.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with ours:
            socket.send_fds(self.control, [b"r"], [theirs.fileno()])
            theirs.close()
            request = {"kind": kind, "box": box.to_json(), "payload": str(payload), "output": str(output), "report": str(report)}
            ours.sendall(json.dumps(request).encode() + b"\n")
            ours.settimeout(timeout)
            reply = b""
            try:
                while b'"exit"' not in reply:
                    chunk = ours.recv(4096)
                    if not chunk:
                        return None
                    reply += chunk
            except TimeoutError:
                return None  # closing the connection kills the run
            return json.loads(reply.splitlines()[-1])["exit"]


# ---------------------------------------------------------------- the zygote process


def run_kind(kind: str, payload: dict) -> None:
    """What the student's process runs: the probe or the notebook run (sandboxed or not)."""
    if kind == "probe":
        from g2c.grading.sandbox import probe

        probe.run(payload)
    else:
        from g2c.grading.sandbox import runner

        runner.run(payload)


def _create(path: str) -> int:
    """A new file only root can reach, in the grader's private folder; never through a link."""
    return open_no_follow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC)


def _spawn(request: dict, group: RunGroup | None) -> int:
    """Fork C1, which walls itself off and runs the request in ``group`` (None: the init bounds the run's memory); C1's pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.closerange(3, 65536)  # no socket of the zygote's reaches student code
        with open(request["payload"], "rb", opener=open_no_follow) as f:
            payload = json.loads(f.read())
        output, report = _create(request["output"]), _create(request["report"])
        os.set_inheritable(output, True)
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the zygote gone, C1 goes
        if group:
            group.join()  # before the init exists: every process of the run is in the group from its start
            counters = group.counters()  # the init's pivot_root moves C1's root too: /sys is gone from it then
        unshare(SANDBOX_NAMESPACES)
        mount("none", "/", None, MS_REC | MS_PRIVATE)
        from_init, to_c1 = os.pipe()
        child = os.fork()
        if child == 0:  # PID 1 of the new namespace
            code = 1
            try:
                prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # C1 gone, the whole namespace goes
                os.close(from_init)
                code = init(Box.from_json(request["box"]), functools.partial(run_kind, request["kind"], payload), output, to_c1,
                            watch_total=group is None)
            finally:
                os._exit(code)
        os.close(output)
        os.close(to_c1)
        del payload
        _, status = os.waitpid(child, 0)  # the PID namespace is empty once its init is reaped
        code = os.waitstatus_to_exitcode(status) & 0xFF
        facts = RunFacts.parse(os.read(from_init, 65536))
        if group:
            counted = usage(counters)
            facts = dataclasses.replace(facts, memory_wall="cgroup", memory_peak_mb=counted.peak_mb,
                                        memory_failcnt=counted.failcnt, memory_kills=counted.oom_kills)
        os.write(report, facts.to_json())
    finally:
        os._exit(code)


def serve(control_fd: int) -> None:
    """Accept requests until the worker's end of the control socket closes; each connection owns one run."""
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # debugpy's import says nothing on the worker's stderr
    for name in WARM:  # matplotlib with the Agg backend the worker set (g2c.grading.worker._grading_environment)
        __import__(name)
    control = socket.socket(fileno=control_fd)
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ, "control")
    runs: dict[socket.socket, int] = {}  # connection -> C1 pid
    stopped: set[int] = set()  # C1s killed after their requester left, to reap
    pending: dict[socket.socket, bytes] = {}
    groups: dict[int, RunGroup] = {}  # C1 pid -> its run's cgroup
    ended: list[RunGroup] = []  # groups of reaped C1s, removed once their PID namespace is empty
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        for key, _ in selector.select(timeout=0.05):
            if key.data == "control":
                _, fds, _, _ = socket.recv_fds(control, 1, 1)
                if not fds:  # the worker is gone: so is everything
                    for pid in [*runs.values(), *stopped]:
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)  # C1 gone: its init follows (PDEATHSIG), and then the group can go
                    _remove_groups([*ended, *groups.values()], patience=10.0)
                    return
                conn = socket.socket(fileno=fds[0])
                pending[conn] = b""
                selector.register(conn, selectors.EVENT_READ, "conn")
            else:
                conn = key.fileobj
                chunk = conn.recv(65536)
                if conn in pending and chunk:
                    pending[conn] += chunk
                    if pending[conn].endswith(b"\n"):
                        request = json.loads(pending.pop(conn))
                        group = RunGroup.create(request["box"].get("memory_mb"), MAX_PROCESSES + RUN_ROOT_TASKS)
                        runs[conn] = _spawn(request, group)
                        if group:
                            groups[runs[conn]] = group
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
                if pid in groups:
                    ended.append(groups.pop(pid))
                try:
                    conn.sendall(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
                except OSError:
                    pass
        for pid in list(stopped):
            if os.waitpid(pid, os.WNOHANG)[0]:
                stopped.discard(pid)
                if pid in groups:
                    ended.append(groups.pop(pid))
        ended[:] = _remove_groups(ended)


def _remove_groups(groups: list[RunGroup], patience: float = 0.0) -> list[RunGroup]:
    """Remove ``groups``, retrying for ``patience`` s while a PID namespace is being torn down; those left."""
    deadline = time.monotonic() + patience
    while True:
        groups = [group for group in groups if not group.remove()]
        if not groups or time.monotonic() >= deadline:
            return groups
        time.sleep(0.05)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
