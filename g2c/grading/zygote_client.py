"""Stand-in for a kernel forked by the grading zygote: what jupyter_client launches and watches.

Run as ``python -I -S zygote_client.py SOCKET BOX_JSON CONNECTION_FILE`` (standard library only,
so it starts in milliseconds). It asks the zygote for a sandboxed kernel, passes interrupts on to
it, and exits with the kernel's exit code. When jupyter_client kills it, the zygote sees the
connection close and kills the kernel's whole sandbox.
"""

import json
import os
import signal
import socket
import sys


def main() -> int:
    path, box, connection_file = sys.argv[1:4]
    conn = socket.socket(socket.AF_UNIX)
    conn.connect(path)
    request = {"kind": "kernel", "args": ["-f", connection_file], "box": json.loads(box), "cwd": os.getcwd()}
    conn.sendall(json.dumps(request).encode() + b"\n")
    reader = conn.makefile("rb")
    pid = json.loads(reader.readline())["pid"]
    signal.signal(signal.SIGINT, lambda *_: os.killpg(pid, signal.SIGINT))  # the kernel's own interrupt
    signal.signal(signal.SIGTERM, lambda *_: os._exit(143))  # connection closes: the zygote kills the kernel
    line = reader.readline()
    return json.loads(line)["exit"] if line else 1


if __name__ == "__main__":
    sys.exit(main())
