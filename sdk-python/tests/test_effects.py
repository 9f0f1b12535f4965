"""Delayed messages, cancellations, egress records and state TTL: what the
hand-written encoder writes, checked against the generated protobuf classes
(message equality, and byte equality where the layout is canonical), the
validation of every argument, and that a failing handler discards them."""

import asyncio
import datetime
import struct

import pytest

from conftest import (batch, by_id, from_function, function_pb2, i64, int_tv, mutations,
                      str_tv, to_function, tv, types_pb2)
from statemesh import (IntType, JsonType, RequestHandler, StatefulFunctions, StringType,
                       TypedValue, ValueSpec, simple_type)
from statemesh.function import MAX_DELAY, MAX_TTL

Point = simple_type("geo/point", lambda p: struct.pack("<ii", *p),
                    lambda b: struct.unpack("<ii", b))


def run(functions, *batches, mode="sync"):
    h = RequestHandler(functions)
    data = to_function(*batches)
    if mode == "sync":
        return h.handle_sync(data)
    return asyncio.run(h.handle_async(data))


def one_result(functions, mode="sync", state=None, invocations=None):
    out = run(functions, batch(1, "t/f", "me", state or {},
                               invocations or [str_tv("m")]), mode=mode)
    r = from_function(out).responses[0]
    assert r.WhichOneof("outcome") == "result", r
    return r.result


def addr(t, i):
    return types_pb2.Address(type=t, id=i)


def bind(handler, specs=(), asynchronous=False):
    functions = StatefulFunctions()
    if asynchronous:
        async def f(ctx, message):
            await asyncio.sleep(0)          # really suspends: runs as a task
            handler(ctx, message)
        functions.register("t/f", f, specs)
    else:
        functions.register("t/f", handler, specs)
    return functions


# ---- encoding ---------------------------------------------------------------

@pytest.mark.parametrize("asynchronous", [False, True])
def test_delayed_messages_encode_like_protobuf(asynchronous):
    def h(ctx, m):
        ctx.send_after(datetime.timedelta(seconds=1, milliseconds=500), "t/g", "a", 7)
        ctx.send_after(2, "t/g", "b", "two", "tok-2")
        ctx.send_after(0.25, "t/h", "c", {"k": [1]}, cancellation_token="ü" * 3)
        ctx.send_after(0, "t/g", "now", b"\x00\x01")                      # delay 0
        ctx.send_after(3, "t/g", "p", (1, 2), type=Point)
        ctx.send_after(4, "t/g", "raw", TypedValue("my/raw", b"R"))
        ctx.send_after(5, "t/g", "empty", "")

    res = one_result(bind(h, asynchronous=asynchronous), mode="async" if asynchronous else "sync")
    DM = function_pb2.DelayedMessage
    want = [
        DM(target=addr("t/g", "a"), argument=int_tv(7), delay_ms=1500),
        DM(target=addr("t/g", "b"), argument=str_tv("two"), delay_ms=2000,
           cancellation_token="tok-2"),
        DM(target=addr("t/h", "c"), argument=tv("statemesh/json", b'{"k":[1]}'), delay_ms=250,
           cancellation_token="üüü"),
        DM(target=addr("t/g", "now"), argument=tv("statemesh/bytes", b"\x00\x01")),
        DM(target=addr("t/g", "p"), argument=tv("geo/point", struct.pack("<ii", 1, 2)),
           delay_ms=3000),
        DM(target=addr("t/g", "raw"), argument=tv("my/raw", b"R"), delay_ms=4000),
        DM(target=addr("t/g", "empty"), argument=tv("statemesh/string", b""), delay_ms=5000),
    ]
    assert list(res.delayed_messages) == want
    assert not res.outgoing_messages and not res.cancellations and not res.egress_records
    # Only delayed messages: the layout is canonical, so the bytes are protobuf's own.
    assert res.SerializeToString() == function_pb2.Result(
        delayed_messages=want).SerializeToString()


def test_whole_answer_bytes_equal_protobuf_for_each_new_field():
    """Byte-for-byte: a batch answer with only cancellations, only egress
    records, or only delayed messages is what the generated classes write."""
    cases = [
        (lambda ctx, m: (ctx.cancel_delayed("a"), ctx.cancel_delayed("b" * 256)),
         function_pb2.Result(cancellations=[function_pb2.Cancellation(token="a"),
                                            function_pb2.Cancellation(token="b" * 256)])),
        (lambda ctx, m: (ctx.send_egress("receipts", {"n": 1}),
                         ctx.send_egress("x.y-z_9", "s" * 300)),
         function_pb2.Result(egress_records=[
             function_pb2.EgressRecord(egress="receipts", value=tv("statemesh/json", b'{"n":1}')),
             function_pb2.EgressRecord(egress="x.y-z_9", value=str_tv("s" * 300))])),
        (lambda ctx, m: ctx.send_after(MAX_DELAY, "t/g", "i" * 1024, b"v" * 5000, "t" * 256),
         function_pb2.Result(delayed_messages=[function_pb2.DelayedMessage(
             target=addr("t/g", "i" * 1024), argument=tv("statemesh/bytes", b"v" * 5000),
             delay_ms=365 * 86400 * 1000, cancellation_token="t" * 256)])),
    ]
    for handler, result in cases:
        out = run(bind(handler), batch(300, "t/f", "me", {}, [str_tv("m")]))
        want = function_pb2.FromFunction(responses=[
            function_pb2.BatchResponse(batch_id=300, result=result)]).SerializeToString()
        assert out == want


def test_all_effects_interleaved_parse_in_call_order():
    """Every kind of effect from several invocations of one batch: protobuf
    sees each repeated field in the order the handler produced it."""
    def h(ctx, m):
        k = m.as_int()
        ctx.send("t/g", "s%d" % k, k)
        ctx.send_egress("log", "e%d" % k)
        ctx.send_after(k, "t/g", "d%d" % k, k, "tok%d" % k)
        ctx.reply(k * 10)
        ctx.cancel_delayed("old%d" % k)
        ctx.storage.n = (ctx.storage.n or 0) + k
        ctx.send_egress("log2", k)

    res = one_result(bind(h, specs=[ValueSpec("n", IntType)]), state={"n": None},
                     invocations=[int_tv(1), int_tv(2), int_tv(3)])
    assert [(o.target.id, o.invocation_index) for o in res.outgoing_messages] == [
        ("s1", 0), ("s2", 1), ("s3", 2)]
    assert [(e.egress, e.value) for e in res.egress_records] == [
        ("log", str_tv("e1")), ("log2", int_tv(1)), ("log", str_tv("e2")), ("log2", int_tv(2)),
        ("log", str_tv("e3")), ("log2", int_tv(3))]
    assert [(d.target.id, d.delay_ms, d.cancellation_token) for d in res.delayed_messages] == [
        ("d1", 1000, "tok1"), ("d2", 2000, "tok2"), ("d3", 3000, "tok3")]
    assert [c.token for c in res.cancellations] == ["old1", "old2", "old3"]
    assert [(r.invocation_index, r.value) for r in res.replies] == [
        (0, int_tv(10)), (1, int_tv(20)), (2, int_tv(30))]
    assert mutations(res) == {"n": int_tv(6)}


@pytest.mark.parametrize("delay,ms", [
    (0, 0), (1, 1000), (0.3, 300), (0.0001, 1), (0.0015, 2), (1e-9, 1), (2.5, 2500),
    (datetime.timedelta(0), 0), (datetime.timedelta(microseconds=1), 1),
    (datetime.timedelta(microseconds=1000), 1), (datetime.timedelta(microseconds=1001), 2),
    (datetime.timedelta(days=365), 365 * 86400 * 1000), (365 * 86400, 365 * 86400 * 1000),
    (float(365 * 86400), 365 * 86400 * 1000),
])
def test_delay_conversion_rounds_up_to_ms(delay, ms):
    def h(ctx, m):
        ctx.send_after(delay, "t/g", "x", 1)
    assert one_result(bind(h)).delayed_messages[0].delay_ms == ms


# ---- cancellation bookkeeping within a batch ---------------------------------

def test_cancel_in_same_batch_drops_the_delayed_message():
    def h(ctx, m):
        k = m.as_int()
        if k == 0:
            ctx.send_after(10, "t/g", "x", "first", "T")
            ctx.send_after(10, "t/g", "x", "other", "U")
        elif k == 1:
            ctx.cancel_delayed("T")                          # cancels the one above
        else:
            ctx.send_after(20, "t/g", "x", "second", "T")    # reusable once cancelled
    res = one_result(bind(h), invocations=[int_tv(0), int_tv(1), int_tv(2)])
    assert [(d.argument, d.cancellation_token) for d in res.delayed_messages] == [
        (str_tv("other"), "U"), (str_tv("second"), "T")]
    # The cancellation still goes out: a message with that token may be
    # pending from an earlier batch (the runtime applies cancellations first).
    assert [c.token for c in res.cancellations] == ["T"]


def test_cancel_then_send_after_same_token_reschedules():
    def h(ctx, m):
        ctx.cancel_delayed("reminder")
        ctx.send_after(5, "t/f", ctx.address.id, "remind", cancellation_token="reminder")
    res = one_result(bind(h))
    assert [c.token for c in res.cancellations] == ["reminder"]
    assert [(d.target.type, d.target.id, d.cancellation_token) for d in res.delayed_messages] \
        == [("t/f", "me", "reminder")]


def test_token_reused_in_one_batch_without_cancel_is_an_error():
    errors = []

    def h(ctx, m):
        ctx.send_after(1, "t/g", "x", 1, "dup")
        try:
            ctx.send_after(2, "t/g", "y", 2, "dup")
        except ValueError as e:
            errors.append(str(e))
    res = one_result(bind(h))
    assert len(errors) == 1 and "'dup'" in errors[0] and "cancel_delayed" in errors[0]
    assert [d.target.id for d in res.delayed_messages] == ["x"]


def test_tokens_do_not_leak_between_batches():
    def h(ctx, m):
        ctx.send_after(1, "t/g", "x", 1, "same")
    out = from_function(run(bind(h), batch(1, "t/f", "a", {}, [str_tv("m")]),
                            batch(2, "t/f", "b", {}, [str_tv("m")])))
    rs = by_id(out)
    assert [d.cancellation_token for d in rs[1].result.delayed_messages] == ["same"]
    assert [d.cancellation_token for d in rs[2].result.delayed_messages] == ["same"]


# ---- validation ---------------------------------------------------------------

BAD_CALLS = [
    # delay
    (lambda c: c.send_after(-1, "t/g", "x", 1), ValueError, "negative"),
    (lambda c: c.send_after(-0.001, "t/g", "x", 1), ValueError, "negative"),
    (lambda c: c.send_after(datetime.timedelta(seconds=-1), "t/g", "x", 1), ValueError,
     "negative"),
    (lambda c: c.send_after(365 * 86400 + 0.001, "t/g", "x", 1), ValueError, "at most 365 days"),
    (lambda c: c.send_after(MAX_DELAY + datetime.timedelta(microseconds=1), "t/g", "x", 1),
     ValueError, "at most 365 days"),
    (lambda c: c.send_after(10 ** 30, "t/g", "x", 1), ValueError, "at most"),
    (lambda c: c.send_after(float("nan"), "t/g", "x", 1), ValueError, "finite"),
    (lambda c: c.send_after(float("inf"), "t/g", "x", 1), ValueError, "finite"),
    (lambda c: c.send_after("5", "t/g", "x", 1), TypeError, "timedelta"),
    (lambda c: c.send_after(None, "t/g", "x", 1), TypeError, "timedelta"),
    (lambda c: c.send_after(True, "t/g", "x", 1), TypeError, "timedelta"),
    # target and value
    (lambda c: c.send_after(1, "nonamespace", "x", 1), ValueError, "namespace/name"),
    (lambda c: c.send_after(1, "t/g", "", 1), ValueError, "1..1024"),
    (lambda c: c.send_after(1, "t/g", "i" * 1025, 1), ValueError, "1..1024"),
    (lambda c: c.send_after(1, "t/g", 5, 1), TypeError, "str"),
    (lambda c: c.send_after(1, "t/g", "x", None), TypeError, "infer"),
    (lambda c: c.send_after(1, "t/g", "x", "s", type=IntType), TypeError, "int64"),
    # tokens
    (lambda c: c.send_after(1, "t/g", "x", 1, ""), ValueError, "1..256"),
    (lambda c: c.send_after(1, "t/g", "x", 1, "t" * 257), ValueError, "1..256"),
    (lambda c: c.send_after(1, "t/g", "x", 1, "é" * 129), ValueError, "1..256"),
    (lambda c: c.send_after(1, "t/g", "x", 1, b"tok"), TypeError, "str"),
    (lambda c: c.send_after(1, "t/g", "x", 1, "a\x00b"), ValueError, "NUL"),
    (lambda c: c.cancel_delayed(""), ValueError, "1..256"),
    (lambda c: c.cancel_delayed("t" * 257), ValueError, "1..256"),
    (lambda c: c.cancel_delayed(None), TypeError, "str"),
    (lambda c: c.cancel_delayed(7), TypeError, "str"),
    # egress
    (lambda c: c.send_egress("", 1), ValueError, "[A-Za-z0-9_.-]{1,128}"),
    (lambda c: c.send_egress("a" * 129, 1), ValueError, "{1,128}"),
    (lambda c: c.send_egress("has space", 1), ValueError, "{1,128}"),
    (lambda c: c.send_egress("a/b", 1), ValueError, "{1,128}"),
    (lambda c: c.send_egress("receipts\n", 1), ValueError, "{1,128}"),
    (lambda c: c.send_egress(b"receipts", 1), TypeError, "str"),
    (lambda c: c.send_egress("receipts", None), TypeError, "infer"),
    (lambda c: c.send_egress("receipts", object()), TypeError, "infer"),
    (lambda c: c.send_egress("receipts", "x", type=IntType), TypeError, "int64"),
    (lambda c: c.send_egress("receipts", {1, 2}), TypeError, None),
]


@pytest.mark.parametrize("call,err,text", BAD_CALLS)
def test_bad_arguments_raise_clear_errors_and_emit_nothing(call, err, text):
    raised = []

    def h(ctx, m):
        try:
            call(ctx)
        except Exception as e:
            raised.append(e)
    res = one_result(bind(h))
    assert len(raised) == 1 and type(raised[0]) is err, raised
    if text:
        assert text in str(raised[0]), str(raised[0])
    assert not res.delayed_messages and not res.cancellations and not res.egress_records


def test_boundaries_are_accepted():
    def h(ctx, m):
        ctx.send_after(MAX_DELAY, "t/g", "x", 1, "t" * 256)
        ctx.send_after(0, "t/g", "x", 1, "é" * 128)          # 256 bytes
        ctx.cancel_delayed("t" * 256)
        ctx.send_egress("e" * 128, 1)
    res = one_result(bind(h))
    assert len(res.delayed_messages) == 1 and res.delayed_messages[0].cancellation_token == \
        "é" * 128
    assert len(res.cancellations) == 1 and len(res.egress_records) == 1


# ---- failures discard every effect -------------------------------------------

@pytest.mark.parametrize("asynchronous", [False, True])
def test_exception_discards_new_effects_of_the_whole_batch(asynchronous):
    def h(ctx, m):
        k = m.as_int()
        ctx.storage.n = k
        ctx.send_after(1, "t/g", "x", k, "tok%d" % k)
        ctx.cancel_delayed("old")
        ctx.send_egress("receipts", {"k": k})
        ctx.send("t/g", "x", k)
        ctx.reply(k)
        if k == 2:
            raise RuntimeError("boom at 2")

    functions = bind(h, specs=[ValueSpec("n", IntType)], asynchronous=asynchronous)
    out = run(functions, batch(5, "t/f", "me", {"n": None}, [int_tv(1), int_tv(2)]),
              batch(6, "t/f", "you", {"n": None}, [int_tv(3)]),
              mode="async" if asynchronous else "sync")
    rs = by_id(from_function(out))
    assert rs[5].WhichOneof("outcome") == "failure"
    assert rs[5].failure.message.startswith("RuntimeError: boom at 2 (in t/f id=me, message 1")
    # The other batch is unaffected.
    r6 = rs[6].result
    assert [d.cancellation_token for d in r6.delayed_messages] == ["tok3"]
    assert [c.token for c in r6.cancellations] == ["old"]
    assert [e.value for e in r6.egress_records] == [tv("statemesh/json", b'{"k":3}')]
    assert mutations(r6) == {"n": int_tv(3)}


def test_effects_of_a_failed_batch_are_not_reused_by_the_retry():
    """The runtime re-sends a failed batch; the retry answers from scratch."""
    attempts = []

    def h(ctx, m):
        attempts.append(1)
        ctx.send_after(1, "t/g", "x", len(attempts), "only")
        ctx.send_egress("e", len(attempts))
        if len(attempts) == 1:
            raise ValueError("first attempt fails")

    functions = bind(h)
    h1 = RequestHandler(functions)
    data = to_function(batch(1, "t/f", "me", {}, [str_tv("m")]))
    assert from_function(h1.handle_sync(data)).responses[0].WhichOneof("outcome") == "failure"
    res = from_function(h1.handle_sync(data)).responses[0].result
    assert [(d.argument, d.cancellation_token) for d in res.delayed_messages] == [
        (int_tv(2), "only")]
    assert [e.value for e in res.egress_records] == [int_tv(2)]


# ---- state TTL -----------------------------------------------------------------

def test_value_spec_ttl_forms():
    s = ValueSpec("a", IntType, expire_after_write=2.5)
    assert s.expire_after_write == datetime.timedelta(seconds=2.5) and s.expire_after_invoke is None
    s = ValueSpec("b", JsonType, expire_after_invoke=datetime.timedelta(minutes=3))
    assert s.expire_after_invoke == datetime.timedelta(minutes=3) and s.expire_after_write is None
    assert ValueSpec("c", IntType, expire_after_write=0.0001).expire_after_write == \
        datetime.timedelta(milliseconds=1)                  # rounded up to 1 ms
    s = ValueSpec("d", IntType)
    assert s.expire_after_write is None and s.expire_after_invoke is None
    assert "expire_after_write" in repr(ValueSpec("e", IntType, expire_after_write=1))


@pytest.mark.parametrize("kwargs,err,text", [
    (dict(expire_after_write=1, expire_after_invoke=1), ValueError, "not both"),
    (dict(expire_after_write=0), ValueError, "positive"),
    (dict(expire_after_invoke=datetime.timedelta(0)), ValueError, "positive"),
    (dict(expire_after_write=-5), ValueError, "negative"),
    (dict(expire_after_invoke=float("nan")), ValueError, "finite"),
    (dict(expire_after_write=MAX_TTL + datetime.timedelta(days=1)), ValueError, "at most"),
    (dict(expire_after_write="10s"), TypeError, "timedelta"),
    (dict(expire_after_invoke=True), TypeError, "timedelta"),
])
def test_value_spec_ttl_validation(kwargs, err, text):
    with pytest.raises(err) as e:
        ValueSpec("cart", JsonType, **kwargs)
    assert text in str(e.value) and "'cart'" in str(e.value)


def ttl_functions():
    functions = StatefulFunctions()
    functions.register("a/b", lambda c, m: None, specs=[
        ValueSpec("w", IntType, expire_after_write=datetime.timedelta(seconds=90)),
        ValueSpec("i", JsonType, expire_after_invoke=2),
        ValueSpec("plain", StringType)])
    return functions


def test_describe_reports_ttl():
    d = RequestHandler(ttl_functions()).describe()
    specs = [(s.name, s.typename, s.expire_after_write_ms, s.expire_after_invoke_ms)
             for s in d.functions[0].states]
    assert specs == [("w", "statemesh/int64", 90000, 0), ("i", "statemesh/json", 0, 2000),
                     ("plain", "statemesh/string", 0, 0)]


def test_incomplete_reports_ttl_like_protobuf():
    out = run(ttl_functions(), batch(9, "a/b", "x", {"plain": None}, [str_tv("m")]))
    want = function_pb2.FromFunction(responses=[function_pb2.BatchResponse(
        batch_id=9, incomplete=function_pb2.Incomplete(missing_states=[
            types_pb2.StateSpec(name="w", typename="statemesh/int64",
                                expire_after_write_ms=90000),
            types_pb2.StateSpec(name="i", typename="statemesh/json",
                                expire_after_invoke_ms=2000)]))]).SerializeToString()
    assert out == want


def test_ttl_state_reads_and_writes_like_any_state():
    """TTL is the runtime's business: a value it sends reads normally, an
    absent (or expired, hence not sent) one reads None."""
    seen = []

    def h(ctx, m):
        seen.append(ctx.storage.w)
        ctx.storage.w = 5
    functions = StatefulFunctions()
    functions.register("t/f", h, specs=[ValueSpec("w", IntType, expire_after_write=1)])
    res = one_result(functions, state={"w": int_tv(4)})
    assert mutations(res) == {"w": int_tv(5)}
    one_result(functions, state={"w": None})
    assert seen == [4, None]
    assert i64(5) == mutations(res)["w"].value
