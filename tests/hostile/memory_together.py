# Several processes, each well under its address-space limit (RLIMIT_AS), together holding more than --memory.
# HOGS and HOG_MB are defined before this text. In the probe only (context.py's _CTX): the answers' status.
# Every page written (bytearray zero-fills), held until each hog is ready or dead, then given back.
import os as _os
import select as _select
import time as _time

if _CTX is not None:
    _ready_r, _ready_w = _os.pipe()
    _go_r, _go_w = _os.pipe()
    _hogs = []
    for _ in range(HOGS):
        _pid = _os.fork()
        if _pid == 0:
            try:
                _os.close(_go_w)
                _hog = bytearray(HOG_MB * 2**20)
                _os.write(_ready_w, b"x")
                _os.read(_go_r, 1)  # until the parent lets go
            finally:
                _os._exit(0)
        _hogs.append(_pid)
    _os.close(_ready_w)
    _os.close(_go_r)
    _ready, _ended, _deadline = 0, {}, _time.monotonic() + 10
    while _ready + len(_ended) < len(_hogs) and _time.monotonic() < _deadline:
        if _select.select([_ready_r], [], [], 0.05)[0]:
            _ready += len(_os.read(_ready_r, 64))
        for _pid in _hogs:
            if _pid not in _ended and (_done := _os.waitpid(_pid, _os.WNOHANG))[0]:
                _ended[_pid] = _done[1]
    _os.close(_go_w)
    for _pid in _hogs:
        if _pid not in _ended:
            _ended[_pid] = _os.waitpid(_pid, 0)[1]
    print("HOGS ready", _ready, "killed", sum(_os.WIFSIGNALED(s) for s in _ended.values()))
