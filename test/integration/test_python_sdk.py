"""
The Python SDK against the real runtime: sync and async handlers, replies,
function-to-function messages across languages (Python <-> C testfn and the C
greeter), typed values crossing between C and Python, failures retried and
logged, the ingress client of the SDK (statemesh.Client), and a Python
function server killed under load losing nothing.

The Python function server is test_python_fn.py (see its docstring); the C
one is build/test/fn/testfn.
"""

import os
import random
import signal
import struct
import sys
import time

import pytest

from harness import (HERE, PYTHON, REPO, SendLoad, endpoint, int64, python_env, string,
                     typed, wait_until)

sys.path.insert(0, str(REPO / "sdk-python"))
import statemesh  # noqa: E402
from statemesh import (DeadlineExceeded, InvalidArgument, NotFound, TypedValue,  # noqa: E402
                       simple_type)

PYFN = HERE / "test_python_fn.py"
GREETER_PY = REPO / "examples" / "greeter-python" / "greeter.py"


def start_pyfn(sandbox, mode="aio", name="pyfn", extra=()):
    return sandbox.server([PYTHON, str(PYFN), "--mode", mode] + list(extra), name=name,
                          env=python_env())


@pytest.fixture(params=["aio", "sync"])
def mixed(request, sandbox, require):
    """(runtime, python server, C testfn, harness client) with py/* -> Python, test/* -> C."""
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn()
    py = start_pyfn(sandbox, request.param)
    rt = sandbox.runtime(endpoints=[endpoint("py/*", py), endpoint("test/*", fn)])
    return rt, py, fn, rt.client()


def test_sync_handler_call_and_state(mixed):
    rt, py, fn, cl = mixed
    assert cl.call("py/counter", "a", int64(2)) == 2
    assert cl.call("py/counter", "a", int64(40)) == 42
    assert cl.int_state("py/counter", "a") == 42
    assert py.alive


def test_async_handler_call_and_state(mixed):
    rt, py, fn, cl = mixed
    assert cl.call("py/acounter", "a", int64(5)) == 5
    assert cl.call("py/acounter", "a", int64(-1)) == 4
    assert cl.int_state("py/acounter", "a") == 4


def test_many_messages_batched(mixed):
    """600 Sends to 30 addresses of each counter: every one applied once, in
    batches of several invocations (state accumulates within a batch)."""
    rt, py, fn, cl = mixed
    futures = []
    for k in range(300):
        futures.append(cl.send_future("py/counter", "c%d" % (k % 30), int64(1)))
        futures.append(cl.send_future("py/acounter", "c%d" % (k % 30), int64(2)))
    for f in futures:
        f.result()
    cl.wait_drained(timeout=60)
    for i in range(30):
        assert cl.int_state("py/counter", "c%d" % i) == 10
        assert cl.int_state("py/acounter", "c%d" % i) == 20


def test_python_to_c_reply_answers_the_call(mixed):
    """Call py/forward -> (int64 1) -> C test/counter, whose reply answers the Call."""
    rt, py, fn, cl = mixed
    assert cl.call("py/forward", "f", string("test/counter x")) == 1
    assert cl.call("py/forward", "f", string("test/counter x")) == 2
    assert cl.int_state("test/counter", "x") == 2


def test_c_to_python_reply_answers_the_call(mixed):
    """Call C test/forward -> (int64 1, encoded by C) -> py/counter, whose reply answers."""
    rt, py, fn, cl = mixed
    assert cl.call("test/forward", "f", string("py/counter y")) == 1
    assert cl.call("test/forward", "f", string("py/acounter y")) == 1
    assert cl.call("test/forward", "f", string("py/counter y")) == 2
    d = cl.call("test/forward", "f", string("py/describe z"))     # JSON, decoded
    assert d == {"typename": "statemesh/int64", "value": 1, "caller": ["test/forward", "f"]}


Point = simple_type("acme/point", lambda p: struct.pack("<ii", *p),
                    lambda b: struct.unpack("<ii", b))

VALUES = [
    True, False, 0, -1, 2 ** 63 - 1, -2 ** 63, 0.0, -0.0, 3.141592653589793, float("inf"),
    "", "héllo wörld 😀", "\x00 nul", b"", b"\x00\xff\x10\x80", {"name": "alice", "visits": 3},
    [1, 2.5, "x", None, True],
]


def _bits(v):
    return struct.pack("<d", v) if isinstance(v, float) else v


def test_typed_values_cross_c_and_python_unchanged(mixed):
    """Python encodes each built-in value, C test/echo replies the same bytes,
    and the SDK client decodes them back; a user type passes through as is."""
    rt, py, fn, cl = mixed
    with statemesh.Client(rt.ingress, timeout=10) as c:
        for v in VALUES:
            got = c.call("py/relay", "test/echo|r", v)
            assert type(got) is type(v) and _bits(got) == _bits(v), (v, got)
            raw = c.call("py/relay", "test/echo|r", v, raw=True)
            assert raw == statemesh.types.typed_value(v)
            # Python decodes what it got and re-encodes it: same bytes again.
            assert c.call("py/reencode", "e", v, raw=True) == raw
        assert c.call("py/relay", "test/echo|p", (3, -4), type=Point, reply_type=Point) == (3, -4)
        assert c.call("py/relay", "test/echo|p", (3, -4), type=Point) == TypedValue(
            "acme/point", struct.pack("<ii", 3, -4))


def test_c_encoded_values_decode_in_python(mixed):
    """The ingress (C) hands Python exactly the bytes of each built-in encoding."""
    rt, py, fn, cl = mixed
    cases = [
        (int64(-2), "statemesh/int64", -2),
        (typed("statemesh/float64", struct.pack("<d", 2.5)), "statemesh/float64", 2.5),
        (typed("statemesh/bool", b"\x01"), "statemesh/bool", True),
        (string("日本語"), "statemesh/string", "日本語"),
        (typed("statemesh/bytes", b"\x00\x01"), "statemesh/bytes", "0001"),
        (typed("statemesh/json", b'{"a":[1,null]}'), "statemesh/json", {"a": [1, None]}),
        (typed("acme/point", b"\x01\x02"), "acme/point", "0102"),
    ]
    for arg, typename, value in cases:
        got = cl.call("py/describe", "d", arg)      # the harness decodes the JSON
        assert got == {"typename": typename, "value": value, "caller": None}, got


def test_state_of_every_builtin_type(mixed):
    rt, py, fn, cl = mixed
    want = {"b": True, "i": -7, "f": 0.5, "s": "ü", "by": "00ff", "j": {"k": [1, 2]}}
    with statemesh.Client(rt.ingress, timeout=10) as c:
        assert c.call("py/types", "t", {"set": want}) == want
        st = c.state("py/types", "t")
        assert st == dict(want, by=b"\x00\xff")
        raw = c.state("py/types", "t", raw=True)
        assert raw["i"] == TypedValue("statemesh/int64", struct.pack("<q", -7))
        assert raw["f"] == TypedValue("statemesh/float64", struct.pack("<d", 0.5))
        assert raw["b"] == TypedValue("statemesh/bool", b"\x01")
        assert raw["s"] == TypedValue("statemesh/string", "ü".encode())
        assert raw["j"] == TypedValue("statemesh/json", b'{"k":[1,2]}')
        # delete two, keep the rest
        assert c.call("py/types", "t", {"set": {"s": None, "j": None}}) == dict(want, s=None,
                                                                                j=None)
        assert set(c.state("py/types", "t")) == {"b", "i", "f", "by"}


def test_exception_is_retried_and_logged(sandbox, require):
    """A handler that raises: the batch is answered `failure`, the runtime logs
    the error and retries; the third attempt succeeds and answers the Call."""
    require("statemeshd")
    py = start_pyfn(sandbox, extra=["--flaky-failures", "2"])
    rt = sandbox.runtime(endpoints=[endpoint("py/*", py)])
    cl = rt.client(timeout=30)
    assert cl.call("py/flaky", "x", int64(0)) == 3
    log = rt.full_log()
    assert "message.retry" in log and "RuntimeError: py/flaky planned failure 1 for x" in log, log
    assert "handler failed fn=py/flaky id=x" in py.full_log()
    assert cl.state("py/flaky", "x") == {}


def test_statemesh_client_against_runtime(mixed):
    rt, py, fn, cl = mixed
    with statemesh.Client(rt.ingress, timeout=10) as c:
        c.send("py/counter", "sc", 5)
        assert c.call("py/counter", "sc", 1) == 6
        assert c.state("py/counter", "sc") == {"n": 6}
        info = c.state_info("py/counter", "sc")
        assert info.values == {"n": 6} and info.queued_messages == 0
        stats = c.stats()
        assert stats["messages_received"] >= 2
        with pytest.raises(NotFound):
            c.send("nope/thing", "x", 1)
        with pytest.raises(InvalidArgument):
            c.send("py/counter", "", 1)
        with pytest.raises(DeadlineExceeded):
            c.call("test/fail", "x", 1, timeout=0.5)


def test_async_client_against_runtime(mixed):
    import asyncio
    rt, py, fn, cl = mixed

    async def main():
        async with statemesh.AsyncClient(rt.ingress, timeout=20) as c:
            rs = await asyncio.gather(*(c.call("py/acounter", "ac%d" % (i % 5), 1)
                                        for i in range(50)))
            assert sorted(rs) == sorted(list(range(1, 11)) * 5)
            assert (await c.state("py/acounter", "ac0")) == {"n": 10}

    asyncio.run(main())


def test_python_greeter_example(sandbox, require):
    """examples/greeter-python behaves like the C greeter."""
    require("statemeshd")
    g = sandbox.server([PYTHON, str(GREETER_PY)], name="greeter-py", env=python_env())
    rt = sandbox.runtime(endpoints=[endpoint("example/*", g)])
    cl = rt.client()
    assert cl.call("example/user", "alice", string("hi")) == "Hello alice, you are visitor #1"
    assert cl.call("example/user", "alice", string("hi")) == "Hello alice, you are visitor #2"
    assert cl.call("example/user", "bob", string("hi")) == "Hello bob, you are visitor #1"
    assert cl.int_state("example/user", "alice", "visits") == 2


def test_python_calls_c_greeter(sandbox, require):
    """py/greet (Python) sends JSON to example/greeter (C greeter), whose reply answers."""
    require("statemeshd", "examples/greeter/greeter")
    g = sandbox.greeter()
    py = start_pyfn(sandbox)
    rt = sandbox.runtime(endpoints=[endpoint("py/*", py), endpoint("example/*", g)])
    cl = rt.client()
    assert cl.call("py/greet", "zoë", string("hi")) == "Hello zoë, you are visitor #1"


@pytest.mark.fault
@pytest.mark.time_limit(240)
@pytest.mark.parametrize("mode", ["aio", "sync"])
def test_python_function_server_killed_mid_load(sandbox, require, mode):
    """kill -9 of the Python function server (twice) under a stream of Sends:
    every Send is acknowledged and every increment applied exactly once."""
    require("statemeshd")
    seed = int(os.environ.get("STATEMESH_SEED") or time.time_ns() % 1_000_000)
    print("STATEMESH_SEED=%d" % seed)
    rng = random.Random(seed)
    py = start_pyfn(sandbox, mode)
    rt = sandbox.runtime(endpoints=[endpoint("py/*", py)])
    ids = ["m%d" % i for i in range(200)]
    targets = [("py/counter" if i % 2 else "py/acounter", ident, int64(1))
               for i, ident in enumerate(ids)]
    load = SendLoad(rt.ingress, targets, threads=4, seed=seed, timeout=15)
    with load:
        load.wait_acks(200, timeout=30, message="initial load")
        for _ in range(2):
            time.sleep(rng.uniform(0.1, 0.6))
            py.kill9()
            load.wait_acks(50, timeout=20, message="acks while the Python server is down")
            py.start()
            load.wait_acks(50, timeout=30, message="acks after the Python server restarted")
    acked, failed = load.acked, load.failed
    assert sum(failed) == 0, load.failure_codes()
    cl = rt.client()
    cl.wait_drained(timeout=90)
    n = [cl.int_state(t, i) for t, i, _ in targets]
    bad = [(ids[k], acked[k], n[k]) for k in range(len(ids)) if n[k] != acked[k]]
    assert not bad, "%d counters != acked (seed %d): %s" % (len(bad), seed, bad[:10])


def test_python_server_sigterm_is_graceful(sandbox, require):
    """SIGTERM: the Python server stops within its grace period and exits 0; the
    runtime keeps the messages until it is back."""
    require("statemeshd")
    py = start_pyfn(sandbox)
    rt = sandbox.runtime(endpoints=[endpoint("py/*", py)])
    cl = rt.client()
    assert cl.call("py/counter", "g", int64(1)) == 1
    assert py.stop(sig=signal.SIGTERM, timeout=10) == 0
    assert "signal received, stopping" in py.full_log()
    cl.send("py/counter", "g", int64(1))
    time.sleep(0.3)
    assert cl.int_state("py/counter", "g") == 1
    py.start()
    wait_until(lambda: cl.int_state("py/counter", "g") == 2, timeout=20,
               message="queued message applied after restart")
