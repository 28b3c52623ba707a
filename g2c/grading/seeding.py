"""The probe's seed: from the answers' code and a course secret, so the same code gets the same grade.

A seed drawn afresh per grading made verdicts a lottery for mistakes near a tolerance (one mistake
lost a cell on 19 draws of 20 and kept it on the 20th), and a regrade could change a grade. Here the
seed is an HMAC of the probed cells' sources, normalized (comments, blank lines and formatting do
not count: the code's syntax tree does), under a secret kept beside the gradebook, never sent to the
sandbox: identical answers and regrades draw identical inputs, any change of code draws new ones,
and without the secret no one can predict the inputs of a submission.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from g2c.grading.sandbox.probe import ipython_free

SECRET_FILE = "probe_secret"  # beside the gradebook; created once, mode 0600; .gitignore keeps it out of the course repository
SECRET_BYTES = 32


def normalized(source: str) -> str:
    """A cell's code without what does not change what it computes: its syntax tree when it parses
    (comments and formatting dropped), else its non-blank lines stripped."""
    text = ipython_free(source)
    try:
        return ast.dump(ast.parse(text))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def probe_seed(secret: bytes, sources: dict[str, str], probed: list[str]) -> int:
    """A 31-bit seed from the probed cells' normalized sources (in probing order) under ``secret``."""
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    for grade_id in probed:
        mac.update(grade_id.encode() + b"\0" + normalized(sources.get(grade_id, "")).encode() + b"\0\0")
    return int.from_bytes(mac.digest()[:4], "big") & 0x7FFFFFFF


def course_secret(folder: Path) -> bytes:
    """The course's probe secret, in ``folder`` (the gradebook's): created on first use, then read."""
    path = folder / SECRET_FILE
    folder.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another batch created it first
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(SECRET_BYTES))
    secret = path.read_bytes()
    if len(secret) < SECRET_BYTES:
        raise ValueError(f"{path} is shorter than {SECRET_BYTES} bytes: delete it to make a new one (grades will be drawn anew)")
    return secret
