# Lines no honest probe writes, on every descriptor this process can write (fd 1 and 2 too).
import os as _os
import stat as _stat

_BAD = [b"5", b"[1]", b'"x"', b"null", b"true", b'{"scenario": ["x"], "data": 1}', b'{"scenario": {"a": 1}}',
        b'{"cell": {}}', b'{"cell": "adamw"}', b'{"cell": ["adamw"], "error": 1}', b'{"scenario": "adamw_first_step"}',
        b'{"scenario": "clip_matches", "data": NaN}', b'{"scenario": "schedule_warmup", "data": {"setting 1": {"step 0": 1e999}}}',
        b'{"scenario": "adamw_frozen", "data": {"parameter without a gradient": {"dtype": "torch.float64", "shape": [0], "b64": ""}}}',
        b'{"scenario": "adamw_first_step", "data": {"run 1": {"after step 1": {"parameter 1": {"dtype": "x", "shape": [-1], "b64": "!!"}}}}}',
        b'{"scenario": "diagnosis", "data": {"diagnosis": {"A": 1}}}', b'{"scenario": "by_hand_p1", "data": {"p1": "nan"}}',
        b"\xff\xfe\x00 not utf-8", b"[" * 200_000 + b"]" * 200_000, b'{"a": ' * 50_000 + b"1" + b"}" * 50_000,
        b'{"scenario": "adamw_first_step", "data": "' + b"x" * 3_000_000 + b'"}', b'{"done": 1}', b'{"done": "yes"}']
for _fd in range(1, 1024):
    try:
        _st = _os.fstat(_fd)
        if _stat.S_ISREG(_st.st_mode) or _fd in (1, 2):
            for _line in _BAD:
                _os.write(_fd, _line + b"\n")
    except OSError:
        pass
