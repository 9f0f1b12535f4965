"""
Bootstrap (docs/savepoints.md#bootstrap) against a live runtime:

    statemesh bootstrap FILE|- [--mode create-only|overwrite] [--dry-run] [--batch N] [--json]

  - a file of JSON lines is loaded and reads back (state get, state list);
    its queued messages are delivered exactly once, its delayed ones when due;
  - the same file again changes nothing (ALREADY_LOADED), even after kill -9
    in the middle of a large load and a restart;
  - create-only leaves an address with state alone (EXISTS), overwrite
    replaces its state; --dry-run changes nothing;
  - bad lines give FILE:LINE errors, the rest is loaded, nothing of a bad
    line is applied;
  - a bootstrap racing with messages to the same addresses loses no update.

test/counter (testfn) adds each int64 message to its state n.
"""

import json
import subprocess
import threading
import time

import pytest

from harness import binary, endpoint, int64, run_cli, scaled, wait_until

pytestmark = pytest.mark.needs("statemeshd", "statemesh", "test/fn/testfn")

I64 = "statemesh/int64"


def cli(rt, *args, input=None, timeout=120.0):
    return run_cli(list(args), address=rt.ingress, input=input, timeout=timeout)


def line(id_, n=None, msgs=(), delayed=(), type_="test/counter", **extra):
    d = {"type": type_, "id": id_}
    if n is not None:
        d["state"] = {"n": {"typename": I64, "value": n}}
    if msgs:
        d["messages"] = [{"typename": I64, "value": k} for k in msgs]
    if delayed:
        d["delayed"] = [{"due_at_ms": due, "typename": I64, "value": k} for due, k in delayed]
    d.update(extra)
    return json.dumps(d)


def write(tmp, name, lines):
    p = tmp / name
    p.write_text("".join(l + "\n" for l in lines))
    return p


def summary(p):
    assert p.stdout.strip(), p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_load_read_back_and_rerun(sandbox, tmp_path):
    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)])
    c = rt.client()
    now = int(time.time() * 1000)
    lines = [line("a%03d" % i, n=i) for i in range(300)]
    lines += [line("m1", n=10, msgs=[1, 2, 3]),                 # queued: delivered once -> 16
              line("m2", msgs=[5]),                              # no state, one message -> 5
              line("d1", n=1, delayed=[(now + 1500, 100)]),      # due in 1.5 s -> 101
              json.dumps({"type": "test/store", "id": "s",
                          "state": {"typename": {"typename": "statemesh/string", "value": "t"},
                                    "hex": {"typename": "statemesh/string", "value": "00ff"}}}),
              json.dumps({"type": "test/store", "id": "empty",              # empty values
                          "state": {"typename": {"typename": "statemesh/string", "value": ""}},
                          "messages": [{"typename": "statemesh/string", "value": ""}]})]
    f = write(tmp_path, "data.jsonl", lines)
    p = cli(rt, "bootstrap", str(f), "--json")
    assert p.returncode == 0, p.stderr
    s = summary(p)
    assert (s["lines"], s["loaded"], s["already_loaded"], s["exists"], s["invalid"]) == \
        (305, 305, 0, 0, 0), s
    assert c.int_state("test/counter", "a123") == 123
    assert c.state("test/store", "s") == {"typename": "t", "hex": "00ff"}
    wait_until(lambda: c.int_state("test/counter", "m1") == 16 and
               c.int_state("test/counter", "m2") == 5, timeout=20, message="messages delivered")
    wait_until(lambda: c.state("test/store", "empty") == {"typename": "statemesh/string", "hex": ""},
               timeout=20, message="the empty message delivered")
    assert c.int_state("test/counter", "d1") == 1                # not yet due
    wait_until(lambda: c.int_state("test/counter", "d1") == 101, timeout=20, message="delayed fired")
    listed = json.loads(cli(rt, "state", "list", "test/counter", "--json", "--limit", "10000").stdout)
    assert set(listed["ids"]) == {"a%03d" % i for i in range(300)} | {"m1", "m2", "d1"}
    # the same file again: nothing changes, nothing is delivered twice
    p = cli(rt, "bootstrap", str(f), "--json")
    assert p.returncode == 0, p.stderr
    s = summary(p)
    assert (s["loaded"], s["already_loaded"]) == (0, 305), s
    time.sleep(scaled(2.0))
    assert c.int_state("test/counter", "m1") == 16
    assert c.int_state("test/counter", "d1") == 101
    assert c.int_state("test/counter", "a000") == 0 and c.int_state("test/counter", "a299") == 299
    # and after a restart (the records are in the store, the filter rebuilt)
    rt.kill9()
    rt.start()
    c = rt.client()
    s = summary(cli(rt, "bootstrap", str(f), "--json"))
    assert (s["loaded"], s["already_loaded"]) == (0, 305), s
    time.sleep(scaled(1.0))
    assert c.int_state("test/counter", "m1") == 16


def test_modes_and_dry_run(sandbox, tmp_path):
    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)])
    c = rt.client()
    c.call("test/counter", "x", int64(7))                        # x has state n = 7
    f = write(tmp_path, "a.jsonl", [line("x", n=100), line("y", n=200)])
    # dry run: decides, changes nothing
    p = cli(rt, "bootstrap", str(f), "--dry-run", "--json")
    assert p.returncode == 4, (p.stdout, p.stderr)               # x exists
    s = summary(p)
    assert (s["loaded"], s["exists"], s["dry_run"]) == (1, 1, True), s
    assert "a.jsonl:1: the address already has state" in p.stderr
    assert c.state("test/counter", "y") == {} and c.int_state("test/counter", "x") == 7
    # create-only: x is left alone
    p = cli(rt, "bootstrap", str(f))
    assert p.returncode == 4 and "exists 1" in p.stdout, (p.stdout, p.stderr)
    assert c.int_state("test/counter", "x") == 7 and c.int_state("test/counter", "y") == 200
    # overwrite: x replaced (other names of x go too); y already loaded
    cli(rt, "state", "set", "test/counter", "x", "note", "old")
    f2 = write(tmp_path, "b.jsonl", [line("x", n=100, msgs=[1]), line("y", n=200)])
    p = cli(rt, "bootstrap", str(f2), "--mode", "overwrite", "--json")
    assert p.returncode == 0, p.stderr
    s = summary(p)
    assert (s["loaded"], s["already_loaded"]) == (1, 1), s
    wait_until(lambda: c.state("test/counter", "x") == {"n": 101}, timeout=20,
               message="x overwritten, then its message applied")
    # a dry run of an overwrite changes nothing either
    f3 = write(tmp_path, "c.jsonl", [line("x", n=5)])
    s = summary(cli(rt, "bootstrap", str(f3), "--mode", "overwrite", "--dry-run", "--json"))
    assert s["loaded"] == 1
    assert c.state("test/counter", "x") == {"n": 101}
    # usage errors
    assert cli(rt, "bootstrap", str(f3), "--mode", "sideways").returncode == 2
    assert cli(rt, "bootstrap").returncode == 2
    assert cli(rt, "bootstrap", str(tmp_path / "nope.jsonl")).returncode == 2
    assert cli(rt, "state", "list", "test/counter", "--dry-run").returncode == 2


def test_bad_lines_are_reported_and_the_rest_loaded(sandbox, tmp_path):
    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)], max_message_bytes=65536)
    c = rt.client()
    lines = [
        line("ok1", n=1),
        '{"type": "test/counter", "id": "bad-json", ',                          # 2 bad JSON
        line("ok2", n=2),
        json.dumps({"type": "test/counter", "id": "t",                          # 4 unknown typename
                    "state": {"n": {"typename": "nope", "value": 1}}}),
        json.dumps({"type": "test/counter", "id": "big", "state":               # 5 oversize value
                    {"n": {"typename": "statemesh/string", "value": "x" * 70000}}}),
        line("", n=1, type_="nonamespace"),                                     # 6 bad address
        line("ok3", n=3),
        line("nobody", n=1, type_="other/type"),                                # 8 no endpoint
        # 9: valid state but a second, invalid part: nothing of it is applied
        json.dumps({"type": "test/counter", "id": "half",
                    "state": {"n": {"typename": I64, "value": 9}},
                    "messages": [{"typename": I64, "value": 1, "caller": {"type": "x", "id": "y"}}]}),
        # 10: wrong typename for a declared state
        json.dumps({"type": "test/counter", "id": "decl",
                    "state": {"n": {"typename": "statemesh/string", "value": "s"}}}),
        "",                                                                     # 11 blank: skipped
        line("ok4", n=4),
    ]
    f = write(tmp_path, "bad.jsonl", lines)
    p = cli(rt, "bootstrap", str(f), "--batch", "3", "--json")
    assert p.returncode == 4, (p.stdout, p.stderr)
    s = summary(p)
    assert (s["loaded"], s["invalid"]) == (4, 7), (s, p.stderr)
    err = p.stderr
    for no in (2, 4, 5, 6, 8, 9, 10):
        assert ("bad.jsonl:%d: " % no) in err, err
    for no in (1, 3, 7, 11, 12):
        assert ("bad.jsonl:%d: " % no) not in err, err
    assert "65536" in err or "max_message_bytes" in err, err
    assert "no endpoint serves function type other/type" in err
    assert "declares state 'n' as statemesh/int64" in err
    for i, k in (("ok1", 1), ("ok2", 2), ("ok3", 3), ("ok4", 4)):
        assert c.int_state("test/counter", i) == k
    for i in ("half", "decl", "big", "t"):
        assert c.state("test/counter", i) == {}, i
    # stdin works too, named "-"
    p = cli(rt, "bootstrap", "-", input=lines[1] + "\n" + line("ok5", n=5) + "\n")
    assert p.returncode == 4 and "-:1: " in p.stderr, p.stderr
    assert c.int_state("test/counter", "ok5") == 5


def test_kill9_mid_load_then_rerun_applies_everything_once(sandbox, tmp_path):
    """Every line: state n = 1000 and one message +1 (so n = 1001 once, 1002
    if the message were applied twice, 1 if the state were lost after the
    message). kill -9 during the load, restart, load the file again: every
    address ends at exactly 1001."""
    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)])
    n = 30000
    f = write(tmp_path, "big.jsonl", [line("k%06d" % i, n=1000, msgs=[1]) for i in range(n)])
    p = subprocess.Popen([str(binary("statemesh")), "--address", rt.ingress, "bootstrap", str(f),
                          "--batch", "500", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    c = rt.client()
    wait_until(lambda: c.stats()["bootstrap_loaded"] >= 3000, timeout=60, interval=0.005,
               message="load under way")
    rt.kill9()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1, (out, err)                           # the load stopped
    rt.start()
    c = rt.client()
    p = cli(rt, "bootstrap", str(f), "--json", timeout=300)
    assert p.returncode == 0, p.stderr
    s = summary(p)
    assert s["loaded"] + s["already_loaded"] == n and s["already_loaded"] > 0, s
    wait_until(lambda: c.queued() == 0, timeout=120, message="messages delivered")
    # every address: n = 1001 (1002: a message applied twice; 1: state lost)
    bad = [i for i in ("k%06d" % j for j in range(n)) if c.int_state("test/counter", i) != 1001]
    assert not bad, bad[:5]
    # and a third run changes nothing
    s = summary(cli(rt, "bootstrap", str(f), "--json", timeout=300))
    assert (s["loaded"], s["already_loaded"]) == (0, n), s


def test_bootstrap_racing_with_messages_loses_no_update(sandbox, tmp_path):
    """Sends +1 to the same addresses while their bootstrap (state n = 1000,
    overwrite) runs: each address ends at 1000 + the increments applied after
    its entry, and never below 1000 or above 1000 + all increments; with
    create-only racing nothing is lost at all: either the entry loaded first
    (1000 + every increment) or the increments did (EXISTS, n = increments)."""
    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)])
    c = rt.client()
    ids = ["r%03d" % i for i in range(200)]
    f = write(tmp_path, "race.jsonl", [line(i, n=1000) for i in ids])
    sends = 5
    stop = threading.Event()

    def sender():
        cc = rt.client()
        for _ in range(sends):
            for i in ids:
                cc.send("test/counter", i, int64(1))
        stop.set()

    t = threading.Thread(target=sender)
    t.start()
    p = cli(rt, "bootstrap", str(f), "--batch", "10", "--json")
    t.join()
    assert p.returncode in (0, 4), p.stderr
    wait_until(lambda: c.queued() == 0, timeout=60)
    exists = {l.split(":")[1] for l in p.stderr.splitlines() if "already has state" in l}
    for k, i in enumerate(ids):
        v = c.int_state("test/counter", i)
        if str(k + 1) in exists:
            assert v == sends, (i, v)                  # increments first: entry not loaded
        else:
            assert v == 1000 + sends, (i, v)           # entry first, every increment after it


def test_python_client_bootstrap(sandbox):
    """The Python SDK's Client.bootstrap: AddressData messages or their bytes,
    one result per entry, the same entry again already loaded."""
    from statemesh import Client
    from statemesh.v1 import admin_pb2, types_pb2

    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)])
    c = rt.client()

    def entry(id_, n, type_="test/counter"):
        return admin_pb2.AddressData(
            address=types_pb2.Address(type=type_, id=id_),
            state=[admin_pb2.AddressState(name="n", value=types_pb2.TypedValue(
                typename=I64, value=n.to_bytes(8, "little", signed=True)))])

    with Client(rt.ingress, timeout=30) as sc:
        res = sc.bootstrap([entry("p1", 11), entry("p2", 22).SerializeToString(),
                            entry("p3", 1, type_="nope/x")])
        assert [r.outcome for r in res] == ["loaded", "loaded", "invalid"], res
        assert "no endpoint serves function type nope/x" in res[2].error and not res[2].ok
        assert c.int_state("test/counter", "p1") == 11 and c.int_state("test/counter", "p2") == 22
        assert [r.outcome for r in sc.bootstrap([entry("p1", 11)])] == ["already_loaded"]
        assert [r.outcome for r in sc.bootstrap([entry("p1", 99)])] == ["exists"]
        assert [r.outcome for r in sc.bootstrap([entry("p1", 99)], mode="overwrite",
                                                dry_run=True)] == ["loaded"]
        assert c.int_state("test/counter", "p1") == 11
        assert [r.outcome for r in sc.bootstrap([entry("p1", 99)], mode="overwrite")] == ["loaded"]
        assert c.int_state("test/counter", "p1") == 99
        with pytest.raises(ValueError):
            sc.bootstrap([entry("p1", 1)], mode="upsert")
        with pytest.raises(TypeError):
            sc.bootstrap([{"type": "test/counter"}])

    import asyncio
    from statemesh import AsyncClient

    async def run_async():
        async with AsyncClient(rt.ingress, timeout=30) as ac:
            return await ac.bootstrap([entry("p4", 44), entry("p4", 44)])

    assert [r.outcome for r in asyncio.run(run_async())] == ["loaded", "already_loaded"]
    assert c.int_state("test/counter", "p4") == 44


def test_export_bootstrap_export_is_identical(sandbox, tmp_path):
    """savepoint export --jsonl of a runtime with state, queued messages and
    delayed messages (from the ingress, and from a function with a token) ->
    bootstrap into an empty runtime -> savepoint -> export: the same bytes."""
    def offline(*args):
        return run_cli([str(a) for a in args], address="127.0.0.1:1", timeout=120)

    def export(sp, out):
        p = offline("savepoint", "export", sp, "--jsonl", "--out", out)
        assert p.returncode == 0, p.stderr
        return open(out, "rb").read()

    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)], name="orig")
    c = rt.client()
    ids = ["c%d" % i for i in range(50)]
    for k, i in enumerate(ids):
        c.send("test/counter", i, k + 1)
    c.send("test/effects", "e1", "after 60000 test/counter late2 tok")
    c.wait_drained()
    fn.kill9()
    for i in ids[:20]:                                 # queued: the server is down
        c.send("test/counter", i, 1000)
        c.send("test/counter", i, 2000)
    req = c.send_request("test/counter", "late", 7)
    req.delay_ms = 60000
    c.ingress.Send(req, timeout=10)
    sp = tmp_path / "sp"
    assert cli(rt, "savepoint", "create", sp).returncode == 0
    a = export(sp, tmp_path / "a.jsonl")
    assert len(a.splitlines()) == 52

    fn2 = sandbox.testfn(name="fn2", start=False)      # down: the messages stay queued
    rt2 = sandbox.runtime([endpoint("test/*", fn2)], name="empty")
    p = cli(rt2, "bootstrap", tmp_path / "a.jsonl", "--json")
    assert p.returncode == 0, p.stderr
    assert summary(p)["loaded"] == 52
    sp2 = tmp_path / "sp2"
    assert cli(rt2, "savepoint", "create", sp2).returncode == 0
    assert export(sp2, tmp_path / "b.jsonl") == a
    # the messages are delivered once the function server is up: 20 + 1000 + 2000
    fn2.start()
    c2 = rt2.client()
    wait_until(lambda: c2.int_state("test/counter", "c0") == 3001, timeout=30)
    wait_until(lambda: c2.queued() == 0, timeout=30)
    assert c2.int_state("test/counter", "c19") == 20 + 3000
    assert c2.int_state("test/counter", "c20") == 21


def test_request_bounds(sandbox):
    """A request over BOOT_MAX_ENTRIES entries or over the runtime's largest
    message is refused as a whole with RESOURCE_EXHAUSTED; nothing applied."""
    import grpc
    from harness import admin_pb2, types_pb2

    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)])             # largest message: 4 MiB
    c = rt.client()

    def entry(id_, nbytes=8):
        return admin_pb2.AddressData(
            address=types_pb2.Address(type="test/counter", id=id_),
            state=[admin_pb2.AddressState(name="note", value=types_pb2.TypedValue(
                typename="x/blob", value=b"x" * nbytes))])

    req = admin_pb2.BootstrapRequest(addresses=[entry("b%d" % i) for i in range(10001)])
    with pytest.raises(grpc.RpcError) as ei:
        c.admin.Bootstrap(req, timeout=30)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "10001 entries in one request, over the limit of 10000" in ei.value.details()
    req = admin_pb2.BootstrapRequest(addresses=[entry("c%d" % i, 1500000) for i in range(3)])
    with pytest.raises(grpc.RpcError) as ei:
        c.admin.Bootstrap(req, timeout=30)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value
    for i in ("b0", "b10000", "c0", "c2"):
        assert c.state("test/counter", i) == {}
    assert len(c.admin.Bootstrap(admin_pb2.BootstrapRequest(), timeout=10).results) == 0
    # 10000 entries is fine, one result each, in order
    resp = c.admin.Bootstrap(admin_pb2.BootstrapRequest(
        addresses=[entry("d%d" % i) for i in range(10000)]), timeout=60)
    assert [r.outcome for r in resp.results] == [admin_pb2.BootstrapResult.LOADED] * 10000
    assert c.get_state("test/counter", "d9999").values[0].value.value == b"x" * 8
