"""The trust boundary: everything that runs beside student code, and nothing that decides a point.

The zygote, the sandbox's init (``box``), the probe harness, the notebook runner, the Linux calls
and the limits live here. Nothing in this folder imports a reference solution, a pitfall, the
comparator or the gradebook (``make lint`` holds it to that with import-linter), so nothing a
sandboxed process can reach holds an answer.
"""
