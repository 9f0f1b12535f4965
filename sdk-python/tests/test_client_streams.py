"""Idempotency keys, delays, SendStream and Subscribe of Client/AsyncClient
against an in-process fake of statemeshd's ingress (the real runtime is in
test/integration/test_python_messaging.py). The fake parses with the
generated classes, so the hand-encoded SendStream requests are checked
against protobuf too."""

import asyncio
import bisect
import datetime
import queue
import struct
import threading
import time
from concurrent import futures

import grpc
import pytest

from statemesh import (Aborted, AlreadyExists, AsyncClient, Client, IntType, InvalidArgument, NotFound, OffsetTrimmed,
                       Overloaded, ResourceExhausted, SendStreamResult, StatemeshError,
                       StreamMessage, TypedValue, Unavailable, simple_type)
from statemesh.client import _encode_stream_message
from statemesh.v1 import ingress_pb2, types_pb2

Point = simple_type("geo/point", lambda p: struct.pack("<ii", *p),
                    lambda b: struct.unpack("<ii", b))


def tv(typename, value):
    return types_pb2.TypedValue(typename=typename, value=value)


class FakeIngress:
    def __init__(self):
        self.reset()

    def reset(self):
        self.sent = []            # (type, id, typename, value, key, delay_ms) applied
        self.keys = {}            # idempotency key -> stored reply (Call) or None (Send)
        self.calls = 0
        self.stream_msgs = []     # StreamMessage protos applied, in order
        self.stream_requests = 0
        self.max_unacked = 0
        self.ack_interval = 0.0   # seconds between acks (lazy acking)
        self.fail_after = None    # abort the stream with UNAVAILABLE after N messages
        self.ack_limit = None     # never ack beyond this seq (and end OK at EOF)
        self.records = {"receipts": []}
        self.first = {"receipts": 1}
        self.cond = threading.Condition()

    # -- unary --
    def send(self, req, ctx):
        if req.target.type == "t/full":
            ctx.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "queued-message memory is full")
        if req.idempotency_key and req.idempotency_key in self.keys:
            return ingress_pb2.SendResponse()
        if req.idempotency_key:
            self.keys[req.idempotency_key] = None
        self.sent.append((req.target.type, req.target.id, req.argument.typename,
                          req.argument.value, req.idempotency_key, req.delay_ms))
        return ingress_pb2.SendResponse()

    def call(self, req, ctx):
        if req.target.type == "t/dead":
            ctx.abort(grpc.StatusCode.ABORTED, "batch dead-lettered after 3 attempts")
        k = req.idempotency_key
        if k and k in self.keys:
            return ingress_pb2.CallResponse(reply=self.keys[k])
        self.calls += 1
        reply = tv("statemesh/int64", struct.pack("<q", self.calls))
        if k:
            self.keys[k] = reply
        return ingress_pb2.CallResponse(reply=reply)

    # -- SendStream: a reader thread takes requests in; acks go out every
    # ack_interval (or at once), covering everything read so far. --
    def send_stream(self, requests, ctx):
        state = {"read": 0, "acked": 0, "errors": [], "eof": False, "err": None, "n": 0,
                 "seqs": []}
        cond = threading.Condition()

        def reader():
            last = 0
            try:
                for req in requests:
                    with cond:
                        self.stream_requests += 1
                        for m in req.messages:
                            if m.seq <= last:
                                state["err"] = "seq %d after %d" % (m.seq, last)
                            last = m.seq
                            state["n"] += 1
                            state["seqs"].append(m.seq)
                            if m.target.type == "t/missing":
                                state["errors"].append(ingress_pb2.StreamError(
                                    seq=m.seq, code=grpc.StatusCode.NOT_FOUND.value[0],
                                    message="no endpoint serves t/missing"))
                            else:
                                self.stream_msgs.append(m)
                        state["read"] = last
                        seqs = state["seqs"]
                        self.max_unacked = max(
                            self.max_unacked,
                            len(seqs) - bisect.bisect_right(seqs, state["acked"]))
                        cond.notify_all()
            finally:
                with cond:
                    state["eof"] = True
                    cond.notify_all()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        while True:
            with cond:
                cond.wait_for(lambda: state["eof"] or state["read"] > state["acked"], timeout=5)
                if state["err"]:
                    ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, state["err"])
                if self.fail_after is not None and state["n"] >= self.fail_after:
                    ctx.abort(grpc.StatusCode.UNAVAILABLE, "runtime shutting down")
                through = state["read"]
                if self.ack_limit is not None:
                    through = min(through, self.ack_limit)
                errors, state["errors"] = state["errors"], []
                done = state["eof"] and (state["read"] == state["acked"]
                                         or (self.ack_limit is not None
                                             and state["acked"] >= through))
            if done:
                return
            if through > state["acked"] or errors:
                with cond:
                    state["acked"] = max(state["acked"], through)
                yield ingress_pb2.SendStreamResponse(committed_through=through, errors=errors)
            if self.ack_interval:
                time.sleep(self.ack_interval)

    # -- Subscribe --
    def subscribe(self, req, ctx):
        if req.egress not in self.records:
            ctx.abort(grpc.StatusCode.NOT_FOUND, "no egress named %s" % req.egress)
        recs = self.records[req.egress]
        first = self.first[req.egress]
        S = ingress_pb2.SubscribeRequest
        with self.cond:
            end = first + len(recs)
        if req.start == S.EARLIEST:
            pos = first
        elif req.start == S.LATEST:
            pos = end
        else:
            pos = req.from_offset
            if pos < first:
                ctx.abort(grpc.StatusCode.OUT_OF_RANGE,
                          "offset %d was trimmed; the oldest is %d" % (pos, first))
        while ctx.is_active():
            with self.cond:
                batch = recs[pos - first:pos - first + 3]
                if not batch:
                    if not req.follow:
                        return
                    self.cond.wait(0.05)
                    continue
            pos += len(batch)
            yield ingress_pb2.SubscribeResponse(records=batch)

    def append(self, egress, value, source=("shop/cart", "bob")):
        with self.cond:
            recs = self.records[egress]
            off = self.first[egress] + len(recs)
            recs.append(ingress_pb2.EgressEntry(
                offset=off, timestamp_ms=1700000000000 + off,
                source=types_pb2.Address(type=source[0], id=source[1]), value=value))
            self.cond.notify_all()
        return off


@pytest.fixture
def ingress(tmp_path):
    fake = FakeIngress()
    server = grpc.server(futures.ThreadPoolExecutor(8))
    u = grpc.unary_unary_rpc_method_handler
    server.add_generic_rpc_handlers([
        grpc.method_handlers_generic_handler("statemesh.v1.Ingress", {
            "Send": u(fake.send, ingress_pb2.SendRequest.FromString,
                      ingress_pb2.SendResponse.SerializeToString),
            "Call": u(fake.call, ingress_pb2.CallRequest.FromString,
                      ingress_pb2.CallResponse.SerializeToString),
            "SendStream": grpc.stream_stream_rpc_method_handler(
                fake.send_stream, ingress_pb2.SendStreamRequest.FromString,
                ingress_pb2.SendStreamResponse.SerializeToString),
            "Subscribe": grpc.unary_stream_rpc_method_handler(
                fake.subscribe, ingress_pb2.SubscribeRequest.FromString,
                ingress_pb2.SubscribeResponse.SerializeToString)}),
    ])
    addr = "unix:%s" % (tmp_path / "ingress.sock")
    server.add_insecure_port(addr)
    server.start()
    yield addr, fake
    server.stop(0)


# ---- Send / Call with idempotency keys and delays -------------------------------

def test_send_with_key_and_delay(ingress):
    addr, fake = ingress
    with Client(addr, timeout=5) as c:
        c.send("t/f", "a", 1, idempotency_key="k1")
        c.send("t/f", "a", 1, idempotency_key="k1")          # deduplicated by the runtime
        c.send("t/f", "b", "x", delay=datetime.timedelta(minutes=2))
        c.send("t/f", "c", "y", delay=0.25, idempotency_key="é" * 128)
        c.send("t/f", "d", "z")
    assert [(t, i, k, d) for t, i, _, _, k, d in fake.sent] == [
        ("t/f", "a", "k1", 0), ("t/f", "b", "", 120000), ("t/f", "c", "é" * 128, 250),
        ("t/f", "d", "", 0)]


def test_call_with_key_returns_the_stored_reply(ingress):
    addr, fake = ingress
    with Client(addr, timeout=5) as c:
        assert c.call("t/f", "a", 1, idempotency_key="order-1") == 1
        assert c.call("t/f", "a", 1, idempotency_key="order-1") == 1
        assert c.call("t/f", "a", 1) == 2
        assert c.call("t/f", "a", 1, idempotency_key="order-2") == 3

    async def main():
        async with AsyncClient(addr, timeout=5) as c:
            assert await c.call("t/f", "a", 1, idempotency_key="order-1") == 1
            await c.send("t/f", "q", 2, idempotency_key="s-9", delay=3)
    asyncio.run(main())
    assert fake.sent[-1][4:] == ("s-9", 3000)


@pytest.mark.parametrize("kw,err,text", [
    (dict(idempotency_key=""), ValueError, "idempotency key must be 1..256"),
    (dict(idempotency_key="k" * 257), ValueError, "1..256"),
    (dict(idempotency_key=17), TypeError, "idempotency key must be a str"),
    (dict(idempotency_key="a\x00"), ValueError, "NUL"),
    (dict(delay=-1), ValueError, "negative"),
    (dict(delay=datetime.timedelta(days=366)), ValueError, "365 days"),
    (dict(delay="1s"), TypeError, "timedelta"),
])
def test_bad_key_or_delay_raises_before_the_network(ingress, kw, err, text):
    addr, fake = ingress
    with Client(addr, timeout=5) as c:
        with pytest.raises(err) as e:
            c.send("t/f", "a", 1, **kw)
        assert text in str(e.value)
        if "delay" not in kw:
            with pytest.raises(err):
                c.call("t/f", "a", 1, **kw)
    assert fake.sent == [] and fake.calls == 0


def test_aborted_call(ingress):
    addr, _ = ingress
    with Client(addr, timeout=5) as c:
        with pytest.raises(Aborted) as e:
            c.call("t/dead", "a", 1)
    assert e.value.code == grpc.StatusCode.ABORTED and "dead-lettered" in e.value.details
    assert AlreadyExists.code == grpc.StatusCode.ALREADY_EXISTS


def test_overloaded_is_resource_exhausted(ingress):
    addr, _ = ingress
    with Client(addr, timeout=5) as c:
        with pytest.raises(Overloaded) as e:
            c.send("t/full", "a", 1)
    assert isinstance(e.value, ResourceExhausted) and "full" in e.value.details


# ---- SendStream encoding ----------------------------------------------------------

def test_stream_message_encoding_equals_protobuf():
    SM = ingress_pb2.StreamMessage
    cases = [
        (("t/f", "a", 5), SM(seq=1, target=types_pb2.Address(type="t/f", id="a"),
                             argument=tv("statemesh/int64", struct.pack("<q", 5)))),
        (StreamMessage("t/f", "b" * 1024, "x" * 300, idempotency_key="k" * 256, delay=1.5),
         SM(seq=1, target=types_pb2.Address(type="t/f", id="b" * 1024),
            argument=tv("statemesh/string", b"x" * 300), idempotency_key="k" * 256,
            delay_ms=1500)),
        (StreamMessage("t/f", "c", (1, 2), type=Point),
         SM(seq=1, target=types_pb2.Address(type="t/f", id="c"),
            argument=tv("geo/point", struct.pack("<ii", 1, 2)))),
        (("t/f", "d", "", None, None, 0), SM(seq=1, target=types_pb2.Address(type="t/f", id="d"),
                                             argument=tv("statemesh/string", b""))),
        (("t/f", "e", TypedValue("my/raw", b"R")),
         SM(seq=1, target=types_pb2.Address(type="t/f", id="e"), argument=tv("my/raw", b"R"))),
    ]
    for seq in (1, 300, 2 ** 40):
        for item, want in cases:
            want.seq = seq
            got = _encode_stream_message(seq, item)
            assert got == ingress_pb2.SendStreamRequest(messages=[want]).SerializeToString()


class Obj:
    def __init__(self, target_type, target_id, value, idempotency_key=None):
        self.target_type, self.target_id, self.value = target_type, target_id, value
        self.idempotency_key = idempotency_key


def test_send_stream_applies_everything_in_order(ingress):
    addr, fake = ingress
    n = 5000

    def gen():
        for i in range(n):
            yield ("t/f", "k%d" % (i % 7), i)
    with Client(addr) as c:
        r = c.send_stream(gen(), window=1000, batch_size=100)
    assert isinstance(r, SendStreamResult)
    assert r == (n, n, []) and r.ok
    assert [m.seq for m in fake.stream_msgs] == list(range(1, n + 1))
    assert [struct.unpack("<q", m.argument.value)[0] for m in fake.stream_msgs] == list(range(n))
    assert fake.stream_requests == n // 100


def test_send_stream_mixed_items_keys_and_delays(ingress):
    addr, fake = ingress
    items = [("t/f", "a", 1), StreamMessage("t/f", "b", "s", idempotency_key="k1", delay=2),
             Obj("t/f", "c", {"j": 1}, idempotency_key="k2"),
             StreamMessage("t/f", "d", (5, 6), type=Point)]
    with Client(addr) as c:
        assert c.send_stream(items) == (4, 4, [])
    got = [(m.seq, m.target.id, m.argument.typename, m.idempotency_key, m.delay_ms)
           for m in fake.stream_msgs]
    assert got == [(1, "a", "statemesh/int64", "", 0), (2, "b", "statemesh/string", "k1", 2000),
                   (3, "c", "statemesh/json", "k2", 0), (4, "d", "geo/point", "", 0)]


def test_send_stream_window_bounds_unacknowledged_messages(ingress):
    """The fake acks lazily (every 20 ms): the client never has more than
    `window` messages unacknowledged, yet it does fill the window."""
    addr, fake = ingress
    fake.ack_interval = 0.02
    with Client(addr) as c:
        r = c.send_stream((("t/f", "a", i) for i in range(3000)), window=300, batch_size=50)
    assert r.acked == 3000
    assert 150 <= fake.max_unacked <= 300, fake.max_unacked


def test_send_stream_errors_and_progress(ingress):
    addr, fake = ingress
    items = []
    for i in range(1, 1001):
        if i % 100 == 0:
            items.append(("t/missing", "x", i))          # rejected by the runtime
        elif i == 555:
            items.append(("t/f", "", i))                  # bad id: rejected locally
        elif i == 777:
            items.append(("t/f", "a", None))              # no type: rejected locally
        elif i == 778:
            items.append("not a tuple")
        else:
            items.append(("t/f", "a", i))
    seen = []
    with Client(addr) as c:
        r = c.send_stream(items, window=200, batch_size=64, progress=seen.append)
    assert r.sent == 997 and r.acked == 987 and not r.ok
    assert [e.seq for e in r.errors] == sorted([100 * k for k in range(1, 11)] + [555, 777, 778])
    by_seq = {e.seq: e for e in r.errors}
    assert by_seq[300].code == grpc.StatusCode.NOT_FOUND and "t/missing" in by_seq[300].message
    assert by_seq[555].code == grpc.StatusCode.INVALID_ARGUMENT and "1..1024" in by_seq[555].message
    assert "infer" in by_seq[777].message and "StreamMessage" in by_seq[778].message
    assert len(fake.stream_msgs) == 987
    # progress: acked never decreases and ends at the final count
    assert seen and [p.acked for p in seen] == sorted(p.acked for p in seen)
    assert seen[-1].acked == 987


def test_send_stream_empty_and_bad_parameters(ingress):
    addr, fake = ingress
    with Client(addr) as c:
        assert c.send_stream([]) == (0, 0, [])
        for kw in (dict(window=0), dict(batch_size=0), dict(window=1.5)):
            with pytest.raises(ValueError):
                c.send_stream([("t/f", "a", 1)], **kw)
    assert fake.stream_msgs == []


def test_send_stream_source_error_propagates_after_commit(ingress):
    addr, fake = ingress

    def gen():
        for i in range(250):
            yield ("t/f", "a", i)
        raise KeyError("source broke")
    with Client(addr) as c:
        with pytest.raises(KeyError):
            c.send_stream(gen(), batch_size=100)
    assert len(fake.stream_msgs) == 250          # what was read was sent and committed


def test_send_stream_stream_error_carries_summary(ingress):
    addr, fake = ingress
    fake.fail_after = 400
    with Client(addr) as c:
        with pytest.raises(Unavailable) as e:
            c.send_stream((("t/f", "a", i) for i in range(100000)), window=500, batch_size=100)
    s = e.value.summary
    assert s.acked < 100000 and s.sent <= s.acked + 500 and s.acked <= len(fake.stream_msgs)


def test_send_stream_detects_missing_final_ack(ingress):
    addr, fake = ingress
    fake.ack_limit = 9
    with Client(addr) as c:
        with pytest.raises(StatemeshError) as e:
            c.send_stream([("t/f", "a", i) for i in range(10)])
    assert "acknowledging seq 9 of 10" in str(e.value) and e.value.summary.acked == 9


def test_async_send_stream(ingress):
    addr, fake = ingress
    fake.ack_interval = 0.01

    async def agen():
        for i in range(2000):
            if i % 500 == 0:
                await asyncio.sleep(0)
            yield ("t/f", "k%d" % (i % 3), i)

    async def main():
        progress = []

        async def on_progress(r):
            progress.append(r.acked)
        async with AsyncClient(addr) as c:
            r1 = await c.send_stream(agen(), window=400, batch_size=100, progress=on_progress)
            r2 = await c.send_stream([("t/f", "z", 1), ("t/missing", "z", 2), ("t/f", "", 3)])
        return r1, r2, progress
    r1, r2, progress = asyncio.run(main())
    assert r1 == (2000, 2000, []) and progress[-1] == 2000
    assert r2.sent == 2 and r2.acked == 1 and [e.seq for e in r2.errors] == [2, 3]
    assert fake.max_unacked <= 400
    assert len(fake.stream_msgs) == 2001


# ---- Subscribe -----------------------------------------------------------------------

def fill(fake, n):
    for i in range(n):
        fake.append("receipts", tv("statemesh/json", b'{"n":%d}' % i))


def test_subscribe_replay_without_follow(ingress):
    addr, fake = ingress
    fill(fake, 8)
    with Client(addr) as c:
        recs = list(c.subscribe("receipts", follow=False))          # default: earliest
        assert [r.offset for r in recs] == list(range(1, 9))
        r = recs[3]
        assert r.value.as_json() == {"n": 3} and r.source == ("shop/cart", "bob")
        assert r.source.type == "shop/cart" and r.timestamp_ms == 1700000000004
        assert r.timestamp == datetime.datetime(2023, 11, 14, 22, 13, 20, 4000,
                                                tzinfo=datetime.timezone.utc)
        assert [x.offset for x in c.subscribe("receipts", from_offset=6, follow=False)] == \
            [6, 7, 8]
        assert list(c.subscribe("receipts", latest=True, follow=False)) == []
        sub = c.subscribe("receipts", from_offset=2, follow=False)
        next(sub)
        next(sub)
        assert sub.offset == 3


def test_subscribe_follow_sees_new_records_and_close_ends_it(ingress):
    addr, fake = ingress
    fill(fake, 2)
    got = []
    with Client(addr) as c:
        sub = c.subscribe("receipts", earliest=True)

        def consume():
            for rec in sub:
                got.append((rec.offset, rec.value.as_json()["n"]))
        t = threading.Thread(target=consume)
        t.start()
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        fake.append("receipts", tv("statemesh/json", b'{"n":99}'))
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        sub.close()
        t.join(5)
        assert not t.is_alive()
    assert got == [(1, 0), (2, 1), (3, 99)]


def test_subscribe_errors(ingress):
    addr, fake = ingress
    fake.first["receipts"] = 50
    fill(fake, 1)
    with Client(addr) as c:
        with pytest.raises(NotFound) as e:
            list(c.subscribe("nope", follow=False))
        assert "nope" in e.value.details
        with pytest.raises(OffsetTrimmed) as e:
            list(c.subscribe("receipts", from_offset=3, follow=False))
        assert isinstance(e.value, LookupError) and "oldest is 50" in e.value.details
        assert [r.offset for r in c.subscribe("receipts", from_offset=50, follow=False)] == [50]
        for kw, err in ((dict(egress="bad name"), ValueError), (dict(egress=b"x"), TypeError),
                        (dict(egress="r", from_offset=0), ValueError),
                        (dict(egress="r", from_offset=True), ValueError),
                        (dict(egress="r", from_offset=1, earliest=True), ValueError),
                        (dict(egress="r", earliest=True, latest=True), ValueError)):
            with pytest.raises(err):
                c.subscribe(**kw)


def test_async_subscribe(ingress):
    addr, fake = ingress
    fill(fake, 5)

    async def main():
        async with AsyncClient(addr) as c:
            replay = [r.offset async for r in c.subscribe("receipts", follow=False)]
            sub = c.subscribe("receipts", from_offset=5)
            first = await sub.__anext__()
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, fake.append, "receipts", tv("statemesh/string", b"late"))
            second = await asyncio.wait_for(sub.__anext__(), 5)
            sub.close()
            rest = [r async for r in sub]
            with pytest.raises(NotFound):
                async for _ in c.subscribe("nope"):
                    pass
            return replay, first, second, rest
    replay, first, second, rest = asyncio.run(main())
    assert replay == [1, 2, 3, 4, 5]
    assert first.offset == 5 and second.offset == 6 and second.value.as_string() == "late"
    assert rest == []
