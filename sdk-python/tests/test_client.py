"""Client and AsyncClient against an in-process fake of statemeshd's Ingress
and Admin services: encoding of arguments, decoding of replies and state,
and the mapping of gRPC status codes to exceptions."""

import asyncio
import struct
import time
from concurrent import futures

import grpc
import pytest

from statemesh import (AsyncClient, Client, DeadlineExceeded, IntType, InvalidArgument,
                       NotFound, ResourceExhausted, StatemeshError, TypedValue, Unavailable,
                       simple_type)
from statemesh.v1 import admin_pb2, ingress_pb2, types_pb2

Point = simple_type("geo/point", lambda p: struct.pack("<ii", *p),
                    lambda b: struct.unpack("<ii", b))


class FakeRuntime:
    def __init__(self):
        self.sent = []

    def _check(self, target, ctx):
        if not target.id:
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "address id must be 1..1024 bytes")
        if target.type == "t/missing":
            ctx.abort(grpc.StatusCode.NOT_FOUND, "no endpoint serves t/missing")
        if target.type == "t/big":
            ctx.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "message too large")
        if target.type == "t/down":
            ctx.abort(grpc.StatusCode.UNAVAILABLE, "shutting down")
        if target.type == "t/weird":
            ctx.abort(grpc.StatusCode.PERMISSION_DENIED, "nope")

    def send(self, req, ctx):
        self._check(req.target, ctx)
        self.sent.append((req.target.type, req.target.id, req.argument.typename,
                          req.argument.value))
        return ingress_pb2.SendResponse()

    def call(self, req, ctx):
        self._check(req.target, ctx)
        if req.target.type == "t/slow":
            time.sleep(2)
        return ingress_pb2.CallResponse(reply=req.argument)   # echo

    def get_state(self, req, ctx):
        self._check(req.address, ctx)
        values = [
            types_pb2.StateValue(name="n", value=types_pb2.TypedValue(
                typename="statemesh/int64", value=struct.pack("<q", 42))),
            types_pb2.StateValue(name="p", value=types_pb2.TypedValue(
                typename="geo/point", value=struct.pack("<ii", 1, 2))),
            types_pb2.StateValue(name="s", value=types_pb2.TypedValue(
                typename="statemesh/string", value=b"hi")),
        ]
        if req.name:
            values = [v for v in values if v.name == req.name]
        return admin_pb2.GetStateResponse(values=values, queued_messages=3, in_flight=True)

    def stats(self, req, ctx):
        return admin_pb2.StatsResponse(stats=[admin_pb2.Stat(name="messages_received", value=7),
                                              admin_pb2.Stat(name="checkpoints", value=2)])


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    fake = FakeRuntime()
    server = grpc.server(futures.ThreadPoolExecutor(8))
    u = grpc.unary_unary_rpc_method_handler
    server.add_generic_rpc_handlers([
        grpc.method_handlers_generic_handler("statemesh.v1.Ingress", {
            "Send": u(fake.send, ingress_pb2.SendRequest.FromString,
                      ingress_pb2.SendResponse.SerializeToString),
            "Call": u(fake.call, ingress_pb2.CallRequest.FromString,
                      ingress_pb2.CallResponse.SerializeToString)}),
        grpc.method_handlers_generic_handler("statemesh.v1.Admin", {
            "GetState": u(fake.get_state, admin_pb2.GetStateRequest.FromString,
                          admin_pb2.GetStateResponse.SerializeToString),
            "Stats": u(fake.stats, admin_pb2.StatsRequest.FromString,
                       admin_pb2.StatsResponse.SerializeToString)}),
    ])
    addr = "unix:%s" % (tmp_path_factory.mktemp("rt") / "ingress.sock")
    server.add_insecure_port(addr)
    server.start()
    yield addr, fake
    server.stop(0)


def test_send_and_call(runtime):
    addr, fake = runtime
    with Client(addr) as c:
        fake.sent.clear()
        c.send("t/f", "a", "hello")
        c.send("t/f", "b", 5)
        c.send("t/f", "c", {"k": 1})
        c.send("t/f", "d", 7, type=IntType)
        c.send("t/f", "e", (3, 4), type=Point)
        c.send("t/f", "f", TypedValue("x/y", b"raw"))
        assert fake.sent == [
            ("t/f", "a", "statemesh/string", b"hello"),
            ("t/f", "b", "statemesh/int64", struct.pack("<q", 5)),
            ("t/f", "c", "statemesh/json", b'{"k":1}'),
            ("t/f", "d", "statemesh/int64", struct.pack("<q", 7)),
            ("t/f", "e", "geo/point", struct.pack("<ii", 3, 4)),
            ("t/f", "f", "x/y", b"raw"),
        ]
        assert c.call("t/echo", "a", "hi", timeout=5) == "hi"
        assert c.call("t/echo", "a", 1.5) == 1.5
        assert c.call("t/echo", "a", [1, {"a": None}]) == [1, {"a": None}]
        assert c.call("t/echo", "a", "hi", raw=True) == TypedValue("statemesh/string", b"hi")
        assert c.call("t/echo", "a", (1, 2), type=Point) == TypedValue(
            "geo/point", struct.pack("<ii", 1, 2))
        assert c.call("t/echo", "a", (1, 2), type=Point, reply_type=Point) == (1, 2)


def test_state_and_stats(runtime):
    addr, _ = runtime
    with Client(addr) as c:
        st = c.state("t/f", "a")
        assert st == {"n": 42, "p": TypedValue("geo/point", struct.pack("<ii", 1, 2)),
                      "s": "hi"}
        assert c.state("t/f", "a", types={"p": Point})["p"] == (1, 2)
        assert c.state("t/f", "a", name="n") == {"n": 42}
        assert c.state("t/f", "a", raw=True)["s"] == TypedValue("statemesh/string", b"hi")
        info = c.state_info("t/f", "a")
        assert info.queued_messages == 3 and info.in_flight is True and info.values["n"] == 42
        assert c.stats() == {"messages_received": 7, "checkpoints": 2}


@pytest.mark.parametrize("ftype,fid,exc,builtin", [
    ("t/missing", "a", NotFound, LookupError),
    ("t/f", "", InvalidArgument, ValueError),
    ("t/big", "a", ResourceExhausted, StatemeshError),
    ("t/down", "a", Unavailable, ConnectionError),
])
def test_errors(runtime, ftype, fid, exc, builtin):
    addr, _ = runtime
    with Client(addr) as c:
        for fn in (lambda: c.send(ftype, fid, 1), lambda: c.call(ftype, fid, 1),
                   lambda: c.state(ftype, fid)):
            with pytest.raises(exc) as e:
                fn()
            assert isinstance(e.value, builtin) and isinstance(e.value, StatemeshError)
            assert e.value.code == exc.code and e.value.details


def test_other_codes_and_deadline(runtime):
    addr, _ = runtime
    with Client(addr) as c:
        with pytest.raises(StatemeshError) as e:
            c.send("t/weird", "a", 1)
        assert e.value.code == grpc.StatusCode.PERMISSION_DENIED and "nope" in str(e.value)
        with pytest.raises(DeadlineExceeded) as e:
            c.call("t/slow", "a", 1, timeout=0.2)
        assert isinstance(e.value, TimeoutError)
    with Client(addr, timeout=0.2) as c:     # default deadline
        with pytest.raises(DeadlineExceeded):
            c.call("t/slow", "a", 1)


def test_unreachable_runtime(tmp_path):
    with Client("unix:%s" % (tmp_path / "nobody.sock")) as c:
        with pytest.raises(Unavailable):
            c.send("t/f", "a", 1, timeout=5)


def test_bad_arguments_raise_before_the_network(runtime):
    addr, _ = runtime
    with Client(addr) as c:
        with pytest.raises(TypeError):
            c.send("t/f", "a", None)
        with pytest.raises(TypeError):
            c.send("t/f", 3, 1)
        with pytest.raises(TypeError):
            c.send("t/f", "a", "x", type=IntType)


def test_async_client(runtime):
    addr, _ = runtime

    async def main():
        async with AsyncClient(addr) as c:
            await c.send("t/f", "a", "x")
            assert await c.call("t/echo", "a", {"z": 1}, timeout=5) == {"z": 1}
            assert await c.call("t/echo", "a", 3, raw=True) == TypedValue(
                "statemesh/int64", struct.pack("<q", 3))
            assert (await c.state("t/f", "a"))["n"] == 42
            assert (await c.state_info("t/f", "a")).queued_messages == 3
            assert (await c.stats())["checkpoints"] == 2
            with pytest.raises(NotFound):
                await c.call("t/missing", "a", 1)
            with pytest.raises(DeadlineExceeded):
                await c.call("t/slow", "a", 1, timeout=0.2)
            # many concurrent calls
            rs = await asyncio.gather(*(c.call("t/echo", str(i), i) for i in range(50)))
            assert rs == list(range(50))

    asyncio.run(main())
