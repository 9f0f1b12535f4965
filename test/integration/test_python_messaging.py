"""
The Python SDK's messaging features against the real runtime: delayed
messages and their cancellation (ctx.send_after / ctx.cancel_delayed),
egress records (ctx.send_egress) read with Client.subscribe, state TTL
declared in a ValueSpec, idempotent Send/Call and delayed Send through the
Python client, and Client.send_stream ingesting 20,000 messages exactly once.

The function server is test_python_fn.py (py/scheduler, py/sink, py/emitter,
py/ttl, py/counter); every client call here goes through statemesh.Client.
"""

import json
import sys
import threading
import time

import pytest

from harness import HERE, PYTHON, REPO, endpoint, python_env, scaled, wait_until

sys.path.insert(0, str(REPO / "sdk-python"))
import statemesh  # noqa: E402
from statemesh import (AlreadyExists, Client, NotFound, OffsetTrimmed,  # noqa: E402
                       StreamMessage)

PYFN = HERE / "test_python_fn.py"
EGRESSES = ('egresses = ( { name = "py-events"; }, { name = "out"; },\n'
            '  { name = "small"; retention_records = 5; } );')


class Env:
    def __init__(self, sandbox):
        self.py = sandbox.server([PYTHON, str(PYFN), "--ttl", "1"], name="pyfn",
                                 env=python_env())
        self.rt = sandbox.runtime(endpoints=[endpoint("py/*", self.py)],
                                  extra_config=EGRESSES)
        self.c = Client(self.rt.ingress, timeout=scaled(20), wait_for_ready=True)

    def __iter__(self):
        return iter((self.rt, self.py, self.c))

    def restart_runtime(self):
        """kill -9 and start again; a new Client (a channel that was connected
        to the killed process may fail its first RPC with UNAVAILABLE)."""
        self.rt.kill9()
        self.rt.start()
        self.c.close()
        self.c = Client(self.rt.ingress, timeout=scaled(20), wait_for_ready=True)
        return self.c


@pytest.fixture
def env(sandbox, require):
    """Env: runtime, python function server, statemesh.Client."""
    require("statemeshd")
    e = Env(sandbox)
    yield e
    e.c.close()


def sink_n(c, sink_id):
    return c.state("py/sink", sink_id).get("n", 0)


def events(c, egress="py-events", **kw):
    kw.setdefault("follow", False)
    return list(c.subscribe(egress, timeout=scaled(20), **kw))


def schedule(c, *cmds):
    assert c.call("py/scheduler", "s", list(cmds)) == "ok"


# ---- delayed messages ----------------------------------------------------------


def test_delayed_message_fires_once_after_its_delay(env):
    rt, py, c = env
    t0 = time.time()
    schedule(c, {"after": 0.8, "to": ["py/sink", "d1"], "value": "hello"})
    assert sink_n(c, "d1") == 0                        # not yet
    wait_until(lambda: sink_n(c, "d1") == 1, 10, message="delayed message delivered")
    recs = events(c)
    assert [(r.source, r.value.as_json()) for r in recs] == [
        (("py/sink", "d1"), {"sink": "d1", "value": "hello", "n": 1})]
    # Committed no earlier than the delay after it was scheduled.
    assert recs[0].timestamp_ms >= int(t0 * 1000) + 800 - 50
    time.sleep(scaled(1.0))
    assert sink_n(c, "d1") == 1                        # once, not again
    assert c.state("py/sink", "d1")["got"] == ["hello"]


def test_cancelled_delayed_message_never_fires(env):
    rt, py, c = env
    schedule(c, {"after": 1.0, "to": ["py/sink", "c1"], "value": "cancel me", "token": "t1"},
             {"after": 1.0, "to": ["py/sink", "c2"], "value": "keep me", "token": "t2"})
    schedule(c, {"cancel": "t1"})                      # a later batch cancels t1
    # Within one batch: scheduled then cancelled (never leaves the SDK), and
    # cancel + reschedule with the same token (only the second one fires).
    schedule(c, {"after": 0.5, "to": ["py/sink", "c3"], "value": "dropped", "token": "t3"},
             {"cancel": "t3"})
    schedule(c, {"after": 0.5, "to": ["py/sink", "c4"], "value": "first", "token": "t4"})
    schedule(c, {"cancel": "t4"},
             {"after": 0.7, "to": ["py/sink", "c4"], "value": "second", "token": "t4"})
    # Cancelling an unknown token is fine.
    schedule(c, {"cancel": "never-used"})
    wait_until(lambda: sink_n(c, "c2") == 1 and sink_n(c, "c4") == 1, 10,
               message="uncancelled messages delivered")
    time.sleep(scaled(1.0))
    assert sink_n(c, "c1") == 0 and sink_n(c, "c3") == 0
    assert c.state("py/sink", "c4")["got"] == ["second"]
    assert sorted(r.value.as_json()["sink"] for r in events(c)) == ["c2", "c4"]


def test_failed_batch_schedules_nothing(env):
    """A handler that raises after send_after / send_egress: none of it is
    kept; the runtime retries the batch forever, so use a send instead."""
    rt, py, c = env
    c.send("py/scheduler", "f",
           [{"after": 0.3, "to": ["py/sink", "f1"], "value": 1, "token": "f"},
            {"egress": "out", "value": "never"}, {"fail": True}])
    wait_until(lambda: "planned failure" in py.full_log(), 10, message="failure logged")
    time.sleep(scaled(1.0))
    assert sink_n(c, "f1") == 0 and events(c, "out") == []


def test_pending_token_reuse_fails_the_batch_until_cancelled(env):
    rt, py, c = env
    schedule(c, {"after": 30, "to": ["py/sink", "r1"], "value": 1, "token": "dup"})
    # Reusing a pending token without cancelling it: the runtime fails the batch.
    with pytest.raises(statemesh.DeadlineExceeded):
        c.call("py/scheduler", "s", [{"after": 30, "to": ["py/sink", "r2"], "value": 2,
                                      "token": "dup"}], timeout=scaled(1.5))
    assert "token 'dup' is still pending" in rt.full_log()
    assert sink_n(c, "r2") == 0


def test_delayed_message_survives_kill9(env):
    rt, py, c = env
    schedule(c, {"after": 1.5, "to": ["py/sink", "k1"], "value": "durable"})
    c = env.restart_runtime()
    wait_until(lambda: sink_n(c, "k1") == 1, 15, message="delivered after restart")
    time.sleep(scaled(1.0))
    assert sink_n(c, "k1") == 1


# ---- egress ----------------------------------------------------------------------


def test_egress_records_visible_through_subscribe(env):
    rt, py, c = env
    vals = ["a", 2, 2.5, True, {"k": [1, None]}, [1, "x"], {"hex": "00ff"}]
    assert c.call("py/emitter", "e1", {"egress": "out", "values": vals}) == len(vals)
    vals[-1] = b"\x00\xff"
    assert c.call("py/emitter", "e2", {"egress": "out", "values": ["z"]}) == 1
    recs = events(c, "out")
    assert [r.offset for r in recs] == list(range(1, len(vals) + 2))
    assert [r.value.value for r in recs] == vals + ["z"]
    assert [r.value.typename for r in recs[:4]] == [
        "statemesh/string", "statemesh/int64", "statemesh/float64", "statemesh/bool"]
    assert recs[4].value.as_json() == {"k": [1, None]} and recs[0].value.as_string() == "a"
    assert [r.source for r in recs] == [("py/emitter", "e1")] * len(vals) + [("py/emitter", "e2")]
    assert all(abs(r.timestamp_ms / 1000 - time.time()) < 60 for r in recs)
    # Start positions.
    assert [r.offset for r in events(c, "out", from_offset=7)] == [7, 8]
    assert events(c, "out", latest=True) == []
    with c.subscribe("out", from_offset=3, follow=False) as sub:
        assert next(sub).offset == 3 and sub.offset == 3


def test_subscribe_follow_sees_new_records(env):
    rt, py, c = env
    got = []
    sub = c.subscribe("out", latest=True)

    def reader():
        for rec in sub:
            got.append(rec.value.as_string())
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(scaled(0.3))                             # subscribed at the latest position
    for i in range(5):
        c.call("py/emitter", "live", {"egress": "out", "values": ["r%d" % i]})
    wait_until(lambda: len(got) == 5, 10, message="5 live records")
    sub.close()
    t.join(scaled(5))
    assert not t.is_alive() and got == ["r%d" % i for i in range(5)]


def test_egress_records_of_a_failed_attempt_vanish(env):
    rt, py, c = env
    # The first attempt writes 3 records then raises; the retry writes them again.
    assert c.call("py/emitter", "ff", {"egress": "out", "values": ["x", "y", "z"],
                                        "fail_first": True}) == 3
    assert "planned failure after writing 3 records" in py.full_log()
    assert [r.value.as_string() for r in events(c, "out")] == ["x", "y", "z"]


def test_subscribe_errors(env):
    rt, py, c = env
    with pytest.raises(NotFound) as e:
        events(c, "no-such-egress")
    assert "no-such-egress" in e.value.details
    # "small" keeps 5 records: after 20, offset 1 is trimmed (retention runs
    # about once a second).
    c.call("py/emitter", "t", {"egress": "small", "values": list(range(20))})
    wait_until(lambda: events(c, "small")[0].offset == 16, 10, message="trimmed to 5")
    with pytest.raises(OffsetTrimmed) as e:
        events(c, "small", from_offset=1)
    assert isinstance(e.value, LookupError)
    assert [r.value.as_int() for r in events(c, "small", earliest=True)] == [15, 16, 17, 18, 19]


# ---- state TTL ---------------------------------------------------------------------


def test_ttl_declared_state_expires(env):
    """w expires 1 s after its write; v 3 s after the address's last invocation."""
    rt, py, c = env
    c.call("py/ttl", "a", "set")
    t_set = time.monotonic()
    assert c.call("py/ttl", "a", "get") == {"w": "x", "v": "x"}
    time.sleep(max(0, t_set + 1.5 - time.monotonic()))
    t1 = time.monotonic()
    assert c.call("py/ttl", "a", "get") == {"w": None, "v": "x"}     # this get extends v
    assert time.monotonic() - t_set < 2.9, "too slow to check v before it expires"
    time.sleep(max(0, t1 + 2.0 - time.monotonic()))
    # Without the extension v would have expired ~1.3 s ago.
    assert c.call("py/ttl", "a", "get") == {"w": None, "v": "x"}
    time.sleep(3.5)
    assert c.call("py/ttl", "a", "get") == {"w": None, "v": None}
    # Describe carried the TTLs: another address still behaves the same.
    c.call("py/ttl", "b", "set")
    time.sleep(1.5)
    assert c.call("py/ttl", "b", "get")["w"] is None


# ---- idempotency and delay through the Python client ------------------------------


def test_idempotent_send_and_call(env):
    rt, py, c = env
    for _ in range(3):
        c.send("py/counter", "i", 5, idempotency_key="send-1")
    c.send("py/counter", "i", 1, idempotency_key="send-2")
    wait_until(lambda: c.state("py/counter", "i").get("n") == 6, 10)
    assert c.call("py/counter", "j", 10, idempotency_key="call-1") == 10
    assert c.call("py/counter", "j", 10, idempotency_key="call-1") == 10   # stored reply
    assert c.call("py/counter", "j", 1) == 11                              # applied once
    with pytest.raises(AlreadyExists):                          # the Send's key, same address
        c.call("py/counter", "i", 1, idempotency_key="send-1")
    assert c.call("py/counter", "j", 1, idempotency_key="send-1") == 12    # keys are per address
    # Keys survive a restart.
    c = env.restart_runtime()
    c.send("py/counter", "i", 5, idempotency_key="send-1")
    assert c.call("py/counter", "j", 10, idempotency_key="call-1") == 10
    assert c.call("py/counter", "j", 0) == 12 and c.call("py/counter", "i", 0) == 6


def test_delayed_send_from_the_client(env):
    rt, py, c = env
    t0 = time.monotonic()
    c.send("py/sink", "later", "ping", delay=0.8)
    assert sink_n(c, "later") == 0
    wait_until(lambda: sink_n(c, "later") == 1, 10)
    assert time.monotonic() - t0 >= 0.8


# ---- SendStream ----------------------------------------------------------------------


@pytest.mark.time_limit(240)
def test_send_stream_20000_messages_applied_exactly(env):
    rt, py, c = env
    n, ids = 20000, 100
    progress = []
    t0 = time.monotonic()
    r = c.send_stream((("py/counter", "s%d" % (i % ids), i) for i in range(n)),
                      window=5000, batch_size=500, progress=progress.append)
    elapsed = time.monotonic() - t0
    assert r.ok and r.sent == n and r.acked == n and r.errors == []
    assert progress and progress[-1].acked == n
    rt.client().wait_drained(timeout=120)
    want = [sum(range(k, n, ids)) for k in range(ids)]
    got = [c.state("py/counter", "s%d" % k).get("n") for k in range(ids)]
    assert got == want
    print("send_stream: %d messages acked in %.2fs (%.0f/s)" % (n, elapsed, n / elapsed))


def test_send_stream_rejections_and_idempotency(env):
    rt, py, c = env
    items = [StreamMessage("py/counter", "x", 1, idempotency_key="m%d" % i) for i in range(300)]
    items[10] = ("nope/missing", "x", 1)                 # NOT_FOUND, the rest go on
    items[20] = ("py/counter", "", 1)                    # invalid id: rejected before sending
    r = c.send_stream(items, window=100, batch_size=50)
    assert r.sent == 299 and r.acked == 298 and [e.seq for e in r.errors] == [11, 21]
    assert r.errors[0].code.name == "NOT_FOUND" and "nope/missing" in r.errors[0].message
    # The same keyed messages again: acknowledged, not applied again.
    r2 = c.send_stream(items, window=100, batch_size=50)
    assert r2.acked == 298
    rt.client().wait_drained(timeout=60)
    assert c.state("py/counter", "x")["n"] == 298
    # A delayed stream message.
    r3 = c.send_stream([StreamMessage("py/sink", "sd", "from-stream", delay=0.5)])
    assert r3.ok
    wait_until(lambda: sink_n(c, "sd") == 1, 10)


def test_async_client_messaging(env):
    rt, py, c = env
    import asyncio

    async def main():
        async with statemesh.AsyncClient(rt.ingress, timeout=scaled(20),
                                         wait_for_ready=True) as ac:
            r = await ac.send_stream([("py/counter", "as", 1)] * 1000, batch_size=100)
            assert r.acked == 1000
            assert await ac.call("py/counter", "as", 0, idempotency_key="a-1") == 1000
            await ac.call("py/emitter", "ae", {"egress": "out", "values": ["p", "q"]})
            return [rec.value.as_string() async for rec in ac.subscribe("out", follow=False)]
    assert asyncio.run(main()) == ["p", "q"]
