# Kernel keys outlive every namespace of the sandbox: they belong to a uid. Add a key to the user keyring, to the
# session keyring, ask for the uid's persistent keyring (kept three days after its last process), look one up.
# KEY_NAME is defined before this text (the test's marker). Prints each call's result and errno.
import ctypes as _ct
import os as _os

_NUMBERS = {"x86_64": {"add_key": 248, "request_key": 249, "keyctl": 250},
            "aarch64": {"add_key": 217, "request_key": 218, "keyctl": 219}}[_os.uname().machine]
_KEY_SPEC_SESSION, _KEY_SPEC_USER, _KEYCTL_GET_PERSISTENT = -3, -4, 22
_libc = _ct.CDLL(None, use_errno=True)
_libc.syscall.restype = _ct.c_long
for _label, _number, _args in [
    ("add_key user", _NUMBERS["add_key"], (b"user", KEY_NAME.encode(), b"left behind", _ct.c_size_t(11), _ct.c_int(_KEY_SPEC_USER))),
    ("add_key session", _NUMBERS["add_key"], (b"user", KEY_NAME.encode(), b"left behind", _ct.c_size_t(11),
                                              _ct.c_int(_KEY_SPEC_SESSION))),
    ("keyctl persistent", _NUMBERS["keyctl"], (_ct.c_int(_KEYCTL_GET_PERSISTENT), _ct.c_int(-1), _ct.c_int(_KEY_SPEC_USER))),
    ("request_key", _NUMBERS["request_key"], (b"user", KEY_NAME.encode(), None, _ct.c_int(_KEY_SPEC_USER))),
]:
    _ct.set_errno(0)
    _result = _libc.syscall(_number, *_args)
    print("KEYRING", _label, _result, _ct.get_errno())
