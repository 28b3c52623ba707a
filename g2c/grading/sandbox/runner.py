"""Run a student's notebook inside the sandbox: a real ipykernel and nbclient, both the student's.

Runs as the student's uid in the sandbox (``g2c.grading.sandbox.box``), forked from the zygote with
torch, IPython and nbclient imported. It forks the kernel first (before any ZeroMQ context
exists here), then drives it with nbclient over Unix sockets in the sandbox's own /tmp, and
writes one JSON line per executed cell to stdout, the descriptor the grader reads::

    {"cell": 7, "execution_count": 3, "outputs": [...]}

Everything here belongs to the student: the grader takes these lines as the outputs to show
(size-capped again on its side) and never as a score. Per cell, the outputs are capped (text
and images separately) and a cell that floods is interrupted; a cell that runs past
``cell_timeout`` is interrupted and the next cell runs, as in stock nbgrader.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from g2c.grading.sandbox.syscalls import PR_SET_DUMPABLE, prctl

MAX_TEXT = 20_000  # characters of text kept per cell
MAX_IMAGES = 2_000_000  # characters of base64 images kept per cell
FLOOD = 10_000_000  # characters received per cell before it is interrupted
TRUNCATED = "\n[g2c: output truncated]\n"
KERNEL_START_SECONDS = 60  # for the forked kernel to answer


def _start_kernel(connection_file: Path, out: int) -> int:
    """Fork an ipykernel (torch already imported) serving ``connection_file``; its pid.

    The kernel does not keep ``out``: the notebook's code talks to nbclient through the kernel
    protocol only, and cannot rewrite other cells' outputs in the stream the grader reads.
    """
    from jupyter_client.connect import write_connection_file

    write_connection_file(str(connection_file), transport="ipc", ip=str(connection_file.with_name("kernel-ipc")))
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(out)
            os.setpgid(0, 0)  # interrupts go to the kernel's group
            from ipykernel.kernelapp import IPKernelApp

            app = IPKernelApp.instance()
            # inline figures, as in the student's Jupyter (the zygote imported pyplot with Agg, where plt.show() shows nothing)
            app.initialize(["-f", str(connection_file), "--HistoryManager.hist_file=:memory:", "--IPKernelApp.parent_handle=0",
                            "--IPKernelApp.matplotlib=inline"])
            app.start()
            code = 0
        finally:
            os._exit(code)
    return pid


def _client_of_the_forked_kernel():
    """jupyter_client's asynchronous kernel client, with a shorter wait for a kernel that is ready.

    Its wait ends by draining IOPub until 0.2 s pass without a message, and checks that IOPub is
    connected by waiting up to 0.2 s for one: a third of a trivial notebook's run, in every run.
    Here both stop at 20 ms of silence; a status message left over from the handshake is one nbclient
    ignores (it reads only the replies to its own requests).
    """
    import asyncio
    import time
    from queue import Empty

    from jupyter_client.asynchronous import AsyncKernelClient

    class QuickReadyClient(AsyncKernelClient):
        async def _async_wait_for_ready(self, timeout: float | None = None) -> None:
            deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
            while True:
                self.kernel_info()
                try:
                    reply = await self.shell_channel.get_msg(timeout=1)
                except Empty:
                    reply = None
                if reply is not None and reply["msg_type"] == "kernel_info_reply":
                    try:
                        await self.iopub_channel.get_msg(timeout=SILENCE)  # IOPub is connected: its status came
                    except Empty:
                        pass
                    else:
                        self._handle_kernel_info_reply(reply)
                        break
                if not await self._async_is_alive():
                    raise RuntimeError("Kernel died before replying to kernel_info")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")
                await asyncio.sleep(0)
            while True:  # the handshake's other status messages
                try:
                    await self.iopub_channel.get_msg(timeout=SILENCE)
                except Empty:
                    break

        wait_for_ready = _async_wait_for_ready  # what nbclient calls (the base class binds its own)

    return QuickReadyClient


SILENCE = 0.02  # seconds without a message that end a wait for the kernel's handshake


def _manager(pid: int, connection_file: Path):
    """A kernel manager for the forked kernel: nbclient interrupts, polls and stops it through this."""
    from jupyter_client.manager import AsyncKernelManager

    class ForkedKernelManager(AsyncKernelManager):
        @property
        def has_kernel(self) -> bool:
            return True

        async def is_alive(self) -> bool:
            try:
                return os.waitpid(pid, os.WNOHANG) == (0, 0)
            except ChildProcessError:
                return False

        _async_is_alive = is_alive  # what the kernel client asks after a cell times out (no provisioner here)

        async def interrupt_kernel(self) -> None:
            os.killpg(pid, signal.SIGINT)

        async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
            os.killpg(pid, signal.SIGKILL)

        async def cleanup_resources(self, restart: bool = False) -> None:
            pass

    km = ForkedKernelManager(connection_file=str(connection_file), transport="ipc")
    km.client_factory = _client_of_the_forked_kernel()
    km.load_connection_file()
    return km


def _client_class():
    from nbclient import NotebookClient

    class StreamingClient(NotebookClient):
        """Writes each cell as it finishes; keeps at most MAX_TEXT / MAX_IMAGES of its output."""

        def __init__(self, *args, out: int, **kwargs):
            super().__init__(*args, **kwargs)
            self.out = out
            self.received: dict[int, list[int]] = {}

        def output(self, outs, msg, display_id, cell_index):
            content = msg.get("content", {})
            text = len(str(content.get("text", ""))) + len(str(content.get("traceback", "")))
            data = content.get("data", {}) or {}
            images = sum(len(str(v)) for k, v in data.items() if k.startswith("image/"))
            text += sum(len(str(v)) for k, v in data.items() if not k.startswith("image/"))
            seen = self.received.setdefault(cell_index, [0, 0])
            seen[0] += text
            seen[1] += images
            if seen[0] <= MAX_TEXT and seen[1] <= MAX_IMAGES:
                return super().output(outs, msg, display_id, cell_index)
            if not any(o.get("text") == TRUNCATED for o in outs):
                import nbformat

                outs.append(nbformat.v4.new_output("stream", name="stdout", text=TRUNCATED))
            if seen[0] + seen[1] > FLOOD and seen[0] + seen[1] - text - images <= FLOOD:
                asyncio.ensure_future(self.km.interrupt_kernel())
            return None

        async def _async_handle_timeout(self, timeout, cell=None):
            """Interrupt the cell; a kernel still busy at the next cell's timeout ignores interrupts
            (SIGINT caught or blocked): stop it, rather than let every later cell wait in its queue."""
            self.timed_out = True
            reply = await super()._async_handle_timeout(timeout, cell)
            if getattr(self, "previous_timed_out", False):
                await self.km.shutdown_kernel(now=True)
            return reply

        async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
            self.previous_timed_out = getattr(self, "timed_out", False)
            self.timed_out = False
            cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
            if self.timed_out:  # say why it stopped, below the KeyboardInterrupt the interrupt printed
                import nbformat

                cell.outputs.append(nbformat.from_dict({"output_type": "error", **self.error_on_timeout}))
            if cell.cell_type == "code" and "execution_count" in cell:
                line = {"cell": cell_index, "execution_count": cell.get("execution_count"), "outputs": cell.get("outputs", [])}
                os.write(self.out, json.dumps(line).encode() + b"\n")
            return cell

    return StreamingClient


def _timeout_error(seconds: float) -> dict:
    message = f"this cell was stopped after {seconds:g} s (an endless loop?); the cells after it still ran"
    return {"ename": "CellTimeoutError", "evalue": message, "traceback": [f"CellTimeoutError: {message}"]}


def run(payload: dict) -> None:
    """Execute ``payload["notebook"]`` (a JSON string) cell by cell, stopping any cell after
    ``payload["cell_timeout"]`` seconds, and write each cell to stdout."""
    import nbformat

    # Not dumpable: the kernel (same uid) can then neither open /proc/<runner>/fd/ nor ptrace us.
    prctl(PR_SET_DUMPABLE, 0)
    out = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.stdout = open(1, "w", closefd=False)
    connection_file = Path.cwd() / "kernel.json"
    pid = _start_kernel(connection_file, out)
    nb = nbformat.reads(payload["notebook"], as_version=4)
    cell_timeout = payload["cell_timeout"]
    client = _client_class()(
        nb, km=_manager(pid, connection_file), out=out, timeout=int(cell_timeout), allow_errors=True,
        interrupt_on_timeout=True, record_timing=False, iopub_timeout=int(cell_timeout),
        raise_on_iopub_timeout=False, startup_timeout=KERNEL_START_SECONDS, error_on_timeout=_timeout_error(cell_timeout),
    )
    finished = False
    try:
        client.execute()
        finished = True
    finally:
        try:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)  # reaped here, so the sandbox's init counts only what the student left
        except (ProcessLookupError, ChildProcessError):
            pass
        if finished:  # every cell ran; without it the grader reports a kernel that died (or was stopped) halfway
            os.write(out, b'{"done": true}\n')
