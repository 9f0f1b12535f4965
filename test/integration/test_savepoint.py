"""
Savepoints (docs/savepoints.md): `statemesh savepoint create` against the real
runtime and LevelDB, `verify` and `inspect` offline.
"""

import json
import os

from harness import endpoint, run_cli, wait_until


def cli(rt, *args, timeout=60):
    return run_cli([str(a) for a in args], address=rt.ingress, timeout=timeout)


def offline(*args, timeout=60):
    return run_cli([str(a) for a in args], address="127.0.0.1:1", timeout=timeout)


def start(sandbox):
    rt = sandbox.runtime([endpoint("test/*", sandbox.testfn())])
    return rt, rt.client()


def test_create_verify_inspect(sandbox):
    rt, c = start(sandbox)
    for i in range(300):
        c.send("test/counter", "k%d" % i, i + 1)
    c.wait_drained()
    sp = sandbox.path("sp1")
    p = cli(rt, "savepoint", "create", sp, "--ranges", 4, "--json")
    assert p.returncode == 0, p.stderr
    m = json.loads(p.stdout)
    assert m["format"] == "statemesh-savepoint" and m["key_groups"] == 4096
    names = sorted(f["name"] for f in m["files"])
    assert names == sorted(["kg-0000-1023.smsp", "kg-1024-2047.smsp", "kg-2048-3071.smsp",
                            "kg-3072-4095.smsp", "node.smsp"])
    assert sorted(os.listdir(sp)) == sorted(names + ["MANIFEST.json"])
    assert not [d for d in os.listdir(os.path.dirname(sp)) if ".partial-" in d]
    assert "event=savepoint.done" in rt.log()

    v = offline("savepoint", "verify", sp)
    assert v.returncode == 0 and v.stdout.startswith("ok "), v.stderr
    i = offline("savepoint", "inspect", sp, "--json")
    assert i.returncode == 0, i.stderr
    info = json.loads(i.stdout)
    assert info["types"]["test/counter"]["addresses_with_state"] == 300
    assert info["totals"]["addresses_with_state"] == 300
    assert info["records"] == m["records"]

    # The directory exists now: a second create is refused, nothing changes.
    again = cli(rt, "savepoint", "create", sp)
    assert again.returncode == 1 and "already exists" in again.stderr
    # A relative path is the CLI's working directory's; no parent: refused.
    missing = cli(rt, "savepoint", "create", sandbox.path("nope/sp"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_damage_is_found_with_file_and_offset(sandbox):
    rt, c = start(sandbox)
    for i in range(2000):
        c.send("test/counter", "d%d" % i, 1)
    c.wait_drained()
    sp = sandbox.path("sp2")
    assert cli(rt, "savepoint", "create", sp, "--ranges", 1).returncode == 0
    f = os.path.join(sp, "kg-0000-4095.smsp")
    data = bytearray(open(f, "rb").read())
    data[5000] ^= 0x40
    open(f, "wb").write(bytes(data))
    v = offline("savepoint", "verify", sp)
    assert v.returncode == 1
    assert "kg-0000-4095.smsp: offset " in v.stderr and "checksum mismatch" in v.stderr, v.stderr
    i = offline("savepoint", "inspect", sp)
    assert i.returncode == 1 and "checksum mismatch" in i.stderr
    os.unlink(os.path.join(sp, "MANIFEST.json"))
    v = offline("savepoint", "verify", sp)
    assert v.returncode == 1 and "not a complete savepoint" in v.stderr


def counters(c, ids):
    return {i: c.int_state("test/counter", i) for i in ids}


def test_restore_delivers_queued_and_delayed_messages_once(sandbox):
    """The function server is down while the savepoint is taken, so the cut
    holds state *and* queued messages; the restored runtime must end with
    exactly the values the original reaches from the same cut."""
    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)], name="orig")
    c = rt.client()
    ids = ["c%d" % i for i in range(200)]
    for n, i in enumerate(ids):
        c.send("test/counter", i, n + 1)
    c.wait_drained()
    fn.kill9()
    for n, i in enumerate(ids):                   # queued: the server is down
        c.send("test/counter", i, 1000)
    req = c.send_request("test/counter", "late", 7)
    req.delay_ms = 1500
    c.ingress.Send(req, timeout=10)
    assert c.stats()["queued_messages"] == 200
    sp = sandbox.path("sp")
    p = cli(rt, "savepoint", "create", sp)
    assert p.returncode == 0, p.stderr
    fn.start()
    c.wait_drained()
    wait_until(lambda: c.int_state("test/counter", "late") == 7, 20)
    want = counters(c, ids + ["late"])
    assert want["c0"] == 1001

    # An empty data dir gets the savepoint; the delayed message fires once.
    fn2 = sandbox.testfn(name="fn2")
    rt2 = sandbox.runtime([endpoint("test/*", fn2)], name="restored", start=False,
                          args=["--from-savepoint", str(sp)])
    rt2.start()
    assert "event=restore.done" in rt2.log()
    c2 = rt2.client()
    c2.wait_drained()
    wait_until(lambda: c2.int_state("test/counter", "late") == 7, 20)
    assert counters(c2, ids + ["late"]) == want
    # Restarted without the flag, nothing is applied twice.
    rt2.kill9()
    rt2.args = []
    rt2.start()
    c2 = rt2.client()
    c2.wait_drained()
    assert counters(c2, ids + ["late"]) == want

    # The data dir is no longer empty: a second restore is refused.
    rt2.stop()
    rt2.args = ["--from-savepoint", str(sp)]
    rt2.start(wait=False)
    assert rt2.wait_exit(timeout=20) == 3
    assert "already holds a store" in rt2.log()


def test_restore_by_key_groups_splits_the_database(sandbox):
    rt, c = start(sandbox)
    ids = ["k%d" % i for i in range(300)]
    for i in ids:
        c.send("test/counter", i, 3)
    c.wait_drained()
    sp = sandbox.path("sp")
    assert cli(rt, "savepoint", "create", sp).returncode == 0
    halves = []
    for n, kgs in enumerate(("0-2047", "2048-4095")):
        r = sandbox.runtime([endpoint("test/*", sandbox.testfn(name="f%d" % n))],
                            name="half%d" % n, start=False,
                            args=["--from-savepoint", str(sp), "--key-groups", kgs])
        r.start()
        halves.append(counters(r.client(), ids))
    for i in ids:                                  # each address in exactly one half
        assert sorted((halves[0][i], halves[1][i])) == [0, 3], i
    assert 50 < sum(1 for i in ids if halves[0][i] == 3) < 250


def test_restore_refuses_a_damaged_savepoint(sandbox):
    rt, c = start(sandbox)
    for i in range(500):
        c.send("test/counter", "x%d" % i, 1)
    c.wait_drained()
    sp = sandbox.path("sp")
    assert cli(rt, "savepoint", "create", sp, "--ranges", 1).returncode == 0
    f = os.path.join(sp, "kg-0000-4095.smsp")
    data = bytearray(open(f, "rb").read())
    data[len(data) // 2] ^= 1
    open(f, "wb").write(bytes(data))
    r = sandbox.runtime([endpoint("test/*", sandbox.testfn(name="f2"))], name="r2", start=False,
                        args=["--from-savepoint", str(sp)])
    r.start(wait=False)
    assert r.wait_exit(timeout=20) == 3
    assert "does not verify, nothing restored" in r.log() and "kg-0000-4095.smsp: offset" in r.log()
    assert not (r.data_dir / "store" / "CURRENT").exists()
