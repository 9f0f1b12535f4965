"""
Round trips and the everyday guarantees: send/call, health, stats, per-sender
order, batching, function-to-function messaging, Call deadlines, failing
functions, state and queues across a clean restart.
"""

import signal
import time

import grpc
import pytest

from harness import decode, endpoint, int64, scaled, string, typed, wait_until

COUNTER = "test/counter"


def test_health_serving(rt_env):
    rt, fn, cl = rt_env
    assert cl.health_raw() == b"\x08\x01"


def test_send_then_state(rt_env):
    rt, fn, cl = rt_env
    cl.send(COUNTER, "a", int64(5))
    cl.send(COUNTER, "a", int64(-2))
    assert wait_until(lambda: cl.int_state(COUNTER, "a") == 3, message="n == 3")
    resp = cl.get_state(COUNTER, "a", "n")
    assert [v.name for v in resp.values] == ["n"]
    assert resp.values[0].value.typename == "statemesh/int64"
    assert resp.values[0].value.value == (3).to_bytes(8, "little", signed=True)
    # other addresses of the same type are untouched
    assert cl.state(COUNTER, "b") == {}


def test_call_counter_replies_new_value(rt_env):
    rt, fn, cl = rt_env
    assert cl.call(COUNTER, "c", int64(2)) == 2
    assert cl.call(COUNTER, "c", int64(40)) == 42
    assert cl.int_state(COUNTER, "c") == 42


def test_concurrent_calls_get_their_own_replies(rt_env):
    """50 concurrent Calls to one address are batched; each gets the reply of its
    own invocation, so the replies are exactly 1..50."""
    rt, fn, cl = rt_env
    from harness import ingress_pb2, types_pb2
    req = ingress_pb2.CallRequest(target=types_pb2.Address(type=COUNTER, id="cc"), argument=int64(1))
    futs = [cl.ingress.Call.future(req, timeout=scaled(20), wait_for_ready=True) for _ in range(50)]
    replies = sorted(decode(f.result().reply) for f in futs)
    assert replies == list(range(1, 51))
    assert cl.int_state(COUNTER, "cc") == 50


def test_call_echo(rt_env):
    rt, fn, cl = rt_env
    assert cl.call("test/echo", "e", string("héllo wörld")) == "héllo wörld"
    tv = cl.call_raw("test/echo", "e", b"\x00\x01\xfe\xff")
    assert tv.typename == "statemesh/bytes" and tv.value == b"\x00\x01\xfe\xff"
    # a user typename is opaque to the runtime and comes back unchanged
    tv = cl.call_raw("test/echo", "e", typed("acme/point", b"\x01\x02"))
    assert (tv.typename, tv.value) == ("acme/point", b"\x01\x02")


def test_call_reply_travels_along_function_chain(rt_env):
    """Call test/forward; forward sends to a counter, whose reply answers the Call."""
    rt, fn, cl = rt_env
    assert cl.call("test/forward", "f", string("test/counter chain")) == 1
    assert cl.call("test/forward", "f", string("test/counter chain")) == 2
    assert cl.int_state(COUNTER, "chain") == 2


def test_function_to_function_messaging(rt_env):
    rt, fn, cl = rt_env
    for _ in range(3):
        cl.send("test/forward", "f1", string("test/counter fwd"))
    cl.send("test/forward", "f2", string("test/counter fwd"))
    assert wait_until(lambda: cl.int_state(COUNTER, "fwd") == 4, message="forwarded n == 4")
    cl.wait_drained()
    time.sleep(0.3)
    assert cl.int_state(COUNTER, "fwd") == 4


def test_stats_counters(rt_env):
    rt, fn, cl = rt_env
    before = cl.stats()
    for name in ("messages_received", "queued_messages", "checkpoints"):
        assert name in before, "Stats lacks %s: %s" % (name, sorted(before))
    for i in range(5):
        cl.send(COUNTER, "s", int64(1))
    assert wait_until(lambda: cl.int_state(COUNTER, "s") == 5)
    cl.wait_drained()
    after = cl.stats()
    assert after["messages_received"] >= before["messages_received"] + 5
    assert after["checkpoints"] > before["checkpoints"]
    assert after["queued_messages"] == 0


def test_per_sender_order(rt_env):
    """One sender, 200 Sends in order to one address: applied in exactly that order."""
    rt, fn, cl = rt_env
    n = 200
    for i in range(n):
        cl.send("test/order", "o", string(str(i)))
    expected = "".join("%d," % i for i in range(n))
    wait_until(lambda: cl.state("test/order", "o").get("seen", "").count(",") >= n,
               timeout=30, message="200 messages applied")
    assert cl.state("test/order", "o")["seen"] == expected


def test_per_sender_order_interleaved_senders(rt_env):
    """Two senders interleaving on one address: each sender's subsequence stays in order."""
    rt, fn, cl = rt_env
    cl2 = rt.client()
    n = 60
    for i in range(n):
        cl.send("test/order", "mix", string("a%d" % i))
        cl2.send("test/order", "mix", string("b%d" % i))
    wait_until(lambda: cl.state("test/order", "mix").get("seen", "").count(",") >= 2 * n,
               timeout=30, message="all applied")
    seen = cl.state("test/order", "mix")["seen"].split(",")[:-1]
    assert [s for s in seen if s[0] == "a"] == ["a%d" % i for i in range(n)]
    assert [s for s in seen if s[0] == "b"] == ["b%d" % i for i in range(n)]


def test_batching_observed(sandbox, require):
    """While one batch for an address is in flight, later messages wait and go together."""
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn(slow_ms=300)
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)])
    cl = rt.client()
    futures = [cl.send_future("test/slow", "s", int64(i)) for i in range(20)]
    for f in futures:
        f.result()
    # all 20 consumed: nothing queued, nothing in flight
    def done():
        r = cl.get_state("test/slow", "s")
        return r.queued_messages == 0 and not r.in_flight and cl.queued() == 0
    wait_until(done, timeout=30, message="test/slow drained")
    st = cl.state("test/slow", "s")
    assert st["max_batch"] > 1, st
    assert 1 <= st["batches"] < 20, st


def test_one_batch_per_address_in_flight(sandbox, require):
    """GetState shows later messages queued while a slow batch is in flight."""
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn(slow_ms=1000)
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)])
    cl = rt.client()
    cl.send("test/slow", "q", int64(0))
    wait_until(lambda: cl.get_state("test/slow", "q").in_flight, message="first batch in flight")
    for i in range(4):
        cl.send("test/slow", "q", int64(i))
    r = cl.get_state("test/slow", "q")
    assert r.in_flight
    assert r.queued_messages >= 4, r
    wait_until(lambda: cl.int_state("test/slow", "q", "batches") == 2, timeout=20,
               message="two batches")
    cl.wait_drained()
    st = cl.state("test/slow", "q")
    assert st == {"batches": 2, "max_batch": 4}, st


def test_call_deadline_exceeded_on_failing_function(rt_env):
    rt, fn, cl = rt_env
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as ei:
        cl.call("test/fail", "x", int64(1), timeout=1.0)
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < scaled(1.0) + 5
    assert rt.alive and cl.healthy()


def test_call_durable_after_deadline(sandbox, require):
    """The message of a Call is durable once accepted, even if the caller gives up."""
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn(slow_ms=1500)
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)])
    cl = rt.client()
    with pytest.raises(grpc.RpcError) as ei:
        cl.call("test/slow", "d", int64(1), timeout=0.3)
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: cl.int_state("test/slow", "d", "batches") == 1, timeout=20,
               message="the abandoned call's message processed")
    cl.wait_drained()


def test_failing_function_retried_runtime_stays_up(rt_env):
    """test/fail never succeeds: its message stays queued, others are unaffected."""
    rt, fn, cl = rt_env
    cl.send("test/fail", "x", int64(1))
    for _ in range(3):
        cl.send(COUNTER, "next-door", int64(1))
    assert wait_until(lambda: cl.int_state(COUNTER, "next-door") == 3, message="others progress")
    time.sleep(1.0)
    assert rt.alive and cl.healthy()
    assert cl.state("test/fail", "x") == {}
    assert cl.queued() >= 1
    # the runtime logs the failure (warn or error), it does not crash
    assert any("level=warn" in ln or "level=error" in ln for ln in rt.log().splitlines())
    assert "event=panic" not in rt.log()


def test_state_survives_clean_restart(rt_env):
    rt, fn, cl = rt_env
    for i in range(10):
        cl.send(COUNTER, "r%d" % i, int64(i + 1))
    for i in range(10):
        assert wait_until(lambda i=i: cl.int_state(COUNTER, "r%d" % i) == i + 1)
    cl.send("test/order", "r", string("x"))
    wait_until(lambda: cl.state("test/order", "r").get("seen") == "x,")
    rt.stop()                       # SIGTERM: drain, final checkpoint, exit 0
    rt.start()
    for i in range(10):
        assert cl.int_state(COUNTER, "r%d" % i) == i + 1
    assert cl.state("test/order", "r") == {"seen": "x,"}
    assert cl.call(COUNTER, "r0", int64(10)) == 11
    rt.stop(sig=signal.SIGINT)      # SIGINT: the same
    rt.start()
    assert cl.int_state(COUNTER, "r0") == 11


def test_queued_messages_survive_clean_restart(sandbox, require):
    """Acknowledged but undelivered messages (no function server yet) survive a restart."""
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn(start=False)
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)])
    cl = rt.client()
    for _ in range(10):
        cl.send(COUNTER, "later", int64(1))
    assert cl.queued() == 10
    rt.stop()
    rt.start()
    assert cl.queued() == 10
    assert cl.get_state(COUNTER, "later").queued_messages == 10
    fn.start()
    assert wait_until(lambda: cl.int_state(COUNTER, "later") == 10, timeout=30,
                      message="delivered after the server appeared")
    cl.wait_drained()
    time.sleep(0.3)
    assert cl.int_state(COUNTER, "later") == 10


def test_storage_options_reach_leveldb(sandbox, require):
    """runtime.storage is applied: with a 1 MiB write buffer, about 2 MB of
    state makes LevelDB flush its memtable into a table file; with the default
    (4 MiB) the same writes stay in the log."""
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn()

    def tables_after_writes(name, **kw):
        rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)], name=name, **kw)
        cl = rt.client()
        blob = typed("test/blob", bytes(range(256)) * 600)          # 150 KiB, 300 KiB of hex
        for i in range(6):
            cl.send("test/store", "s%d" % i, blob)
        wait_until(lambda: cl.queued() == 0, timeout=30, message="test/store drained")
        assert len(cl.state("test/store", "s5")["hex"]) == 2 * len(blob.value)
        rt.stop()
        return sorted(p.name for p in (rt.data_dir / "store").glob("*.ldb"))

    small = tables_after_writes("small", runtime_settings={
        "storage": {"write_buffer_bytes": 1048576, "compression": False,
                    "block_cache_bytes": 1048576, "max_open_files": 64}})
    assert small, "a 1 MiB write buffer never flushed"
    assert tables_after_writes("default") == []
