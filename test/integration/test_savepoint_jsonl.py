"""
Savepoints as JSON lines (docs/savepoints.md "JSON lines"): `statemesh
savepoint export DIR --jsonl` and `statemesh savepoint from-jsonl FILE DIR`
against savepoints written by the real runtime, restored into real runtimes.
"""

import json
import os
import time

from harness import endpoint, run_cli, wait_until


def cli(rt, *args, timeout=60):
    return run_cli([str(a) for a in args], address=rt.ingress, timeout=timeout)


def offline(*args, timeout=120):
    return run_cli([str(a) for a in args], address="127.0.0.1:1", timeout=timeout)


def export(sp, out):
    p = offline("savepoint", "export", sp, "--jsonl", "--out", out)
    assert p.returncode == 0, p.stderr
    return open(out, "rb").read()


DELAY_MS = 12000


def test_export_from_jsonl_restore_round_trip(sandbox):
    """State, queued messages and delayed messages (from the ingress and from
    a function, with a token) go through export -> from-jsonl -> restore ->
    savepoint -> export unchanged, and each message is delivered once."""
    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)], name="orig")
    c = rt.client()
    ids = ["c%d" % i for i in range(50)]
    for n, i in enumerate(ids):
        c.send("test/counter", i, n + 1)
    c.send("test/effects", "e1", "after %d test/counter late2 tok" % DELAY_MS)
    c.wait_drained()
    fn.kill9()
    for i in ids:                                  # queued: the server is down
        c.send("test/counter", i, 1000)
    req = c.send_request("test/counter", "late", 7)
    req.delay_ms = DELAY_MS
    c.ingress.Send(req, timeout=10)
    sp = sandbox.path("sp")
    assert cli(rt, "savepoint", "create", sp).returncode == 0

    a = export(sp, sandbox.path("a.jsonl"))
    lines = [json.loads(l) for l in a.decode().splitlines()]
    by = {(l["type"], l["id"]): l for l in lines}
    assert len(by) == len(lines) == 52
    assert by[("test/counter", "c3")] == {
        "type": "test/counter", "id": "c3",
        "state": {"n": {"typename": "statemesh/int64", "value": 4}},
        "messages": [{"typename": "statemesh/int64", "value": 1000}]}
    late = by[("test/counter", "late")]["delayed"]
    assert len(late) == 1 and late[0]["value"] == 7 and late[0]["from_ingress"] is True
    e1 = by[("test/effects", "e1")]["delayed"]
    assert len(e1) == 1 and e1[0]["target"] == {"type": "test/counter", "id": "late2"}
    assert e1[0]["token"] == "tok" and "from_ingress" not in e1[0]
    only = offline("savepoint", "export", sp, "--jsonl", "--type", "test/effects")
    assert only.returncode == 0 and [json.loads(l)["id"] for l in only.stdout.splitlines()] == ["e1"]

    # from-jsonl builds a savepoint that verifies and exports the same bytes.
    sp2 = sandbox.path("sp2")
    p = offline("savepoint", "from-jsonl", sandbox.path("a.jsonl"), sp2, "--ranges", 5)
    assert p.returncode == 0, p.stderr
    assert "52 addresses" in p.stdout
    assert offline("savepoint", "verify", sp2).returncode == 0
    assert export(sp2, sandbox.path("b.jsonl")) == a

    # Restored into a runtime whose function server is down, a savepoint of
    # it exports the same bytes again.
    fn2 = sandbox.testfn(name="fn2", start=False)
    rt2 = sandbox.runtime([endpoint("test/*", fn2)], name="restored", start=False,
                          args=["--from-savepoint", str(sp2)])
    rt2.start()
    assert "event=restore.done" in rt2.log()
    sp3 = sandbox.path("sp3")
    assert cli(rt2, "savepoint", "create", sp3).returncode == 0
    assert export(sp3, sandbox.path("c.jsonl")) == a

    # Delivered exactly once: queued now, delayed at their due time.
    fn2.start()
    c2 = rt2.client()
    want = {i: n + 1 + 1000 for n, i in enumerate(ids)}
    wait_until(lambda: c2.int_state("test/counter", "c49") == want["c49"], 20)
    wait_until(lambda: c2.int_state("test/counter", "late") == 7 and
               c2.int_state("test/counter", "late2") == 1, DELAY_MS / 1000 + 20)
    c2.wait_drained()
    time.sleep(1)
    assert {i: c2.int_state("test/counter", i) for i in ids} == want
    assert c2.int_state("test/counter", "late") == 7
    assert c2.int_state("test/counter", "late2") == 1


def test_bad_lines_give_file_line_errors(sandbox):
    good = '{"type":"test/counter","id":"a","state":{"n":{"typename":"statemesh/int64","value":1}}}'
    src = sandbox.path("bad.jsonl")
    with open(src, "w") as f:
        f.write(good + "\n")
        f.write('{"type":"test/counter","id":"b",\n')                              # 2: bad JSON
        f.write('{"type":"test/counter","id":"c","colour":"red"}\n')               # 3: unknown member
        f.write('{"type":"test/counter","id":"d","state":{"n":'
                '{"typename":"statemesh/int64","value":"x"}}}\n')                  # 4: bad value
        f.write('{"type":"test/counter","id":"e","state":{"n":'
                '{"typename":"statemesh/bytes","hex":"' + "ab" * (32 << 20) + '"}}}\n')  # 5: oversize
        f.write("\n")
        f.write(good.replace('"a"', '"f"') + "\n")                                 # 7: fine
    out = sandbox.path("sp")
    p = offline("savepoint", "from-jsonl", src, out)
    assert p.returncode == 1
    errs = [l for l in p.stderr.splitlines() if "bad.jsonl:" in l]
    assert len(errs) == 4, p.stderr
    assert "bad.jsonl:2: not valid JSON" in errs[0]
    assert "bad.jsonl:3: unknown member \"colour\"" in errs[1]
    assert "bad.jsonl:4: state \"n\": \"value\" must be a 64-bit integer" in errs[2]
    assert "bad.jsonl:5: line longer than 67108864 bytes" in errs[3]
    assert "4 bad lines" in p.stderr and "nothing written" in p.stderr
    assert not [d for d in os.listdir(os.path.dirname(out)) if d.startswith("sp")]

    # The same address twice: both lines are named, nothing is written.
    dup = sandbox.path("dup.jsonl")
    with open(dup, "w") as f:
        f.write(good + "\n" + good.replace('"a"', '"b"') + "\n" + good + "\n")
    p = offline("savepoint", "from-jsonl", dup, out)
    assert p.returncode == 1
    assert "dup.jsonl:3: address test/counter/a is also on line 1" in p.stderr, p.stderr
    assert not [d for d in os.listdir(os.path.dirname(out)) if d.startswith("sp")]

    # A damaged savepoint is not exported.
    with open(sandbox.path("ok.jsonl"), "w") as f:
        f.write(good + "\n")
    assert offline("savepoint", "from-jsonl", sandbox.path("ok.jsonl"), out, "--ranges", 1).returncode == 0
    f = os.path.join(out, "kg-0000-4095.smsp")
    data = bytearray(open(f, "rb").read())
    data[30] ^= 1
    open(f, "wb").write(bytes(data))
    p = offline("savepoint", "export", out, "--jsonl")
    assert p.returncode == 1 and "checksum mismatch" in p.stderr and p.stdout == ""
