"""Issue 22 red team, parts 4 and 6: statuses from what the sandbox measured; nothing survives a run, and a run's
resources are its own.

The attacks, each closed by a wall outside the student's processes:

- a MemoryError an answer raises itself made the status ``memory`` (the worker read the exception's name from
  the probe's record): statuses now come from the run's facts (``box.RunFacts``: its exit, its cgroup's count,
  its processes' address space), which the init and C1 write; the raise is a wrong answer, that part lost;
- a key added to a kernel keyring outlived the run (keyrings belong to a uid, and no namespace covers them):
  a seccomp filter refuses the keyring calls (and namespaces, ptrace, bpf, perf, io_uring, mounts), and each
  run has a uid of its own;
- several processes, each under RLIMIT_AS, held several times ``--memory`` together: a memory cgroup per run
  bounds their sum (the init watches the sum where no cgroup can be made), and the status says ``memory``.

Fast tests hold each wall on its own (in this process or a small child); the slow ones grade the attacks
(source in tests/hostile/keyring.py) in the shared batch, beside an answer that raises
MemoryError (its other parts keep full marks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import test_autograde_hostile as H  # the wrong notebook, hostile(), appended(), the status table
from conftest import TOKEN, BatchPaths, cell_of, solution, still_there, without_demos

from g2c.grading.sandbox.box import UID_BASE, RunFacts, isolation_available, run_uid
from g2c.grading.sandbox.syscalls import seccomp_available
from g2c.grading.worker import Job, _status, fresh_uid

KEY_NAME = f"{TOKEN}-i22-key"
JOB = Job("s", "", b"", b"", {}, {}, memory_mb=2048)
FORGED = {"cells": {"schedule": {"error": "MemoryError", "message": "out of memory"}}, "done": True}


def probe_run(exit: int = 0, finished: bool = True, **facts) -> SimpleNamespace:
    """What ``worker._status`` reads of a probe's run: its end and the sandbox's facts."""
    return SimpleNamespace(finished=finished, exit=exit, facts=RunFacts(**facts))


# ---------------------------------------------------------------- statuses from facts


def test_a_memory_error_in_the_record_is_no_memory_status():
    assert _status(probe_run(), FORGED, JOB) == ("graded", "")


def test_memory_is_what_the_sandbox_counted():
    assert _status(probe_run(memory_kills=1, memory_wall="cgroup"), FORGED, JOB)[0] == "memory"
    assert _status(probe_run(memory_failcnt=3, memory_wall="cgroup"), {"done": True}, JOB)[0] == "memory"
    assert "together" in _status(probe_run(-9, memory_kills=2, memory_wall="watch"), {}, JOB)[1]
    assert "address-space" in _status(probe_run(1, address_peak_mb=1900.0), {}, JOB)[1]  # RLIMIT_AS: within 1/8
    assert _status(probe_run(address_peak_mb=1500.0, memory_peak_mb=1500.0), {"done": True}, JOB)[0] == "graded"


def test_timeout_and_crashed_come_from_the_run_not_the_record():
    assert _status(probe_run(finished=False), FORGED, JOB)[0] == "timeout"
    assert _status(probe_run(1, exit_code=-6), {"done": True}, JOB) == (
        "crashed", "the process running the answer cells ended early (exit code -6)")


def test_run_facts_are_read_strictly():
    facts = RunFacts(exit_code=-9, max_rss_mb=12.5, memory_wall="cgroup", memory_kills=2)
    assert RunFacts.parse(facts.to_json()) == facts
    data = json.loads(facts.to_json())
    missing = {k: v for k, v in data.items() if k != "exit_code"}
    for bad in ({**data, "memory_kills": True}, {**data, "memory_kills": "2"}, missing, [1, 2], "x"):
        assert RunFacts.parse(json.dumps(bad).encode()) == RunFacts(), bad
    assert RunFacts.parse(b"\xff{") == RunFacts()


# ---------------------------------------------------------------- a uid per run


def test_every_run_has_a_uid_no_other_run_has():
    pids = (1, 2, 300, 32767, 32768, 2**22 - 1)  # up to PID_MAX_LIMIT
    uids = [run_uid(pid, run) for pid in pids for run in range(512)]
    assert len(set(uids)) == len(uids)
    assert UID_BASE <= min(uids) and max(uids) < 2**32 - 1  # (uid_t)-1 means "unchanged" to set*id
    assert len({fresh_uid() for _ in range(4)}) == 4


# ---------------------------------------------------------------- the system-call filter

FILTERED = """
import ctypes, json, os, subprocess, sys, threading
from g2c.grading.sandbox.syscalls import deny_syscalls
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
deny_syscalls()
def call(number, *args):
    ctypes.set_errno(0)
    return [libc.syscall(number, *args), ctypes.get_errno()]
seen = {"add_key": call(248, b"user", b"g2c-filter-test", b"x", ctypes.c_size_t(1), ctypes.c_int(-4)),
        "keyctl": call(250, ctypes.c_int(0), ctypes.c_int(-4), ctypes.c_int(0)),
        "unshare user": call(272, ctypes.c_long(0x10000000)),
        "clone new user": call(56, ctypes.c_long(0x10000000 | 17), 0, 0, 0, 0),
        "ptrace": call(101, ctypes.c_long(16), ctypes.c_long(os.getppid()), 0, 0),
        "bpf": call(321, 0, 0, 0), "perf_event_open": call(298, 0, 0, -1, -1, 0), "io_uring_setup": call(425, 1, 0)}
thread = threading.Thread(target=lambda: seen.update(thread=True))
thread.start(); thread.join()
seen["subprocess"] = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True).stdout.strip()
print(json.dumps(seen))
"""


@pytest.mark.skipif(seccomp_available() is not None or os.uname().machine != "x86_64", reason="libseccomp on x86_64")
def test_the_filter_refuses_keyrings_namespaces_and_tracing_and_keeps_threads_and_processes():
    seen = json.loads(subprocess.run([sys.executable, "-c", FILTERED], capture_output=True, text=True, check=True).stdout)
    assert seen.pop("thread") is True and seen.pop("subprocess") == "42"
    assert seen == dict.fromkeys(seen, [-1, 1])  # each: EPERM


# ---------------------------------------------------------------- the run's memory as a whole

HOGGING = """
import os, sys, time, json
from g2c.grading.sandbox.cgroup import RunGroup, usage
group = RunGroup.create(64, 32)
if group is None:
    print(json.dumps(None)); sys.exit()
counters = group.counters()
pid = os.fork()
if pid == 0:
    group.join()
    kids = []
    for _ in range(3):
        kid = os.fork()
        if kid == 0:
            hog = bytearray(30 * 2**20)  # each under the bound, together over it
            time.sleep(0.5)
            os._exit(0)
        kids.append(kid)
    os._exit(sum(os.WIFSIGNALED(os.waitpid(kid, 0)[1]) for kid in kids))
killed = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
counted = usage(counters)
print(json.dumps({"killed": killed, "oom_kills": counted.oom_kills, "failcnt": counted.failcnt, "removed": group.remove(),
                  "gone": not group.memory.exists()}))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="a cgroup needs root")
def test_a_run_group_bounds_its_processes_together_and_is_removed():
    seen = json.loads(subprocess.run([sys.executable, "-c", HOGGING], capture_output=True, text=True, check=True).stdout)
    if seen is None:
        pytest.skip("no writable cgroup v1 memory hierarchy here: the init's watch is the wall (next test)")
    assert seen["killed"] >= 1 and seen["oom_kills"] == seen["killed"]  # (failcnt: this kernel's v1 counter stays 0)
    assert seen["removed"] and seen["gone"]


WATCHED = """
import functools, os, sys, time
from g2c.grading.sandbox import box
from g2c.grading.sandbox.syscalls import MS_PRIVATE, MS_REC, SANDBOX_NAMESPACES, mount, unshare
def hogs():
    for _ in range(3):
        if os.fork() == 0:
            hog = bytearray(150 * 2**20)  # each under its 300 MB address space, together over the run's 300 MB
            time.sleep(20)  # killed by the init's watch long before
            os._exit(0)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
unshare(SANDBOX_NAMESPACES)
mount("none", "/", None, MS_REC | MS_PRIVATE)
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read)
    os._exit(box.init(box.Box(box.run_uid(os.getpid(), 0), box._package_path(), 300), hogs, os.dup(2), write, watch_total=True))
os.close(write)
os.waitpid(pid, 0)
sys.stdout.write(os.read(read, 4096).decode())
"""


@pytest.mark.skipif(isolation_available() is not None, reason=f"no sandbox here: {isolation_available()}")
def test_where_no_cgroup_bounds_a_run_its_init_kills_it_above_the_bound():
    facts = RunFacts.parse(subprocess.run([sys.executable, "-c", WATCHED], capture_output=True, check=True, timeout=15).stdout)
    assert facts.memory_wall == "watch" and facts.memory_kills >= 1 and facts.memory_peak_mb > 300
    assert facts.memory_hit(300) and "together" in facts.memory_hit(300)


# ---------------------------------------------------------------- graded in the shared batch


def batch_submissions(paths: BatchPaths) -> dict[str, object]:
    W = H.attack_base()
    raises = without_demos(solution())
    cell = cell_of(raises, "schedule")
    cell.source = "raise MemoryError('the schedule needs more memory than there is')\n\n" + cell.source
    return {
        "i22-box-raises-memory-error": raises,
        "i22-box-adds-keys": H.appended(W, "adamw", f"KEY_NAME = {KEY_NAME!r}\n" + H.hostile("keyring.py")),
    }


@pytest.mark.slow
def test_a_memory_error_an_answer_raises_costs_that_part_only(batch):
    """Also the honest student beside the attacks: every other part keeps full marks."""
    row = batch.rows["i22-box-raises-memory-error"]
    assert row["status"] == "graded", H.result(batch.out, "i22-box-raises-memory-error").get("detail")
    lost = set(H.PART_CELLS["schedule"])
    assert H.autograded(row) == {cell: 0.0 if cell in lost else points for cell, points in H.POINTS.items()}


@pytest.mark.slow
def test_a_key_is_refused_in_the_run_and_none_outlives_the_batch(batch):
    calls = [line.split() for line in H.printed(batch.out, "i22-box-adds-keys").splitlines() if line.startswith("KEYRING")]
    assert len(calls) == 4 and all(call[-2:] == ["-1", "1"] for call in calls), calls  # each: -1, EPERM
    new_owners = batch.after["keys"] - batch.before["keys"]
    assert {uid for uid in new_owners if uid >= UID_BASE} == set(), "a sandbox uid owns kernel keys after the batch"
    assert KEY_NAME not in open("/proc/keys").read()


@pytest.mark.slow
def test_no_run_group_outlives_its_run(batch):
    """Timeouts included (the batch's hangs): the zygote removes each run's cgroup once its PID namespace is empty."""
    assert still_there(batch.after["cgroups"] - batch.before["cgroups"]) == set()

