"""The function server over a real gRPC unix socket (no runtime): Describe,
Invoke round trips in both server modes, pipelining, health, shutdown."""

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest

from conftest import (SDK, batch, by_id, function_pb2, int_tv, mutations, str_tv)
from statemesh import FunctionServer, IntType, StatefulFunctions, StringType, ValueSpec
from statemesh.v1 import function_pb2_grpc


def make_functions():
    functions = StatefulFunctions()

    @functions.bind("test/counter", specs=[ValueSpec("n", IntType)])
    def counter(ctx, message):
        ctx.storage.n = (ctx.storage.n or 0) + message.as_int()
        ctx.reply(ctx.storage.n)

    @functions.bind("test/async", specs=[ValueSpec("last", StringType)])
    async def slow(ctx, message):
        await asyncio.sleep(0.02)
        ctx.storage.last = message.as_string()
        ctx.send("test/counter", "x", 1)

    return functions


@pytest.fixture(params=["aio", "sync"])
def server(request, tmp_path):
    sock = "unix:%s" % (tmp_path / "fn.sock")
    srv = FunctionServer(make_functions(), sock, mode=request.param).start()
    channel = grpc.insecure_channel(sock)
    grpc.channel_ready_future(channel).result(timeout=5)
    yield srv, function_pb2_grpc.FunctionServiceStub(channel)
    channel.close()
    srv.stop(1)


def test_describe(server):
    _, stub = server
    d = stub.Describe(function_pb2.DescribeRequest(), timeout=5)
    assert d.sdk.startswith("statemesh-python/")
    assert {(f.type, tuple((s.name, s.typename) for s in f.states)) for f in d.functions} == {
        ("test/counter", (("n", "statemesh/int64"),)),
        ("test/async", (("last", "statemesh/string"),)),
    }


def test_invoke_round_trip_and_pipelining(server):
    _, stub = server
    requests = queue.Queue()

    def gen():
        while True:
            r = requests.get()
            if r is None:
                return
            yield r

    responses = stub.Invoke(gen(), timeout=30)
    # message 1: 3 counter batches + one async batch that really awaits
    requests.put(function_pb2.ToFunction(batches=[
        batch(1, "test/counter", "a", {"n": None}, [int_tv(1), int_tv(2)]),
        batch(2, "test/counter", "b", {"n": int_tv(10)}, [int_tv(5)]),
        batch(3, "test/async", "c", {"last": None}, [str_tv("hello")]),
        batch(4, "test/nope", "d", {}, [int_tv(1)]),
    ]))
    # message 2, sent without waiting: pipelined
    requests.put(function_pb2.ToFunction(batches=[
        batch(5, "test/counter", "a", {"n": int_tv(3)}, [int_tv(1)]),
        batch(6, "test/counter", "e", {}, [int_tv(1)]),       # missing slot -> incomplete
    ]))
    got = {}
    msgs = 0
    for resp in responses:
        msgs += 1
        got.update(by_id(resp))
        if len(got) == 6:
            break
    requests.put(None)
    assert msgs <= 3       # answers are coalesced per received message
    assert mutations(got[1].result) == {"n": int_tv(3)}
    assert [r.value for r in got[1].result.replies] == [int_tv(1), int_tv(3)]
    assert mutations(got[2].result) == {"n": int_tv(15)}
    assert mutations(got[3].result) == {"last": str_tv("hello")}
    assert got[3].result.outgoing_messages[0].target.type == "test/counter"
    assert got[4].WhichOneof("outcome") == "failure"
    assert mutations(got[5].result) == {"n": int_tv(4)}
    assert got[6].WhichOneof("outcome") == "incomplete"


def test_many_streams_in_parallel(server):
    _, stub = server

    def one(k):
        reqs = [function_pb2.ToFunction(batches=[
            batch(m * 100 + i, "test/counter", "s%d-%d" % (k, i), {"n": int_tv(i)}, [int_tv(1)])
            for i in range(50)]) for m in range(10)]
        seen = {}
        for resp in stub.Invoke(iter(reqs), timeout=30):
            seen.update(by_id(resp))
        return seen

    results = [None] * 4
    threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, one(k)))
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for seen in results:
        assert len(seen) == 500
        for bid, r in seen.items():
            assert mutations(r.result) == {"n": int_tv(bid % 100 + 1)}


def test_malformed_message_aborts_stream(server):
    srv, _ = server
    channel = grpc.insecure_channel(srv.address)
    invoke = channel.stream_stream("/statemesh.v1.FunctionService/Invoke")
    with pytest.raises(grpc.RpcError) as e:
        list(invoke(iter([b"\x0a\x05\x08"]), timeout=5))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    channel.close()


def test_health(server):
    srv, _ = server
    channel = grpc.insecure_channel(srv.address)
    check = channel.unary_unary("/grpc.health.v1.Health/Check")
    assert check(b"", timeout=5) == b"\x08\x01"
    channel.close()


def test_tcp_port_zero_and_reuse_refused():
    srv = FunctionServer(make_functions(), "127.0.0.1:0", mode="sync").start()
    try:
        assert srv.port > 0
        with pytest.raises(OSError):
            FunctionServer(make_functions(), "127.0.0.1:%d" % srv.port, mode="sync").start()
    finally:
        srv.stop(0)


@pytest.mark.parametrize("mode", ["aio", "sync"])
def test_serve_stops_on_sigterm(tmp_path, mode):
    sock = tmp_path / "sig.sock"
    code = (
        "from statemesh import StatefulFunctions, serve\n"
        "f = StatefulFunctions()\n"
        "f.register('t/f', lambda c, m: None)\n"
        "serve(f, 'unix:%s', mode='%s', grace=1)\n"
        "print('clean exit', flush=True)\n" % (sock, mode))
    env = dict(os.environ, PYTHONPATH=SDK)
    p = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 10
        while not sock.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert sock.exists()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert "clean exit" in out
    assert "serving t/f on unix:" in err and "stopping" in err


@pytest.mark.parametrize("mode", ["aio", "sync"])
def test_stop_drains_then_ends_open_streams(tmp_path, mode):
    """The runtime never closes its Invoke stream: stop() answers what is being
    processed (here an async batch that sleeps), then ends the stream promptly
    instead of waiting out the whole grace period."""
    sock = "unix:%s" % (tmp_path / "drain.sock")
    srv = FunctionServer(make_functions(), sock, mode=mode).start()
    channel = grpc.insecure_channel(sock)
    stub = function_pb2_grpc.FunctionServiceStub(channel)
    requests = queue.Queue()

    def gen():
        while True:
            r = requests.get()
            if r is None:
                return
            yield r

    responses = stub.Invoke(gen(), timeout=30)
    requests.put(function_pb2.ToFunction(batches=[
        batch(1, "test/counter", "a", {"n": None}, [int_tv(1)])]))
    assert by_id(next(responses))[1].WhichOneof("outcome") == "result"
    requests.put(function_pb2.ToFunction(batches=[
        batch(2, "test/async", "b", {"last": None}, [str_tv("x")])]))
    deadline = time.monotonic() + 5
    while not srv._work and time.monotonic() < deadline:   # the async batch is sleeping now
        time.sleep(0.001)
    assert srv._work
    t0 = time.monotonic()
    srv.stop(grace=5)
    assert time.monotonic() - t0 < 2.5
    got = {}
    try:
        for resp in responses:
            got.update(by_id(resp))
    except grpc.RpcError as e:
        assert e.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    assert 2 in got and got[2].WhichOneof("outcome") == "result"
    requests.put(None)
    channel.close()
