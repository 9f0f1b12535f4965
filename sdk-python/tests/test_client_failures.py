"""Client.inspect / stuck / skip / resume (and the AsyncClient's) against an
in-process fake of statemeshd's Admin service: the requests they send, the
decoding of AddressStatus, the local checks of arguments (nothing reaches the
server), and the mapping of errors — including a Call's DeadlineExceeded,
which must keep the runtime's text."""

import asyncio
import datetime
import re
from concurrent import futures

import grpc
import pytest

from statemesh import (Address, AddressStatus, AsyncClient, Client, DeadlineExceeded,
                       FailedPrecondition, StuckList, Unavailable)
from statemesh.v1 import admin_pb2, ingress_pb2, types_pb2

T0 = 1700000000123
DEADLINE_TEXT = ("no reply within 1000 ms; the message is durable and will still be processed "
                 "(retry with --idempotency-key to apply it once)")
S = admin_pb2.AddressStatus


def _paused():
    s = S(phase=S.PAUSED, queued_messages=2, attempts=3, max_attempts=3,
          last_error="raw/counter wants statemesh/int64, got statemesh/string\nTraceback ...",
          last_error_at_ms=T0)
    s.address.type, s.address.id = "raw/counter", "p"
    s.head.CopyFrom(types_pb2.TypedValue(typename="statemesh/string", value=b"poison"))
    return s


def _retrying():
    s = S(phase=S.RETRYING, queued_messages=11, in_flight_messages=0, attempts=1,
          max_attempts=0, next_retry_at_ms=T0 + 500, last_error="boom", last_error_at_ms=T0,
          isolating=True)
    s.address.type, s.address.id = "t/other", "r"
    s.head.CopyFrom(types_pb2.TypedValue(typename="statemesh/json", value=b'{"k":1}'))
    s.head_caller.type, s.head_caller.id = "t/origin", "o1"
    return s


class FakeAdmin:
    def __init__(self):
        self.requests = []

    def inspect(self, req, ctx):
        self.requests.append(("inspect", req))
        a = req.address
        if a.type == "t/down":
            ctx.abort(grpc.StatusCode.UNAVAILABLE, "statemeshd is shutting down")
        if (a.type, a.id) == ("raw/counter", "p"):
            return admin_pb2.InspectResponse(status=_paused())
        if (a.type, a.id) == ("t/other", "r"):
            return admin_pb2.InspectResponse(status=_retrying())
        st = S(phase=S.IDLE)
        st.address.CopyFrom(a)
        return admin_pb2.InspectResponse(status=st)

    def list_stuck(self, req, ctx):
        self.requests.append(("stuck", req))
        items = [s for s in (_paused(), _retrying()) if not req.type or s.address.type == req.type]
        return admin_pb2.ListStuckResponse(addresses=items[:req.limit or 1000], retrying=1,
                                           paused=1)

    def skip(self, req, ctx):
        self.requests.append(("skip", req))
        if req.address.id != "p":
            ctx.abort(grpc.StatusCode.FAILED_PRECONDITION,
                      "%s %s is neither retrying nor paused" % (req.address.type, req.address.id))
        return admin_pb2.SkipResponse(dead_letter_id=42)

    def resume(self, req, ctx):
        self.requests.append(("resume", req))
        if req.address.id != "p":
            ctx.abort(grpc.StatusCode.FAILED_PRECONDITION, "no queued message to resume")
        return admin_pb2.ResumeResponse()

    def call(self, req, ctx):
        self.requests.append(("call", req))
        ctx.abort(grpc.StatusCode.DEADLINE_EXCEEDED, DEADLINE_TEXT)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    fake = FakeAdmin()
    srv = grpc.server(futures.ThreadPoolExecutor(4))
    u = grpc.unary_unary_rpc_method_handler
    addr_in = admin_pb2.AddressRequest.FromString
    srv.add_generic_rpc_handlers([
        grpc.method_handlers_generic_handler("statemesh.v1.Admin", {
            "Inspect": u(fake.inspect, admin_pb2.InspectRequest.FromString,
                         admin_pb2.InspectResponse.SerializeToString),
            "ListStuck": u(fake.list_stuck, admin_pb2.ListStuckRequest.FromString,
                           admin_pb2.ListStuckResponse.SerializeToString),
            "Skip": u(fake.skip, addr_in, admin_pb2.SkipResponse.SerializeToString),
            "Resume": u(fake.resume, addr_in, admin_pb2.ResumeResponse.SerializeToString),
        }),
        grpc.method_handlers_generic_handler("statemesh.v1.Ingress", {
            "Call": u(fake.call, ingress_pb2.CallRequest.FromString,
                      ingress_pb2.CallResponse.SerializeToString),
        }),
    ])
    addr = "unix:%s" % (tmp_path_factory.mktemp("admin") / "admin.sock")
    srv.add_insecure_port(addr)
    srv.start()
    yield addr, fake
    srv.stop(0)


@pytest.fixture
def admin(server):
    addr, fake = server
    fake.requests.clear()
    with Client(addr, timeout=10) as c:
        yield c, fake


def _utc(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)


def test_inspect_decodes_a_paused_address(admin):
    c, fake = admin
    st = c.inspect("raw/counter", "p")
    assert isinstance(st, AddressStatus)
    assert st.address == Address("raw/counter", "p") and st.phase == "paused"
    assert (st.queued_messages, st.in_flight_messages, st.attempts, st.max_attempts) == \
        (2, 0, 3, 3)
    assert st.next_retry_at_ms is None and st.next_retry_at is None
    assert st.last_error.startswith("raw/counter wants statemesh/int64") and "\n" in st.last_error
    assert st.last_error_at_ms == T0 and st.last_error_at == _utc(T0)
    assert st.isolating is False
    assert st.head.value == "poison" and st.head.typename == "statemesh/string"
    assert st.head_caller is None
    with pytest.raises(AttributeError):
        st.phase = "idle"                               # immutable
    (kind, req), = fake.requests
    assert kind == "inspect" and (req.address.type, req.address.id) == ("raw/counter", "p")


def test_inspect_decodes_retrying_and_idle(admin):
    c, _ = admin
    st = c.inspect("t/other", "r")
    assert st.phase == "retrying" and st.max_attempts == 0 and st.isolating is True
    assert st.next_retry_at_ms == T0 + 500 and st.next_retry_at == _utc(T0 + 500)
    assert st.head.as_json() == {"k": 1} and st.head_caller == Address("t/origin", "o1")
    idle = c.inspect("t/other", "nobody")
    assert idle.phase == "idle" and idle.address == Address("t/other", "nobody")
    assert idle.head is None and idle.head_caller is None
    assert idle.last_error is None and idle.last_error_at_ms is None
    assert idle.last_error_at is None and idle.attempts == 0


def test_stuck_lists_with_totals(admin):
    c, fake = admin
    stuck = c.stuck()
    assert isinstance(stuck, StuckList)
    assert (len(stuck), stuck.retrying, stuck.paused) == (2, 1, 1)
    assert [s.phase for s in stuck] == ["paused", "retrying"]
    assert stuck[0].address == Address("raw/counter", "p")
    assert "retrying=1" in repr(stuck) and "paused=1" in repr(stuck)
    only = c.stuck(type="t/other", limit=5)
    assert [s.address.id for s in only] == ["r"] and only.paused == 1
    assert [(r.type, r.limit) for _, r in fake.requests] == [("", 0), ("t/other", 5)]


def test_skip_and_resume(admin):
    c, fake = admin
    assert c.skip("raw/counter", "p") == 42
    assert c.resume("raw/counter", "p") is None
    with pytest.raises(FailedPrecondition) as e:
        c.skip("raw/counter", "q")
    assert "neither retrying nor paused" in e.value.details
    with pytest.raises(FailedPrecondition) as e:
        c.resume("raw/counter", "q")
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert [(k, r.address.id) for k, r in fake.requests] == \
        [("skip", "p"), ("resume", "p"), ("skip", "q"), ("resume", "q")]


@pytest.mark.parametrize("args,exc,needle", [
    ((None, "a"), TypeError, "function type must be a str"),
    (("t/x", 5), TypeError, "function id must be a str"),
    (("nons", "a"), ValueError, "namespace/name"),
    (("a/b/c", "a"), ValueError, "namespace/name"),
    (("t/x", ""), ValueError, "function id must be 1..1024 bytes"),
    (("t/x", "x" * 1025), ValueError, "function id must be 1..1024 bytes"),
])
def test_bad_addresses_raise_before_the_network(admin, args, exc, needle):
    c, fake = admin
    for fn in (c.inspect, c.skip, c.resume):
        with pytest.raises(exc) as e:
            fn(*args)
        assert needle in str(e.value)
    assert fake.requests == []


@pytest.mark.parametrize("kw,exc,needle", [
    ({"limit": 0}, ValueError, "limit must be 1..100000"),
    ({"limit": 100001}, ValueError, "limit must be 1..100000"),
    ({"limit": 2.0}, TypeError, "limit must be an int"),
    ({"limit": True}, TypeError, "limit must be an int"),
    ({"type": "flaky"}, ValueError, "namespace/name"),
    ({"type": 3}, TypeError, "type must be a function type str"),
])
def test_bad_stuck_arguments_raise_before_the_network(admin, kw, exc, needle):
    c, fake = admin
    with pytest.raises(exc) as e:
        c.stuck(**kw)
    assert needle in str(e.value)
    assert fake.requests == []


def test_runtime_errors_map_to_exceptions(admin):
    c, _ = admin
    with pytest.raises(Unavailable) as e:
        c.inspect("t/down", "x")
    assert "shutting down" in e.value.details


def test_deadline_exceeded_keeps_the_runtimes_text(admin):
    c, _ = admin
    with pytest.raises(DeadlineExceeded) as e:
        c.call("t/slow", "a", 1)
    assert isinstance(e.value, TimeoutError)
    assert e.value.details == DEADLINE_TEXT
    assert re.search(r"no reply within \d+ ms; the message is durable", str(e.value))


def test_async_client(server):
    addr, fake = server
    fake.requests.clear()

    async def main():
        async with AsyncClient(addr, timeout=10) as c:
            st = await c.inspect("raw/counter", "p")
            assert st.phase == "paused" and st.head.value == "poison"
            stuck = await c.stuck(type="raw/counter")
            assert len(stuck) == 1 and (stuck.retrying, stuck.paused) == (1, 1)
            assert await c.skip("raw/counter", "p") == 42
            assert await c.resume("raw/counter", "p") is None
            with pytest.raises(FailedPrecondition):
                await c.resume("raw/counter", "idle")
            with pytest.raises(ValueError):
                await c.inspect("nons", "a")
            with pytest.raises(ValueError):
                await c.stuck(limit=0)
            with pytest.raises(DeadlineExceeded) as e:
                await c.call("t/slow", "a", 1)
            assert e.value.details == DEADLINE_TEXT

    asyncio.run(main())
    assert [k for k, _ in fake.requests] == ["inspect", "stuck", "skip", "resume", "resume",
                                             "call"]
