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


def start_create(rt, sp, *extra):
    """The CLI's `savepoint create` as a child process (not waited for)."""
    argv = [str(binary("statemesh")), "--address", rt.ingress, "savepoint", "create", str(sp)]
    argv += [str(a) for a in extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill9_mid_savepoint_leaves_nothing_that_verifies(sandbox):
    rt = sandbox.runtime([endpoint("test/*", sandbox.testfn())], env=slow_env(300000))
    c = rt.client()
    fill(c, 500)
    before = {("k%d" % i): c.int_state("test/counter", "k%d" % i) for i in range(0, 500, 25)}
    sp = sandbox.path("sp")
    parent = os.path.dirname(str(sp))
    cp = start_create(rt, sp, "--ranges", 8)
    # Mid-savepoint: the partial directory holds some files, not all.
    wait_until(lambda: partials(parent) and len(os.listdir(os.path.join(parent, partials(parent)[0])))
               >= 2, 30)
    rt.kill9()
    out, err = cp.communicate(timeout=scaled(30))
    assert cp.returncode != 0, out
    assert not os.path.exists(sp)
    left = partials(parent)
    assert len(left) == 1                       # what kill -9 left: no manifest, never verifies
    assert "MANIFEST.json" not in os.listdir(os.path.join(parent, left[0]))
    v = offline("savepoint", "verify", os.path.join(parent, left[0]))
    assert v.returncode == 1 and "not a complete savepoint" in v.stderr, v.stderr
    assert offline("savepoint", "verify", sp).returncode == 1

    # The runtime recovers with its data; a new savepoint to the same path
    # succeeds and removes the dead process's partial directory.
    rt.start()
    c = rt.client()
    for k, n in before.items():
        assert c.int_state("test/counter", k) == n
    p = cli(rt, "savepoint", "create", sp, "--ranges", 2)
    assert p.returncode == 0, p.stderr
    assert partials(parent) == []
    assert offline("savepoint", "verify", sp).returncode == 0
    assert "event=savepoint.stale_removed" in rt.log()


def test_sigint_of_the_cli_cancels_the_savepoint(sandbox):
    rt = sandbox.runtime([endpoint("test/*", sandbox.testfn())], env=slow_env(300000))
    c = rt.client()
    fill(c, 300)
    sp = sandbox.path("sp")
    parent = os.path.dirname(str(sp))
    cp = start_create(rt, sp, "--ranges", 8)
    wait_until(lambda: "event=savepoint.start" in rt.log() and partials(parent), 30)
    time.sleep(0.5)
    cp.send_signal(signal.SIGINT)
    cp.communicate(timeout=scaled(30))
    assert cp.returncode != 0
    # The runtime sees the call go, stops the writer and removes its files.
    wait_until(lambda: "event=savepoint.cancelled" in rt.log(), 30)
    wait_until(lambda: partials(parent) == [], 10)
    assert not os.path.exists(sp)
    # One savepoint at a time: the cancelled one no longer counts.
    p = cli(rt, "savepoint", "create", sp, "--ranges", 1)
    assert p.returncode == 0, p.stderr
    assert offline("savepoint", "verify", sp).returncode == 0


def test_savepoint_under_load_then_restore_matches_the_cut(sandbox):
    """One sender sends continuously, each Send acknowledged before the next;
    send j adds j+1 to counter j % 40. The cut holds exactly the sends
    committed by then: a prefix of P sends, lo <= P <= hi (acked before the
    request / started before the answer). Restored and drained, every counter
    must equal its value after exactly that prefix: state at the cut plus the
    queued messages delivered once."""
    import threading
    rt = sandbox.runtime([endpoint("test/*", sandbox.testfn())], env=slow_env(150000))
    c = rt.client()
    n_ids = 40
    ids = ["c%d" % i for i in range(n_ids)]
    sent = [0]
    stop = threading.Event()

    def load():
        lc = rt.client()
        while not stop.is_set():
            j = sent[0]
            lc.send("test/counter", ids[j % n_ids], j + 1)
            sent[0] = j + 1

    t = threading.Thread(target=load, daemon=True)
    t.start()
    wait_until(lambda: sent[0] >= 200, 30)
    lo = sent[0]
    sp = sandbox.path("sp")
    p = cli(rt, "savepoint", "create", sp, "--ranges", 4, "--json")
    hi = sent[0] + 1
    time.sleep(0.3)
    stop.set()
    t.join(timeout=scaled(30))
    assert p.returncode == 0, p.stderr
    m = json.loads(p.stdout)
    assert hi - lo >= 5                 # the load went on while the savepoint was written
    assert m["cut"]["checkpoint"] > 0

    rt2 = sandbox.runtime([endpoint("test/*", sandbox.testfn(name="fn2"))], name="restored",
                          start=False, args=["--from-savepoint", str(sp)])
    rt2.start()
    c2 = rt2.client()
    c2.wait_drained()
    got = {i: c2.int_state("test/counter", i) for i in ids}

    def after(P):
        v = {i: 0 for i in ids}
        for j in range(P):
            v[ids[j % n_ids]] += j + 1
        return v

    total = sum(got.values())
    cuts = [P for P in range(lo, hi + 1) if P * (P + 1) // 2 == total]
    assert cuts, "restored total %d is no prefix of sends in [%d, %d]" % (total, lo, hi)
    assert got == after(cuts[0])
    # The original, meanwhile, went on past the cut.
    c.wait_drained()
    assert sum(c.int_state("test/counter", i) for i in ids) == sent[0] * (sent[0] + 1) // 2


def test_damaged_block_length_is_refused_without_a_huge_allocation(sandbox):
    """A block length damaged to ~512 MiB: the reader must not believe it
    (it may not exceed what the file holds) and names file and offset."""
    rt = sandbox.runtime([endpoint("test/*", sandbox.testfn())])
    c = rt.client()
    fill(c, 100)
    sp = sandbox.path("sp")
    assert cli(rt, "savepoint", "create", sp, "--ranges", 1).returncode == 0
    f = os.path.join(sp, "kg-0000-4095.smsp")
    data = bytearray(open(f, "rb").read())
    struct.pack_into("<I", data, 16, 0x1FFFFFF0)
    open(f, "wb").write(bytes(data))
    v = offline("savepoint", "verify", sp)
    assert v.returncode == 1
    assert "kg-0000-4095.smsp: offset 16: block length 536870896 does not fit" in v.stderr, v.stderr
    r = sandbox.runtime([endpoint("test/*", sandbox.testfn(name="f2"))], name="r2", start=False,
                        args=["--from-savepoint", str(sp)])
    r.start(wait=False)
    assert r.wait_exit(timeout=20) == 3
    assert "kg-0000-4095.smsp: offset 16: block length" in r.log()
