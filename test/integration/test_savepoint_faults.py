"""
Savepoints under faults (docs/savepoints.md): a savepoint slow enough to
stream progress, kill -9 of the runtime mid-savepoint, SIGINT of the CLI,
a savepoint under continuous load then restore, and the reader's bounds on
damaged files. The writer is slowed with the test-only knob
STATEMESH_FAULT_SAVEPOINT_SLEEP_US (spcreate.h). Damage found by checksums
(verify, inspect, restore) is covered by test_savepoint.py.
"""

import json
import os
import signal
import struct
import subprocess
import time

from harness import binary, endpoint, run_cli, scaled, wait_until


def cli(rt, *args, timeout=60):
    return run_cli([str(a) for a in args], address=rt.ingress, timeout=timeout)


def offline(*args, timeout=60):
    return run_cli([str(a) for a in args], address="127.0.0.1:1", timeout=timeout)


def slow_env(us):
    return dict(os.environ, STATEMESH_FAULT_SAVEPOINT_SLEEP_US=str(us))


def fill(c, n, prefix="k"):
    for i in range(n):
        c.send("test/counter", "%s%d" % (prefix, i), i + 1)
    c.wait_drained()


def partials(parent):
    return [d for d in os.listdir(parent) if ".partial-" in d]


def test_fault_knob_bad_value_refused(sandbox):
    for bad in ("x", "-1", "99999999999", ""):
        rt = sandbox.runtime([endpoint("test/*", sandbox.testfn(name="f" + str(len(bad))))],
                             name="bad%d" % len(bad), start=False, env=slow_env(bad))
        rt.start(wait=False)
        assert rt.wait_exit(timeout=20) == 2
        assert "STATEMESH_FAULT_SAVEPOINT_SLEEP_US" in rt.log(), rt.log()


def test_slow_savepoint_streams_progress_and_the_cli_returns(sandbox):
    """A savepoint of several seconds: the runtime streams progress every
    250 ms; the CLI must print it and return with the manifest (it used to
    hang once progress messages arrived)."""
    rt = sandbox.runtime([endpoint("test/*", sandbox.testfn())], env=slow_env(400000))
    c = rt.client()
    fill(c, 300)
    sp = sandbox.path("slow")
    t0 = time.monotonic()
    p = cli(rt, "savepoint", "create", sp, "--ranges", 4, "--json", timeout=60)
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    assert took >= 2.0                     # 5 files, >= 0.4 s each: progress was streamed
    m = json.loads(p.stdout)
    assert m["records"] >= 300 and len(m["files"]) == 5
    assert "records" in p.stderr            # progress lines on stderr
    assert offline("savepoint", "verify", sp).returncode == 0
