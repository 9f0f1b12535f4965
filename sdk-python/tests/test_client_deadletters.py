"""Client.dead_letters / replay_dead_letters / drop_dead_letters (and the
AsyncClient's) against an in-process fake of statemeshd's Admin service:
the requests they send, the decoding of the page, the local checks of
selectors (nothing reaches the server), and the mapping of errors."""

import asyncio
import datetime
import json
import struct
from concurrent import futures

import grpc
import pytest

from statemesh import (Address, AsyncClient, Client, DeadLetter, DeadLetters, Internal,
                       InvalidArgument, TypedValue, Unavailable)
from statemesh.v1 import admin_pb2, types_pb2

T0 = 1700000000123


def _dl(id_, ttype, tid, typename, value, caller=None, error="boom", attempts=3):
    d = admin_pb2.DeadLetter(id=id_, error=error, attempts=attempts, failed_at_ms=T0 + id_)
    d.target.type, d.target.id = ttype, tid
    if caller is not None:
        d.caller.type, d.caller.id = caller
    d.argument.CopyFrom(types_pb2.TypedValue(typename=typename, value=value))
    return d


class FakeAdmin:
    """Dead letters 3, 5, 8, 9 (8 of another type); records every request."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.store = {
            3: _dl(3, "t/flaky", "a", "statemesh/string", b"m0"),
            5: _dl(5, "t/flaky", "a", "statemesh/json", b'{"k": [1, 2]}',
                   caller=("t/origin", "o1"), error="handler raised: KeyError", attempts=4),
            8: _dl(8, "t/other", "b c", "statemesh/int64", struct.pack("<q", -7)),
            9: _dl(9, "t/flaky", "z", "geo/point", b"\x01\x02"),
        }
        self.requests = []

    def list(self, req, ctx):
        self.requests.append(("list", req))
        if req.type == "t/down":
            ctx.abort(grpc.StatusCode.UNAVAILABLE, "statemeshd is shutting down")
        limit = req.limit or 100
        out = [d for i, d in sorted(self.store.items())
               if i > req.after_id and (not req.type or d.target.type == req.type)][:limit]
        return admin_pb2.ListDeadLettersResponse(dead_letters=out, total=len(self.store))

    def _act(self, name, sel, ctx):
        self.requests.append((name, sel))
        if not sel.all and not sel.ids:
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "name dead letter ids, or select all")
        if sel.type == "t/broken":
            ctx.abort(grpc.StatusCode.INTERNAL, "cannot read dead letters (see the runtime log)")
        hit = [i for i, d in sorted(self.store.items())
               if (sel.all or i in sel.ids) and (not sel.type or d.target.type == sel.type)]
        for i in hit:
            del self.store[i]
        return admin_pb2.DeadLetterActionResponse(count=len(hit))

    def replay(self, sel, ctx):
        return self._act("replay", sel, ctx)

    def drop(self, sel, ctx):
        return self._act("drop", sel, ctx)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    fake = FakeAdmin()
    srv = grpc.server(futures.ThreadPoolExecutor(4))
    u = grpc.unary_unary_rpc_method_handler
    sel_in = admin_pb2.DeadLetterSelector.FromString
    act_out = admin_pb2.DeadLetterActionResponse.SerializeToString
    srv.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("statemesh.v1.Admin", {
        "ListDeadLetters": u(fake.list, admin_pb2.ListDeadLettersRequest.FromString,
                             admin_pb2.ListDeadLettersResponse.SerializeToString),
        "ReplayDeadLetters": u(fake.replay, sel_in, act_out),
        "DropDeadLetters": u(fake.drop, sel_in, act_out),
    })])
    addr = "unix:%s" % (tmp_path_factory.mktemp("admin") / "admin.sock")
    srv.add_insecure_port(addr)
    srv.start()
    yield addr, fake
    srv.stop(0)


@pytest.fixture
def admin(server):
    addr, fake = server
    fake.reset()
    with Client(addr, timeout=10) as c:
        yield c, fake


def test_list_decodes_every_field(admin):
    c, fake = admin
    page = c.dead_letters()
    assert isinstance(page, DeadLetters)
    assert page.total == 4 and len(page) == 4 and page.last_id == 9
    assert [d.id for d in page] == [3, 5, 8, 9]
    a, b, other, user = page.items
    assert isinstance(a, DeadLetter) and page[0] is a
    assert a.target == Address("t/flaky", "a") and a.caller is None
    assert a.argument.value == "m0" and a.argument.typename == "statemesh/string"
    assert (a.error, a.attempts, a.failed_at_ms) == ("boom", 3, T0 + 3)
    assert a.failed_at == datetime.datetime.fromtimestamp((T0 + 3) / 1000,
                                                          tz=datetime.timezone.utc)
    assert b.caller == Address("t/origin", "o1")
    assert b.argument.as_json() == {"k": [1, 2]}
    assert (b.error, b.attempts) == ("handler raised: KeyError", 4)
    assert other.target == Address("t/other", "b c") and other.argument.value == -7
    assert user.argument.value == TypedValue("geo/point", b"\x01\x02")
    assert user.argument.raw == b"\x01\x02"
    # the defaults went over the wire
    (kind, req), = fake.requests
    assert kind == "list" and (req.type, req.after_id, req.limit) == ("", 0, 100)
    assert "total=4" in repr(page)


def test_list_filters_and_pages(admin):
    c, fake = admin
    page = c.dead_letters(type="t/flaky", limit=2)
    assert [d.id for d in page] == [3, 5] and page.total == 4
    page = c.dead_letters(type="t/flaky", after_id=page.last_id, limit=2)
    assert [d.id for d in page] == [9]
    page = c.dead_letters(type="t/flaky", after_id=page.last_id, limit=2)
    assert list(page) == [] and page.last_id is None and not page
    assert [(r.type, r.after_id, r.limit) for _, r in fake.requests] == \
        [("t/flaky", 0, 2), ("t/flaky", 5, 2), ("t/flaky", 9, 2)]
    assert [d.id for d in c.dead_letters(after_id=5, limit=10000)] == [8, 9]


def test_replay_and_drop_send_the_selector_and_return_the_count(admin):
    c, fake = admin
    assert c.drop_dead_letters([5, 42]) == 1            # 42 is not stored
    assert c.replay_dead_letters(8) == 1                # one id as an int
    assert c.replay_dead_letters(i for i in (3, 9)) == 2
    assert c.replay_dead_letters(all=True) == 0
    fake.reset()
    assert c.replay_dead_letters(all=True, type="t/flaky") == 3
    assert c.drop_dead_letters(all=True) == 1
    sels = [(k, list(s.ids), s.all, s.type) for k, s in fake.requests]
    assert sels == [("replay", [], True, "t/flaky"), ("drop", [], True, "")]


@pytest.mark.parametrize("kw,exc,needle", [
    ({}, ValueError, "no dead letters selected"),
    ({"ids": []}, ValueError, "no dead letters selected"),
    ({"ids": [1], "all": True}, ValueError, "not both"),
    ({"ids": 3, "all": True}, ValueError, "not both"),
    ({"ids": [-1]}, ValueError, "dead letter id must be 0..18446744073709551615"),
    ({"ids": [2 ** 64]}, ValueError, "dead letter id"),
    ({"ids": ["5"]}, TypeError, "dead letter id must be an int"),
    ({"ids": "5"}, TypeError, "ids must be an iterable of ints"),
    ({"ids": [True]}, TypeError, "must be an int"),
    ({"all": True, "type": "nons"}, ValueError, "namespace/name"),
    ({"all": True, "type": "a/b/c"}, ValueError, "namespace/name"),
    ({"all": True, "type": 7}, TypeError, "type must be a function type str"),
])
def test_bad_selectors_raise_before_the_network(admin, kw, exc, needle):
    c, fake = admin
    for fn in (c.replay_dead_letters, c.drop_dead_letters):
        with pytest.raises(exc) as e:
            fn(**kw)
        assert needle in str(e.value)
    assert fake.requests == [] and len(fake.store) == 4


@pytest.mark.parametrize("kw,exc,needle", [
    ({"limit": 0}, ValueError, "limit must be 1..10000"),
    ({"limit": 10001}, ValueError, "limit must be 1..10000"),
    ({"limit": 1.5}, TypeError, "limit must be an int"),
    ({"after_id": -1}, ValueError, "after_id must be 0.."),
    ({"type": "flaky"}, ValueError, "namespace/name"),
])
def test_bad_list_arguments_raise_before_the_network(admin, kw, exc, needle):
    c, fake = admin
    with pytest.raises(exc) as e:
        c.dead_letters(**kw)
    assert needle in str(e.value)
    assert fake.requests == []


def test_runtime_errors_map_to_exceptions(admin):
    c, _ = admin
    with pytest.raises(Unavailable) as e:
        c.dead_letters(type="t/down")
    assert "shutting down" in e.value.details
    with pytest.raises(Internal) as e:
        c.drop_dead_letters(all=True, type="t/broken")
    assert "cannot read dead letters" in str(e.value)


def test_server_side_invalid_argument_is_mapped(server):
    """The runtime's own check (a selector sent by another client)."""
    addr, fake = server
    fake.reset()
    with grpc.insecure_channel(addr) as ch:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/statemesh.v1.Admin/DropDeadLetters",
                           request_serializer=admin_pb2.DeadLetterSelector.SerializeToString,
                           response_deserializer=admin_pb2.DeadLetterActionResponse.FromString)(
                admin_pb2.DeadLetterSelector(), timeout=10)
    from statemesh.errors import from_rpc_error
    err = from_rpc_error(e.value)
    assert isinstance(err, InvalidArgument) and "select all" in err.details


def test_async_client(server):
    addr, fake = server
    fake.reset()

    async def main():
        async with AsyncClient(addr, timeout=10) as c:
            page = await c.dead_letters(type="t/flaky", limit=2)
            assert [d.id for d in page] == [3, 5] and page.total == 4
            assert page[1].argument.as_json() == {"k": [1, 2]}
            assert await c.drop_dead_letters([3]) == 1
            assert await c.replay_dead_letters(all=True, type="t/flaky") == 2
            with pytest.raises(ValueError):
                await c.replay_dead_letters()
            with pytest.raises(Unavailable):
                await c.dead_letters(type="t/down")
            assert [d.id for d in await c.dead_letters()] == [8]

    asyncio.run(main())
    assert [k for k, _ in fake.requests] == ["list", "drop", "replay", "list", "list"]
    assert json.loads(json.dumps([list(s.ids) for k, s in fake.requests if k == "drop"])) == [[3]]
