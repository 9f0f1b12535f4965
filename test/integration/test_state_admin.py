"""
State administration (docs/state-admin.md) against a live runtime:

    statemesh state list TYPE [--prefix P] [--after ID] [--limit N] [--json]
    statemesh state set TYPE ID NAME VALUE [--type T]
    statemesh state delete TYPE ID [NAME]

  - list pages through every id once, in key order (key group = XXH3_64 of
    "type\\0id" mod 4096, then id bytes), filtered by type and prefix;
  - set and delete are applied like messages: never while a batch of the
    address is in flight, so a write racing with increments loses none and
    none of them loses it; on a paused address at once;
  - an acknowledged set survives kill -9;
  - bad input: a clear error and nothing changed.
"""

import ctypes
import json
import threading
import time

import grpc
import pytest

from harness import admin_pb2, endpoint, int64, run_cli, scaled, types_pb2, wait_until

pytestmark = pytest.mark.needs("statemeshd", "statemesh", "test/fn/testfn")

_xxh = ctypes.CDLL("libxxhash.so.0")
_xxh.XXH3_64bits.restype = ctypes.c_uint64
_xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def key_group(type_, id_):
    b = type_.encode() + b"\0" + id_.encode()
    return _xxh.XXH3_64bits(b, len(b)) % 4096


def key_order(type_, ids):
    return sorted(ids, key=lambda i: (key_group(type_, i), i.encode()))


def cli(rt, *args, timeout=30.0):
    return run_cli(list(args), address=rt.ingress, timeout=timeout)


def ok(p):
    assert p.returncode == 0, "exit %d\nstdout: %s\nstderr: %s" % (p.returncode, p.stdout, p.stderr)
    return p


def list_all(rt, type_, *extra):
    """Every page of `state list`; returns (ids, pages)."""
    ids, pages, after = [], 0, None
    while True:
        args = ["state", "list", type_, "--json"] + list(extra)
        if after is not None:
            args += ["--after", after]
        doc = json.loads(ok(cli(rt, *args)).stdout)
        ids += doc["ids"]
        pages += 1
        if not doc["more"]:
            assert doc["next_after"] is None
            return ids, pages
        after = doc["next_after"]
        assert pages < 100


def feed(rt, type_, ids, value=1, typename="int64"):
    lines = "".join(json.dumps({"type": type_, "id": i, "value": value, "typename": typename})
                    + "\n" for i in ids)
    ok(run_cli(["send", "--stdin", "--quiet"], address=rt.ingress, input=lines, timeout=120))


def test_list_pages_every_id_once_in_key_order(sandbox):
    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)])
    c = rt.client()
    ids = ["u%04d" % i for i in range(2500)]
    feed(rt, "test/counter", ids)
    feed(rt, "test/order", ["u0001", "zz"], "x", "string")   # another type: not listed
    wait_until(lambda: c.queued() == 0 and c.int_state("test/counter", "u2499") == 1 and
               c.stats()["addresses_retrying"] == 0,
               timeout=60, message="counters written")
    got, pages = list_all(rt, "test/counter", "--limit", "1000")
    assert pages == 3
    assert len(got) == len(set(got)) == 2500
    assert got == key_order("test/counter", ids)
    # the default page (1000) and the text form: "# next: --after ID" lines
    p = ok(cli(rt, "state", "list", "test/counter"))
    lines = p.stdout.splitlines()
    assert len(lines) == 1001 and lines[:1000] == got[:1000]
    assert lines[1000] == "# next: --after " + got[999]
    # --after any id continues right after it
    p = ok(cli(rt, "state", "list", "test/counter", "--after", got[1234], "--limit", "5"))
    assert p.stdout.splitlines()[:5] == got[1235:1240]
    # prefix: only those ids, same order
    pre, _ = list_all(rt, "test/counter", "--prefix", "u12", "--limit", "7")
    assert pre == [i for i in got if i.startswith("u12")] and len(pre) == 100
    assert list_all(rt, "test/counter", "--prefix", "nothing")[0] == []
    assert list_all(rt, "test/order")[0] == key_order("test/order", ["u0001", "zz"])
    assert list_all(rt, "test/echo")[0] == []
    # an address whose state is all deleted is no longer listed
    ok(cli(rt, "state", "delete", "test/counter", got[0]))
    assert list_all(rt, "test/counter", "--limit", "10000")[0] == got[1:]


def test_set_get_delete(sandbox):
    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)])
    c = rt.client()
    assert ok(cli(rt, "state", "set", "test/counter", "a", "n", "41", "--type", "int64")).stdout == "set\n"
    assert c.int_state("test/counter", "a") == 41           # answered after the commit
    assert c.call("test/counter", "a", int64(1)) == 42      # the function reads it
    ok(cli(rt, "state", "set", "test/counter", "a", "note", "hello there"))   # undeclared: kept
    assert c.state("test/counter", "a") == {"n": 42, "note": "hello there"}
    p = ok(cli(rt, "state", "get", "test/counter", "a", "note"))
    assert '"hello there"' in p.stdout
    p = cli(rt, "state", "set", "test/store", "b", "hex", '{"x": 1}', "--type", "json")
    assert p.returncode == 1 and "FAILED_PRECONDITION" in p.stderr, p.stderr
    assert "test/store declares state 'hex' as statemesh/string, not statemesh/json" in p.stderr
    assert c.state("test/store", "b") == {}
    assert ok(cli(rt, "state", "delete", "test/counter", "a", "n")).stdout == "deleted 1\n"
    assert c.state("test/counter", "a") == {"note": "hello there"}
    assert cli(rt, "state", "get", "test/counter", "a", "n").returncode == 3
    assert ok(cli(rt, "state", "delete", "test/counter", "a", "n", "--json")).stdout == '{"deleted":0}\n'
    assert ok(cli(rt, "state", "delete", "test/counter", "a")).stdout == "deleted 1\n"
    assert c.state("test/counter", "a") == {}
    assert cli(rt, "state", "get", "test/counter", "a").returncode == 3
    assert c.call("test/counter", "a", int64(5)) == 5       # absent again = 0
    # delete of everything, written in the same checkpoint as the result before it
    # delete racing with a message: one serial order or the other
    c.send("test/counter", "d", 3)
    out = ok(cli(rt, "state", "delete", "test/counter", "d")).stdout
    wait_until(lambda: c.queued() == 0)
    assert (out, c.state("test/counter", "d")) in (("deleted 1\n", {}), ("deleted 0\n", {"n": 3}))


PAUSE = {"initial_backoff_ms": 20, "max_backoff_ms": 50, "max_attempts": 3,
         "on_exhausted": "pause"}


def test_set_and_delete_on_a_paused_address(sandbox):
    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn, retry=PAUSE)])
    c = rt.client()
    c.send("test/counter", "p", 1)
    c.send("test/counter", "p", "poison")            # test/counter wants int64: fails
    c.send("test/counter", "p", 2)
    wait_until(lambda: c.stats()["addresses_paused"] == 1, timeout=20, message="paused")
    assert c.int_state("test/counter", "p") == 1
    # a paused address has nothing in flight: the write applies at once,
    # ahead of the messages still queued, and the address stays paused
    ok(cli(rt, "state", "set", "test/counter", "p", "n", "100", "--type", "int64"))
    assert c.int_state("test/counter", "p") == 100
    st = json.loads(ok(cli(rt, "inspect", "test/counter", "p", "--json")).stdout)
    assert st["phase"] == "paused" and st["queued_messages"] == 2, st
    assert ok(cli(rt, "state", "delete", "test/counter", "p")).stdout == "deleted 1\n"
    assert c.state("test/counter", "p") == {}
    ok(cli(rt, "state", "set", "test/counter", "p", "n", "10", "--type", "int64"))
    rt.kill9()                                       # both the pause and the write are durable
    rt.start()
    c = rt.client()
    assert c.stats()["addresses_paused"] == 1 and c.int_state("test/counter", "p") == 10
    ok(cli(rt, "skip", "test/counter", "p"))         # the poison goes; 2 is applied on 10
    wait_until(lambda: c.queued() == 0, timeout=20)
    assert c.int_state("test/counter", "p") == 12


def test_set_waits_for_the_batch_in_flight(sandbox):
    """test/slow: batches += 1 per batch, after sleeping. A set issued while a
    batch is in flight is applied after its result and before the next
    batch: the final count is the set value + 1, never the result's 1 + 1
    (the result overwriting the set) nor 1000 alone (the set undone)."""
    fn = sandbox.testfn(slow_ms=1500)
    rt = sandbox.runtime([endpoint("test/*", fn)])
    c = rt.client()
    c.send("test/slow", "s", 1)
    wait_until(lambda: c.get_state("test/slow", "s").in_flight, message="batch in flight")
    c.send("test/slow", "s", 2)                      # waits: the next batch
    t = time.monotonic()
    ok(cli(rt, "state", "set", "test/slow", "s", "batches", "1000", "--type", "int64"))
    waited = time.monotonic() - t
    wait_until(lambda: c.queued() == 0, timeout=30)
    assert c.state("test/slow", "s")["batches"] == 1001, (c.state("test/slow", "s"), waited)


def test_sets_racing_with_increments_lose_nothing(sandbox):
    """Many Calls increment test/counter (each reply is the new n) while
    `state set` writes n = k * 1,000,000 for k = 1..SETS. In one serial
    order of sets and increments, the replies after set k are exactly
    k*1e6 + 1, +2, ... (no gap, no repeat), the calls before the first set
    reply 1, 2, ...; every call replies once; a call started after set k was
    acknowledged replies at least k*1e6 + 1; the final n is the last set
    plus the increments after it. A set applied during an invocation (the
    result overwriting it, or it overwriting the result) breaks one of these
    (checked: applying it at once fails this test)."""
    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)])
    c = rt.client()
    THREADS, CALLS, SETS, BASE = 8, 80, 30, 1000000
    replies, started, errors, acked = [], [], [], []
    lock = threading.Lock()

    def caller():
        cl = rt.client()
        try:
            for _ in range(CALLS):
                t = time.monotonic()
                v = cl.call("test/counter", "race", int64(1), timeout=60)
                with lock:
                    replies.append(v)
                    started.append((t, v))
        except Exception as e:                       # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=caller) for _ in range(THREADS)]
    for t in threads:
        t.start()
    wait_until(lambda: len(replies) >= 10, timeout=30, message="calls under way")
    sets_during = 0
    for k in range(1, SETS + 1):
        ok(cli(rt, "state", "set", "test/counter", "race", "n", str(k * BASE), "--type", "int64"))
        acked.append((time.monotonic(), k))
        sets_during += any(t.is_alive() for t in threads)
        time.sleep(0.01)
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(replies) == THREADS * CALLS
    groups = {}
    for v in replies:
        groups.setdefault(v // BASE, []).append(v % BASE)
    assert set(groups) <= set(range(SETS + 1)), sorted(groups)
    for g, vals in groups.items():
        assert sorted(vals) == list(range(1, len(vals) + 1)), (g, sorted(vals)[:20])
    for t_ack, k in acked:
        late = [v for t, v in started if t > t_ack and v // BASE < k]
        assert not late, ("set %d was lost: calls after its ack replied" % k, late[:10])
    final = c.int_state("test/counter", "race")
    assert final == SETS * BASE + len(groups.get(SETS, [])), (final, {g: len(v) for g, v in groups.items()})
    assert sets_during >= 1                          # the race did happen


def test_acknowledged_set_survives_kill9(sandbox):
    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)])
    c = rt.client()
    c.send("test/counter", "k", 5)
    wait_until(lambda: c.int_state("test/counter", "k") == 5)
    ok(cli(rt, "state", "set", "test/counter", "k", "n", "77", "--type", "int64"))
    ok(cli(rt, "state", "set", "test/counter", "gone", "n", "1", "--type", "int64"))
    ok(cli(rt, "state", "delete", "test/counter", "gone"))
    rt.kill9()
    rt.start()
    c = rt.client()
    assert c.int_state("test/counter", "k") == 77
    assert c.state("test/counter", "gone") == {}
    assert c.call("test/counter", "k", int64(1)) == 78


@pytest.mark.parametrize("args,code,needle", [
    (["state", "set", "test/counter", "b", "n", "1", "--type", "nosuch"], 2, "unknown --type 'nosuch'"),
    (["state", "set", "test/counter", "b", "n", "abc", "--type", "int64"], 2, "is not a 64-bit integer"),
    (["state", "set", "test/counter", "b", "n", "zz", "--type", "bytes"], 2, "VALUE must be hex"),
    (["state", "set", "test/counter", "b", "n"], 2, "state set needs TYPE ID NAME VALUE"),
    (["state", "set", "nosl", "b", "n", "1"], 2, "is not namespace/name"),
    (["state", "set", "test/counter", "b", "bad name", "1"], 1, "INVALID_ARGUMENT: invalid state name"),
    (["state", "set", "test/counter", "b", "n", "x" * 2000], 1,
     "RESOURCE_EXHAUSTED: value is 2000 bytes, over the limit of 1024"),
    (["state", "set", "test/counter", "b", "n", "hi"], 1,
     "FAILED_PRECONDITION: test/counter declares state 'n' as statemesh/int64, not statemesh/string"),
    (["state", "set", "other/fn", "b", "n", "1"], 1, "NOT_FOUND: no endpoint serves function type other/fn"),
    (["state", "delete", "other/fn", "b"], 1, "NOT_FOUND: no endpoint serves function type other/fn"),
    (["state", "delete", "test/counter", "b", "bad/name"], 1, "INVALID_ARGUMENT: invalid state name"),
    (["state", "delete", "test/counter", "b", ""], 2, "NAME is empty"),
    (["state", "list", "nosl"], 2, "is not namespace/name"),
    (["state", "list", "test/counter", "x"], 2, "state list needs TYPE"),
    (["state", "list", "test/counter", "--prefix", "p" * 1025], 1, "INVALID_ARGUMENT: prefix is 1025 bytes"),
    (["state", "list", "test/counter", "--limit", "0"], 2, "--limit wants 1..10000"),
    (["state", "list", "test/counter", "--limit", "10001"], 2, "--limit wants 1..10000"),
    (["state", "list", "test/counter", "--type", "int64"], 2, "--type only applies to state set"),
    (["state", "set", "test/counter", "b", "n", "1", "--prefix", "a"], 2,
     "--prefix, --after and --limit only apply to state list"),
    (["state", "get", "test/counter", "b", "--after", "a"], 2,
     "--prefix, --after and --limit only apply to state list"),
    (["stats", "--prefix", "a"], 2, "--prefix only applies to state list"),
    (["state", "frob", "test/counter"], 2, "unknown state subcommand 'frob'"),
])
def test_bad_input_is_refused_and_changes_nothing(sandbox, args, code, needle):
    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)], max_message_bytes=1024)
    c = rt.client()
    c.send("test/counter", "b", 3)
    wait_until(lambda: c.int_state("test/counter", "b") == 3)
    before = c.stats()["checkpoints"]
    p = cli(rt, *args)
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert needle in p.stderr, p.stderr
    assert c.state("test/counter", "b") == {"n": 3}
    assert c.stats()["checkpoints"] == before


def test_admin_rpcs_refuse_bad_requests(rt_env):
    """What the CLI cannot send: malformed ids and strings straight over gRPC."""
    rt, fn, cl = rt_env
    cases = [
        admin_pb2.ListStateRequest(type="test/counter", after_id="a\x00b"),
        admin_pb2.ListStateRequest(type=""),
        admin_pb2.SetStateRequest(address=types_pb2.Address(type="test/counter", id=""), name="n",
                                  value=int64(1)),
        admin_pb2.SetStateRequest(address=types_pb2.Address(type="test/counter", id="x"), name="n"),
        admin_pb2.SetStateRequest(address=types_pb2.Address(type="test/counter", id="x"), name="n",
                                  value=types_pb2.TypedValue(typename="", value=b"1")),
        admin_pb2.DeleteStateRequest(name="n"),
    ]
    methods = {admin_pb2.ListStateRequest: cl.admin.ListState,
               admin_pb2.SetStateRequest: cl.admin.SetState,
               admin_pb2.DeleteStateRequest: cl.admin.DeleteState}
    for req in cases:
        with pytest.raises(grpc.RpcError) as e:
            methods[type(req)](req, timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (req, e.value.details())
    assert cl.state("test/counter", "x") == {}


def test_expired_state_is_not_listed(sandbox):
    ttl_ms = int(scaled(3000))
    fn = sandbox.testfn(extra_args=["--ttl-ms", str(ttl_ms)])
    rt = sandbox.runtime([endpoint("test/*", fn)])
    c = rt.client()
    t0 = time.monotonic()
    assert c.call("test/ttl", "t", "set") == "w=x,i=x"
    # a set of a state the function declares with a TTL gets that TTL too
    ok(cli(rt, "state", "set", "test/ttl", "t2", "w", "y"))
    listed = sorted(list_all(rt, "test/ttl")[0])
    if time.monotonic() - t0 < ttl_ms / 1000.0:      # (a very slow machine: skip this check)
        assert listed == ["t", "t2"]
    wait_until(lambda: list_all(rt, "test/ttl")[0] == [], timeout=ttl_ms / 1000.0 + 10,
               message="expired state no longer listed")
    assert c.state("test/ttl", "t2") == {}


def test_python_client_and_async_client(sandbox):
    import asyncio

    import statemesh

    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)])
    with statemesh.Client(rt.ingress, timeout=30) as c:
        c.set_state("test/counter", "py", "n", 40)
        assert c.call("test/counter", "py", 2) == 42
        c.set_state("test/counter", "py2", "n", 1)
        ids = []
        page = c.list_state("test/counter", limit=1)
        ids += page.ids
        while page.more:
            page = c.list_state("test/counter", after=page.next_after, limit=1)
            ids += page.ids
        assert ids == key_order("test/counter", ["py", "py2"]) and page.next_after is None
        assert c.list_state("test/counter", prefix="py2").ids == ["py2"]
        with pytest.raises(statemesh.FailedPrecondition):
            c.set_state("test/counter", "py", "n", "text")
        with pytest.raises(ValueError):
            c.list_state("nosl")
        assert c.delete_state("test/counter", "py", "n") == 1
        assert c.state("test/counter", "py") == {}

    async def run():
        async with statemesh.AsyncClient(rt.ingress, timeout=30) as ac:
            await ac.set_state("test/counter", "apy", "n", 7)
            page = await ac.list_state("test/counter", prefix="apy")
            assert page.ids == ["apy"] and not page.more
            assert await ac.delete_state("test/counter", "apy") == 1
            return await ac.state("test/counter", "apy")

    assert asyncio.run(run()) == {}
