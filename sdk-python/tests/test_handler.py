"""The batch machinery (RequestHandler) without network or runtime."""

import asyncio
import struct

import pytest

from conftest import (batch, by_id, from_function, function_pb2, i64, int_tv, mutations,
                      str_tv, to_function, tv)
from statemesh import (BoolType, FloatType, IntType, JsonType, RequestHandler, StateError,
                       StatefulFunctions, StringType, TypedValue, ValueSpec, simple_type)
from statemesh import _wire

DELETE = function_pb2.StateMutation.DELETE


def run(functions, *batches, mode="sync"):
    h = RequestHandler(functions)
    data = to_function(*batches)
    if mode == "sync":
        out = h.handle_sync(data)
    else:
        out = asyncio.run(h.handle_async(data))
    return from_function(out)


def counter_functions(asynchronous=False):
    functions = StatefulFunctions()
    if asynchronous:
        @functions.bind("test/counter", specs=[ValueSpec("n", IntType)])
        async def counter(ctx, message):
            ctx.storage.n = (ctx.storage.n or 0) + message.as_int()
            ctx.reply(ctx.storage.n)
    else:
        @functions.bind("test/counter", specs=[ValueSpec("n", IntType)])
        def counter(ctx, message):
            ctx.storage.n = (ctx.storage.n or 0) + message.as_int()
            ctx.reply(ctx.storage.n)
    return functions


@pytest.mark.parametrize("asynchronous", [False, True])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_counter_accumulates_within_batch(asynchronous, mode):
    resp = run(counter_functions(asynchronous),
               batch(7, "test/counter", "a", {"n": int_tv(10)}, [int_tv(1), int_tv(2), int_tv(3)]),
               mode=mode)
    assert len(resp.responses) == 1
    r = resp.responses[0]
    assert r.batch_id == 7 and r.WhichOneof("outcome") == "result"
    # Only the final value is returned, once.
    assert len(r.result.state_mutations) == 1
    m = r.result.state_mutations[0]
    assert m.kind == function_pb2.StateMutation.MODIFY and m.name == "n"
    assert m.value == int_tv(16)
    # Replies carry the index of their invocation: 11, 13, 16.
    assert [(p.invocation_index, struct.unpack("<q", p.value.value)[0])
            for p in r.result.replies] == [(0, 11), (1, 13), (2, 16)]
    assert all(p.value.typename == "statemesh/int64" for p in r.result.replies)


def test_absent_state_reads_none_and_batch_id_zero():
    seen = []
    functions = StatefulFunctions()

    @functions.bind("t/f", specs=[ValueSpec("a", StringType), ValueSpec("b", JsonType)])
    def f(ctx, message):
        seen.append((ctx.storage.a, ctx.storage.b, "a" in ctx.storage))

    resp = run(functions, batch(0, "t/f", "x", {"a": None, "b": None}, [str_tv("m")]))
    r = resp.responses[0]
    assert r.batch_id == 0 and r.WhichOneof("outcome") == "result"
    assert list(r.result.state_mutations) == []
    assert seen == [(None, None, False)]


def test_storage_assign_delete_and_item_access():
    functions = StatefulFunctions()

    @functions.bind("t/f", specs=[ValueSpec("keep", IntType), ValueSpec("gone", StringType),
                                  ValueSpec("doc", JsonType), ValueSpec("none", BoolType)])
    def f(ctx, message):
        assert ctx.storage.keep == 5
        assert ctx.storage["gone"] == "bye"
        del ctx.storage.gone
        assert ctx.storage.gone is None
        ctx.storage["doc"] = {"k": [1, 2]}
        ctx.storage.none = None          # assigning None deletes (absent stays absent)

    resp = run(functions, batch(1, "t/f", "x",
                                {"keep": int_tv(5), "gone": str_tv("bye"), "doc": None,
                                 "none": None}, [str_tv("go")]))
    muts = mutations(resp.responses[0].result)
    assert muts == {"gone": None, "doc": tv("statemesh/json", b'{"k":[1,2]}'), "none": None}
    assert "keep" not in muts


def test_write_then_delete_then_write_last_wins():
    functions = StatefulFunctions()

    @functions.bind("t/f", specs=[ValueSpec("v", IntType)])
    def f(ctx, message):
        ctx.storage.v = 1
        del ctx.storage.v
        if message.as_int():
            ctx.storage.v = 3

    resp = run(functions,
               batch(1, "t/f", "x", {"v": int_tv(9)}, [int_tv(0)]),
               batch(2, "t/f", "y", {"v": int_tv(9)}, [int_tv(0), int_tv(1)]))
    rs = by_id(resp)
    assert mutations(rs[1].result) == {"v": None}
    assert mutations(rs[2].result) == {"v": int_tv(3)}
    assert len(rs[2].result.state_mutations) == 1


def test_undeclared_state_is_a_clear_error():
    functions = StatefulFunctions()
    errors = []

    @functions.bind("t/f", specs=[ValueSpec("seen", IntType)])
    def f(ctx, message):
        try:
            ctx.storage.unknown
        except StateError as e:
            errors.append(str(e))
        try:
            ctx.storage.unknown = 1
        except AttributeError as e:   # StateError is an AttributeError
            errors.append(str(e))
        ctx.storage.unknown2 = 1       # uncaught: the batch fails

    resp = run(functions, batch(3, "t/f", "x", {"seen": None}, [str_tv("m")]))
    assert len(errors) == 2
    assert "t/f has no state 'unknown'" in errors[0] and "declared: seen" in errors[0]
    r = resp.responses[0]
    assert r.WhichOneof("outcome") == "failure"
    assert "unknown2" in r.failure.message and "StateError" in r.failure.message


@pytest.mark.parametrize("spec_type,bad", [
    (IntType, "12"), (IntType, 1.5), (IntType, True), (IntType, 1 << 63),
    (StringType, 3), (StringType, b"x"), (BoolType, 1), (FloatType, "1.0"),
    (JsonType, {1, 2}), (JsonType, float("nan")),
])
def test_assigning_wrong_kind_raises(spec_type, bad):
    functions = StatefulFunctions()
    caught = []

    @functions.bind("t/f", specs=[ValueSpec("v", spec_type)])
    def f(ctx, message):
        try:
            ctx.storage.v = bad
        except (TypeError, ValueError) as e:
            caught.append(e)
            raise

    resp = run(functions, batch(1, "t/f", "x", {"v": None}, [str_tv("m")]))
    assert len(caught) == 1 and isinstance(caught[0], TypeError)
    assert "state 'v' is %s" % spec_type.typename in str(caught[0])
    assert resp.responses[0].WhichOneof("outcome") == "failure"


def test_float_state_accepts_int():
    functions = StatefulFunctions()

    @functions.bind("t/f", specs=[ValueSpec("v", FloatType)])
    def f(ctx, message):
        ctx.storage.v = 2

    resp = run(functions, batch(1, "t/f", "x", {"v": None}, [str_tv("m")]))
    assert mutations(resp.responses[0].result)["v"] == tv("statemesh/float64",
                                                          struct.pack("<d", 2.0))


def test_missing_state_slot_answers_incomplete():
    functions = StatefulFunctions()
    called = []

    @functions.bind("t/f", specs=[ValueSpec("a", IntType), ValueSpec("b", StringType),
                                  ValueSpec("c", JsonType)])
    def f(ctx, message):
        called.append(1)

    resp = run(functions, batch(4, "t/f", "x", {"b": None}, [str_tv("m")]))
    r = resp.responses[0]
    assert r.batch_id == 4 and r.WhichOneof("outcome") == "incomplete"
    assert [(s.name, s.typename) for s in r.incomplete.missing_states] == [
        ("a", "statemesh/int64"), ("c", "statemesh/json")]
    assert called == []


def test_undeclared_state_sent_by_runtime_is_ignored():
    functions = StatefulFunctions()

    @functions.bind("t/f", specs=[ValueSpec("a", IntType)])
    def f(ctx, message):
        ctx.storage.a = 1

    resp = run(functions, batch(4, "t/f", "x", {"a": None, "zzz": int_tv(1)}, [str_tv("m")]))
    assert mutations(resp.responses[0].result) == {"a": int_tv(1)}


@pytest.mark.parametrize("asynchronous", [False, True])
def test_exception_fails_the_batch_and_discards_everything(asynchronous):
    functions = StatefulFunctions()

    def body(ctx, message):
        ctx.storage.n = (ctx.storage.n or 0) + 1
        ctx.send("t/other", "y", "hello")
        ctx.reply("ok")
        if message.as_int() == 2:
            raise ZeroDivisionError("boom at two")

    if asynchronous:
        @functions.bind("t/f", specs=[ValueSpec("n", IntType)])
        async def f(ctx, message):
            await asyncio.sleep(0)
            body(ctx, message)
    else:
        functions.register("t/f", body, specs=[ValueSpec("n", IntType)])

    resp = run(functions,
               batch(1, "t/f", "x", {"n": None}, [int_tv(1), int_tv(2), int_tv(3)]),
               batch(2, "t/f", "y", {"n": None}, [int_tv(1)]), mode="async")
    rs = by_id(resp)
    assert rs[1].WhichOneof("outcome") == "failure"
    msg = rs[1].failure.message
    assert "ZeroDivisionError: boom at two" in msg
    assert msg.startswith("ZeroDivisionError: boom at two (in t/f id=x, message 1 of the batch)")
    assert "Traceback" in msg and 'raise ZeroDivisionError("boom at two")' in msg
    # The other batch of the same message is unaffected.
    assert rs[2].WhichOneof("outcome") == "result"
    assert mutations(rs[2].result) == {"n": int_tv(1)}
    assert len(rs[2].result.outgoing_messages) == 1 and len(rs[2].result.replies) == 1


def test_unbound_type_is_a_failure():
    resp = run(counter_functions(), batch(9, "t/nope", "x", {}, [int_tv(1)]))
    r = resp.responses[0]
    assert r.batch_id == 9 and r.WhichOneof("outcome") == "failure"
    assert "t/nope is not bound" in r.failure.message and "test/counter" in r.failure.message


def test_several_batches_coalesce_into_one_message():
    functions = counter_functions()
    batches = [batch(100 + i, "test/counter", str(i), {"n": int_tv(i)}, [int_tv(1)])
               for i in range(250)]
    h = RequestHandler(functions)
    out = h.handle_sync(to_function(*batches))
    resp = from_function(out)
    rs = by_id(resp)
    assert sorted(rs) == list(range(100, 350))
    for i in range(250):
        assert mutations(rs[100 + i].result) == {"n": int_tv(i + 1)}
    # process() gives one fragment per batch; fragments concatenate into one message.
    answers, pending = h.process(to_function(*batches))
    assert pending is None and len(answers) == 250
    assert from_function(b"".join(answers)) == resp


def test_context_address_caller_and_invocation_index():
    functions = StatefulFunctions()
    seen = []

    @functions.bind("t/f")
    def f(ctx, message):
        seen.append((ctx.address, ctx.address.type, ctx.address.id, ctx.caller,
                     ctx.invocation_index, message.as_string()))
        ctx.send("t/g", "target-%d" % ctx.invocation_index, message.as_string())
        ctx.send("t/h", "z", 7, type=FloatType)
        if ctx.caller is not None:
            ctx.reply({"from": ctx.caller.id})

    resp = run(functions, batch(5, "t/f", "idé", {}, [
        str_tv("first"), (("t/caller", "c1"), str_tv("second")), str_tv("third")]))
    a = seen[0][0]
    assert (a.type, a.id) == ("t/f", "idé") and str(a) == "t/f/idé"
    assert [s[3] for s in seen] == [None, ("t/caller", "c1"), None]
    assert [s[4] for s in seen] == [0, 1, 2]
    res = resp.responses[0].result
    outs = [(o.invocation_index, o.target.type, o.target.id, o.argument.typename, o.argument.value)
            for o in res.outgoing_messages]
    assert outs == [
        (0, "t/g", "target-0", "statemesh/string", b"first"),
        (0, "t/h", "z", "statemesh/float64", struct.pack("<d", 7.0)),
        (1, "t/g", "target-1", "statemesh/string", b"second"),
        (1, "t/h", "z", "statemesh/float64", struct.pack("<d", 7.0)),
        (2, "t/g", "target-2", "statemesh/string", b"third"),
        (2, "t/h", "z", "statemesh/float64", struct.pack("<d", 7.0)),
    ]
    assert [(r.invocation_index, r.value.typename, r.value.value) for r in res.replies] == [
        (1, "statemesh/json", b'{"from":"c1"}')]


def test_send_value_type_inference():
    functions = StatefulFunctions()
    Point = simple_type("geo/point", lambda p: struct.pack("<ii", *p),
                        lambda b: struct.unpack("<ii", b))

    @functions.bind("t/f")
    def f(ctx, message):
        for v in (True, 42, 1.5, "s", b"\x00\x01", bytearray(b"ba"), {"a": 1}, [1, "x"]):
            ctx.send("t/g", "1", v)
        ctx.send("t/g", "1", (3, 4), type=Point)
        ctx.send("t/g", "1", TypedValue("my/raw", b"RAW"))
        ctx.send("t/g", "1", "", type=StringType)     # empty value

    res = run(functions, batch(1, "t/f", "x", {}, [str_tv("m")])).responses[0].result
    got = [(o.argument.typename, o.argument.value) for o in res.outgoing_messages]
    assert got == [
        ("statemesh/bool", b"\x01"), ("statemesh/int64", i64(42)),
        ("statemesh/float64", struct.pack("<d", 1.5)), ("statemesh/string", b"s"),
        ("statemesh/bytes", b"\x00\x01"), ("statemesh/bytes", b"ba"),
        ("statemesh/json", b'{"a":1}'), ("statemesh/json", b'[1,"x"]'),
        ("geo/point", struct.pack("<ii", 3, 4)), ("my/raw", b"RAW"),
        ("statemesh/string", b""),
    ]


@pytest.mark.parametrize("call,err", [
    (lambda ctx: ctx.send("bad type", "1", 1), ValueError),
    (lambda ctx: ctx.send("t/g", "", 1), ValueError),
    (lambda ctx: ctx.send("t/g", 5, 1), TypeError),
    (lambda ctx: ctx.send("t/g", "1", None), TypeError),
    (lambda ctx: ctx.send("t/g", "1", object()), TypeError),
    (lambda ctx: ctx.send("t/g", "1", "x", type=IntType), TypeError),
    (lambda ctx: ctx.reply(TypedValue("a/b", b""), type=IntType), TypeError),
    (lambda ctx: ctx.send_after(-1, "t/g", "1", 1), ValueError),
    (lambda ctx: ctx.send_egress("bad name", 1), ValueError),
])
def test_send_errors(call, err):
    functions = StatefulFunctions()
    raised = []

    @functions.bind("t/f")
    def f(ctx, message):
        try:
            call(ctx)
        except Exception as e:
            raised.append(e)

    run(functions, batch(1, "t/f", "x", {}, [str_tv("m")]))
    assert len(raised) == 1 and isinstance(raised[0], err)


def test_message_accessors():
    functions = StatefulFunctions()
    Point = simple_type("geo/point", lambda p: struct.pack("<ii", *p),
                        lambda b: struct.unpack("<ii", b))
    seen = []

    @functions.bind("t/f")
    def f(ctx, m):
        seen.append(m)

    run(functions, batch(1, "t/f", "x", {}, [
        tv("statemesh/bool", b"\x01"), int_tv(-5), tv("statemesh/float64", struct.pack("<d", 2.5)),
        str_tv("héllo"), tv("statemesh/bytes", b"\xff"), tv("statemesh/json", b'{"a":[1]}'),
        tv("geo/point", struct.pack("<ii", 1, 2)), tv("statemesh/int64", b"")]))
    b, i, fl, s, by, js, pt, empty = seen
    assert b.as_bool() is True and b.is_bool() and b.typename == "statemesh/bool"
    assert i.as_int() == -5 and i.is_int() and i.is_type(IntType) and not i.is_string()
    assert fl.as_float() == 2.5 and fl.is_float()
    assert s.as_string() == "héllo" and s.value == "héllo" and s.raw == "héllo".encode()
    assert by.as_bytes() == b"\xff" and by.is_bytes()
    assert js.as_json() == {"a": [1]} and js.is_json()
    assert pt.is_type(Point) and pt.as_type(Point) == (1, 2) and pt.typename == "geo/point"
    assert pt.value == TypedValue("geo/point", struct.pack("<ii", 1, 2))
    assert pt.typed_value == pt.value
    with pytest.raises(TypeError, match="message is statemesh/int64, not statemesh/string"):
        i.as_string()
    with pytest.raises(TypeError):
        s.as_int()
    with pytest.raises(TypeError):
        pt.as_json()
    with pytest.raises(ValueError):
        empty.as_int()


def test_state_stored_with_other_typename_is_a_clear_error():
    functions = StatefulFunctions()

    @functions.bind("t/f", specs=[ValueSpec("v", IntType)])
    def f(ctx, m):
        ctx.storage.v

    r = run(functions, batch(1, "t/f", "x", {"v": str_tv("x")}, [str_tv("m")])).responses[0]
    assert r.WhichOneof("outcome") == "failure"
    assert "state 'v' is stored as statemesh/string but declared statemesh/int64" in r.failure.message


def test_user_type_state():
    Point = simple_type("geo/point", lambda p: struct.pack("<ii", *p),
                        lambda b: struct.unpack("<ii", b))
    functions = StatefulFunctions()

    @functions.bind("t/f", specs=[ValueSpec("p", Point)])
    def f(ctx, m):
        x, y = ctx.storage.p
        ctx.storage.p = (x + 1, y + 1)

    r = run(functions, batch(1, "t/f", "x", {"p": tv("geo/point", struct.pack("<ii", 1, 2))},
                             [str_tv("m"), str_tv("m")])).responses[0]
    assert mutations(r.result) == {"p": tv("geo/point", struct.pack("<ii", 3, 4))}


def test_lazy_decoding_of_unread_state():
    # A state that is never read is never decoded (malformed bytes do no harm).
    functions = StatefulFunctions()

    @functions.bind("t/f", specs=[ValueSpec("big", JsonType), ValueSpec("n", IntType)])
    def f(ctx, m):
        ctx.storage.n = 1

    r = run(functions, batch(1, "t/f", "x", {"big": tv("statemesh/json", b"{not json"),
                                             "n": None}, [str_tv("m")])).responses[0]
    assert mutations(r.result) == {"n": int_tv(1)}


def test_async_handler_that_really_suspends_and_sync_mixed():
    functions = StatefulFunctions()
    order = []

    @functions.bind("t/slow", specs=[ValueSpec("n", IntType)])
    async def slow(ctx, m):
        order.append(("slow-start", ctx.invocation_index))
        await asyncio.sleep(0.01)
        ctx.storage.n = (ctx.storage.n or 0) + m.as_int()
        ctx.reply(ctx.storage.n)
        order.append(("slow-end", ctx.invocation_index))

    @functions.bind("t/fast")
    def fast(ctx, m):
        order.append(("fast", 0))
        ctx.reply("fast")

    h = RequestHandler(functions)
    data = to_function(batch(1, "t/slow", "a", {"n": int_tv(1)}, [int_tv(2), int_tv(3)]),
                       batch(2, "t/fast", "b", {}, [str_tv("x")]))

    async def main():
        answers, pending = h.process(data)
        assert len(answers) == 1 and len(pending) == 1   # fast answered at once
        assert by_id(from_function(b"".join(answers)))[2].result.replies[0].value.value == b"fast"
        rest = await asyncio.gather(*pending)
        return from_function(b"".join(rest))

    rs = by_id(asyncio.run(main()))
    assert mutations(rs[1].result) == {"n": int_tv(6)}
    assert [struct.unpack("<q", r.value.value)[0] for r in rs[1].result.replies] == [3, 6]
    assert order == [("slow-start", 0), ("fast", 0), ("slow-end", 0), ("slow-start", 1),
                     ("slow-end", 1)]
    # handle_sync drives suspending handlers on a private loop.
    rs = by_id(from_function(h.handle_sync(data)))
    assert mutations(rs[1].result) == {"n": int_tv(6)} and 2 in rs


def test_async_handler_exception_after_await():
    functions = StatefulFunctions()

    @functions.bind("t/f", specs=[ValueSpec("n", IntType)])
    async def f(ctx, m):
        ctx.storage.n = 5
        await asyncio.sleep(0.001)
        raise KeyError("late")

    r = run(functions, batch(1, "t/f", "x", {"n": None}, [str_tv("m")]), mode="async").responses[0]
    assert r.WhichOneof("outcome") == "failure" and "KeyError: 'late'" in r.failure.message


def test_sync_handler_returning_awaitable_is_rejected():
    functions = StatefulFunctions()

    async def inner(ctx, m):
        pass

    functions.register("t/f", lambda ctx, m: inner(ctx, m))
    r = run(functions, batch(1, "t/f", "x", {}, [str_tv("m")])).responses[0]
    assert r.WhichOneof("outcome") == "failure" and "async def" in r.failure.message


def test_large_values_and_large_batch_ids():
    functions = StatefulFunctions()

    @functions.bind("t/f", specs=[ValueSpec("blob", StringType)])
    def f(ctx, m):
        ctx.storage.blob = m.as_string() * 2
        ctx.reply(ctx.storage.blob)

    big = "x" * 300000
    bid = (1 << 64) - 1
    r = run(functions, batch(bid, "t/f", "i" * 1024, {"blob": None}, [str_tv(big)])).responses[0]
    assert r.batch_id == bid
    assert mutations(r.result)["blob"].value == (big * 2).encode()
    assert r.result.replies[0].value.value == (big * 2).encode()


def test_bind_validation():
    functions = StatefulFunctions()
    with pytest.raises(ValueError):
        functions.bind("noslash")(lambda c, m: None)
    with pytest.raises(ValueError):
        ValueSpec("bad name", IntType)
    with pytest.raises(TypeError):
        ValueSpec("x", int)
    with pytest.raises(ValueError):
        functions.register("a/b", lambda c, m: None, specs=[ValueSpec("x", IntType),
                                                             ValueSpec("x", IntType)])
    functions.register("a/b", lambda c, m: None)
    with pytest.raises(ValueError):
        functions.register("a/b", lambda c, m: None)
    assert "a/b" in functions and functions.types == ["a/b"]


def test_describe():
    functions = StatefulFunctions()
    functions.register("a/b", lambda c, m: None, specs=[ValueSpec("x", IntType),
                                                         ValueSpec("y", JsonType)])

    async def g(c, m):
        pass
    functions.register("a/c", g)
    d = RequestHandler(functions).describe()
    assert d.sdk.startswith("statemesh-python/")
    assert [(f.type, [(s.name, s.typename) for s in f.states]) for f in d.functions] == [
        ("a/b", [("x", "statemesh/int64"), ("y", "statemesh/json")]), ("a/c", [])]


def test_malformed_input_raises_decode_error():
    h = RequestHandler(counter_functions())
    good = to_function(batch(1, "test/counter", "a", {"n": None}, [int_tv(1)]))
    for bad in (good[:-1], good[:5], b"\x0a\xff\xff\xff\xff\x0f", b"\x0b"):
        with pytest.raises(_wire.DecodeError):
            h.process(bad)
    assert h.handle_sync(b"") == b""


def test_unknown_fields_are_skipped():
    # A newer runtime may add fields: a varint field 9 and a LEN field 20 in
    # ToFunction, BatchRequest and Invocation must be ignored.
    extra_v = b"\x48\x05"                       # field 9, varint 5
    extra_l = b"\xa2\x01\x03abc"                # field 20, LEN "abc"
    inv = b"\x12" + bytes([len(int_tv(4).SerializeToString())]) + int_tv(4).SerializeToString()
    inv += extra_v + extra_l
    sv = function_pb2.BatchRequest(state=[dict(name="n")]).SerializeToString()
    b = function_pb2.BatchRequest(batch_id=3)
    b.target.type, b.target.id = "test/counter", "a"
    body = b.SerializeToString() + sv + extra_v + b"\x22" + bytes([len(inv)]) + inv + extra_l
    data = extra_l + b"\x0a" + bytes([len(body)]) + body + extra_v
    out = RequestHandler(counter_functions()).handle_sync(data)
    r = from_function(out).responses[0]
    assert r.batch_id == 3 and mutations(r.result) == {"n": int_tv(4)}


def test_context_trace_id_and_traceparent_every_decode_path():
    """ctx.trace_id / ctx.traceparent (docs/tracing.md) on each decoder path:
    the canonical fast path (no trace), the general one (a long state value
    makes the fast path give up; short and traced invocations mixed)."""
    functions = StatefulFunctions()
    seen = []

    @functions.bind("t/tr", specs=[ValueSpec("s", StringType)])
    def f(ctx, message):
        seen.append((ctx.trace_id, ctx.traceparent))

    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    plain = batch(1, "t/tr", "a", {"s": str_tv("x")}, [str_tv("1"), str_tv("2")])
    mixed = batch(2, "t/tr", "b", {"s": str_tv("y" * 300)}, [str_tv("1"), str_tv("2")])
    mixed.invocations[1].traceparent = tp
    mixed.invocations[1].tracestate = "k=v"
    garbled = batch(3, "t/tr", "c", {"s": str_tv("z")}, [str_tv("1")])
    garbled.invocations[0].traceparent = "not a traceparent"
    for mode in ("sync", "aio"):
        seen.clear()
        resp = by_id(run(functions, plain, mixed, garbled, mode=mode))
        assert all(r.HasField("result") for r in resp.values())
        assert seen == [(None, None), (None, None), (None, None),
                        ("4bf92f3577b34da6a3ce929d0e0e4736", tp),
                        (None, "not a traceparent")]
