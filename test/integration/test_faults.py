"""
Fault tests: guarantees 3 (exactly-once) and 4 (nothing acknowledged is lost)
under kill -9 of the runtime and of function servers, with concurrent load.

Clients never retry: every Send is either acknowledged (must be applied exactly
once) or failed (may or may not have been applied, at most once). So for every
counter:   acked <= n <= acked + failed.

Set STATEMESH_SEED to replay a run's random kill schedule.
"""

import os
import random
import signal
import time

import grpc
import pytest

from harness import SendLoad, endpoint, int64, scaled, string

COUNTER = "test/counter"
pytestmark = pytest.mark.fault


def _seed():
    seed = int(os.environ.get("STATEMESH_SEED") or time.time_ns() % 1_000_000)
    print("STATEMESH_SEED=%d" % seed)
    return seed


def _read_counters(cl, ids):
    return [cl.int_state(COUNTER, i) for i in ids]


def _settle(cl, ids, timeout=90):
    """Waits until nothing is queued or in flight and the counters are stable; returns them."""
    cl.wait_drained(timeout=timeout)
    first = _read_counters(cl, ids)
    time.sleep(0.5)
    assert cl.queued() == 0
    second = _read_counters(cl, ids)
    assert first == second, "counters still moving after the queues drained"
    return second


def _check_bounds(ids, acked, failed, n, seed):
    bad = [(ids[k], acked[k], n[k], acked[k] + failed[k]) for k in range(len(ids))
           if not acked[k] <= n[k] <= acked[k] + failed[k]]
    lost = sum(1 for _, a, v, _ in bad if v < a)
    dup = len(bad) - lost
    assert not bad, ("%d counters violate acked <= n <= acked+failed (%d lost acked messages, "
                     "%d applied more than sent; seed %d); first (id, acked, n, acked+failed): %s"
                     % (len(bad), lost, dup, seed, bad[:15]))


@pytest.mark.time_limit(300)
def test_kill9_runtime_under_load(sandbox, require):
    """6 client threads send +1 to 1,000 counters; the runtime is kill -9'd and
    restarted at random moments 6 times; no acknowledged increment is lost and
    none is applied twice."""
    require("statemeshd", "test/fn/testfn")
    seed = _seed()
    rng = random.Random(seed)
    fn = sandbox.testfn()
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)])
    ids = ["k%d" % i for i in range(1000)]
    load = SendLoad(rt.ingress, [(COUNTER, i, int64(1)) for i in ids], threads=6, seed=seed)
    kills = 0
    with load:
        load.wait_acks(300, timeout=30, message="initial load")
        for k in range(6):
            time.sleep(rng.uniform(0.1, 1.0))
            rt.kill9()
            kills += 1
            time.sleep(rng.uniform(0.0, 0.3))
            rt.start()
            load.wait_acks(100, timeout=30, message="acks after restart %d" % (k + 1))
        time.sleep(rng.uniform(0.1, 0.5))
    assert kills >= 5
    acked, failed = load.acked, load.failed
    print("acked=%d failed=%d codes=%s" % (sum(acked), sum(failed), load.failure_codes()))
    cl = rt.client()
    n = _settle(cl, ids)
    _check_bounds(ids, acked, failed, n, seed)
    assert sum(n) >= sum(acked) > 0
    assert "event=panic" not in rt.full_log()


@pytest.mark.time_limit(240)
def test_kill9_runtime_with_function_to_function_messages(sandbox, require):
    """Messages produced by functions are exactly-once too: test/forward relays
    each Send to a counter while the runtime is kill -9'd."""
    require("statemeshd", "test/fn/testfn")
    seed = _seed()
    rng = random.Random(seed)
    fn = sandbox.testfn()
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)])
    ids = ["fw%d" % i for i in range(200)]
    # 20 forwarders, each relaying to 10 counters: counter i <- forwarder i % 20
    targets = [("test/forward", "f%d" % (k % 20), string("%s %s" % (COUNTER, i)))
               for k, i in enumerate(ids)]
    load = SendLoad(rt.ingress, targets, threads=4, seed=seed)
    with load:
        load.wait_acks(200, timeout=30, message="initial load")
        for k in range(4):
            time.sleep(rng.uniform(0.1, 0.8))
            rt.kill9()
            time.sleep(rng.uniform(0.0, 0.2))
            rt.start()
            load.wait_acks(50, timeout=30, message="acks after restart %d" % (k + 1))
    acked, failed = load.acked, load.failed
    print("acked=%d failed=%d codes=%s" % (sum(acked), sum(failed), load.failure_codes()))
    cl = rt.client()
    n = _settle(cl, ids)
    _check_bounds(ids, acked, failed, n, seed)


@pytest.mark.time_limit(240)
def test_function_server_killed_mid_load(sandbox, require):
    """kill -9 of the function server (twice) during a stream of Sends: every Send
    is still acknowledged, and every acknowledged increment applied exactly once."""
    require("statemeshd", "test/fn/testfn")
    seed = _seed()
    rng = random.Random(seed)
    fn = sandbox.testfn()
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)])
    ids = ["m%d" % i for i in range(200)]
    load = SendLoad(rt.ingress, [(COUNTER, i, int64(1)) for i in ids], threads=4, seed=seed,
                    timeout=15)
    with load:
        load.wait_acks(200, timeout=30, message="initial load")
        for k in range(2):
            time.sleep(rng.uniform(0.1, 0.6))
            fn.kill9()
            # Sends do not need the function server: still acknowledged
            load.wait_acks(50, timeout=20, message="acks while the function server is down")
            fn.start()
            load.wait_acks(50, timeout=30, message="acks after the function server restarted")
    acked, failed = load.acked, load.failed
    print("acked=%d failed=%d codes=%s" % (sum(acked), sum(failed), load.failure_codes()))
    assert sum(failed) == 0, "Sends failed although only the function server died: %s" \
        % load.failure_codes()
    cl = rt.client()
    n = _settle(cl, ids)
    bad = [(ids[k], acked[k], n[k]) for k in range(len(ids)) if n[k] != acked[k]]
    assert not bad, "%d counters != acked (seed %d); (id, acked, n): %s" % (len(bad), seed, bad[:15])
    assert rt.alive
    assert "event=panic" not in rt.full_log()


@pytest.mark.time_limit(180)
def test_sigterm_under_load_loses_nothing(sandbox, require):
    """A graceful stop in the middle of load exits 0; after a restart every
    acknowledged message is applied exactly once."""
    require("statemeshd", "test/fn/testfn")
    seed = _seed()
    fn = sandbox.testfn()
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)])
    ids = ["t%d" % i for i in range(100)]
    load = SendLoad(rt.ingress, [(COUNTER, i, int64(1)) for i in ids], threads=4, seed=seed)
    with load:
        load.wait_acks(300, timeout=30, message="initial load")
        rt.stop(sig=signal.SIGTERM)          # asserts exit code 0
        time.sleep(0.2)
        rt.start()
        load.wait_acks(100, timeout=30, message="acks after restart")
    acked, failed = load.acked, load.failed
    cl = rt.client()
    n = _settle(cl, ids)
    _check_bounds(ids, acked, failed, n, seed)


@pytest.mark.time_limit(180)
def test_kill9_with_queued_messages_and_no_function_server(sandbox, require):
    """Acknowledged messages waiting for an absent function server survive kill -9."""
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn(start=False)
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)])
    cl = rt.client()
    for i in range(50):
        cl.send(COUNTER, "q%d" % (i % 5), int64(1))
    rt.kill9()
    rt.start()
    assert cl.queued() == 50
    fn.start()
    n = _settle(cl, ["q%d" % i for i in range(5)], timeout=60)
    assert n == [10] * 5


@pytest.mark.time_limit(180)
def test_storage_write_failure_never_acks_undurable(sandbox, require):
    """With STATEMESH_FAULT_WRITE_FAIL_AFTER=N every store write after the N-th
    fails: from then on no Send may be acknowledged (INTERNAL, or UNAVAILABLE
    once the runtime stops, which it may do). After a restart without the fault,
    every acknowledged message is applied exactly once."""
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn()
    env = dict(os.environ, STATEMESH_FAULT_WRITE_FAIL_AFTER="30")
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)], env=env)
    cl = rt.client(timeout=5, wait_for_ready=False)
    ids = ["w%d" % i for i in range(10)]
    acked, failed = [0] * 10, [0] * 10
    first_failure = None
    codes = set()
    for k in range(200):
        if not rt.alive:
            break
        i = k % 10
        try:
            cl.send(COUNTER, ids[i], int64(1))
            acked[i] += 1
            assert first_failure is None, \
                "Send %d acknowledged after Send %d failed: store writes keep failing" % (k, first_failure)
        except grpc.RpcError as e:
            failed[i] += 1
            codes.add(e.code())
            if first_failure is None:
                first_failure = k
    assert first_failure is not None, "no Send failed although store writes fail after the 30th"
    assert codes <= {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE}, codes
    assert "event=panic" not in rt.full_log()
    if rt.alive:
        rt.kill9()
    else:
        print("runtime stopped on the storage failure with exit code %s" % rt.wait_exit())
    rt.env = None
    rt.start()
    n = _settle(cl, ids)
    _check_bounds(ids, acked, failed, n, 0)
    assert sum(acked) > 0


# ---- SendStream under kill -9 ------------------------------------------------------------
#
# A stream's ack is cumulative (committed_through). The runtime may carry a
# stream message across checkpoints without writing it (checkpoint.h), so
# the ack must never pass a message that is not durable: every message up to
# the last committed_through the client saw is applied exactly once; one
# after it was applied at most once (the client did not re-send it).


def _stream_requests(ids, first, last, per_request, log, key_prefix=None):
    from statemesh.v1 import ingress_pb2
    seq = first
    while seq <= last:
        req = ingress_pb2.SendStreamRequest()
        for _ in range(min(per_request, last - seq + 1)):
            m = req.messages.add(seq=seq)
            m.target.type = COUNTER
            m.target.id = ids[seq % len(ids)]
            m.argument.typename = "statemesh/int64"
            m.argument.value = b"\x01\0\0\0\0\0\0\0"
            if key_prefix:
                m.idempotency_key = "%s-%d" % (key_prefix, seq)
            seq += 1
        log[0] = seq - 1            # the last seq handed to gRPC
        yield req


@pytest.mark.time_limit(300)
def test_kill9_during_send_stream_loses_no_acknowledged_message(sandbox, require):
    """Three SendStreams of 200,000 messages into 2,000 counters, each outrunning
    the function server (so messages are carried), each ended by kill -9 of the
    runtime after 20,000-60,000 acks: every acknowledged message is applied
    exactly once, every other one at most once."""
    require("statemeshd", "test/fn/testfn")
    seed = _seed()
    rng = random.Random(seed)
    fn = sandbox.testfn()
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)])
    cl = rt.client()
    ids = ["t%d" % i for i in range(2000)]
    acked, failed = [0] * len(ids), [0] * len(ids)
    for rnd in range(3):
        kill_at = rng.randint(20000, 60000)
        n = 200000
        handed = [0]
        last_ack = 0
        try:
            for r in cl.ingress.SendStream(_stream_requests(ids, 1, n, 1000, handed),
                                           timeout=scaled(120)):
                assert r.committed_through >= last_ack
                last_ack = r.committed_through
                if last_ack >= kill_at and rt.alive:
                    rt.kill9()
        except grpc.RpcError as e:
            assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                                grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), e
        assert not rt.alive, "round %d: the stream finished before %d acks" % (rnd, kill_at)
        assert last_ack >= kill_at
        print("round %d: killed at committed_through=%d, %d messages handed to gRPC"
              % (rnd, last_ack, handed[0]))
        for seq in range(1, handed[0] + 1):
            k = seq % len(ids)
            if seq <= last_ack:
                acked[k] += 1
            else:
                failed[k] += 1
        rt.start()
    counts = _settle(cl, ids, timeout=120)
    _check_bounds(ids, acked, failed, counts, seed)
    assert "event=panic" not in rt.full_log()


@pytest.mark.time_limit(180)
def test_send_stream_to_absent_function_server_is_acked_durably(sandbox, require):
    """With no function server up nothing is consumed, so carried stream
    messages are written after CKPT_CARRY_MAX_MS and acknowledged; they
    survive kill -9 and are applied exactly once when the server comes."""
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn(start=False)
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)])
    cl = rt.client()
    ids = ["a%d" % i for i in range(10)]
    handed = [0]
    t0 = time.monotonic()
    resps = list(cl.ingress.SendStream(_stream_requests(ids, 1, 3000, 100, handed),
                                       timeout=scaled(60)))
    assert resps[-1].committed_through == 3000
    print("3000 stream messages acked without a function server in %.2fs" % (time.monotonic() - t0))
    assert cl.queued() == 3000
    rt.kill9()
    rt.start()
    assert cl.queued() == 3000
    fn.start()
    assert _settle(cl, ids, timeout=60) == [300] * len(ids)


@pytest.mark.time_limit(300)
def test_kill9_during_keyed_send_stream_then_resend_is_exact(sandbox, require):
    """Stream messages with idempotency keys are never carried: the key's
    record commits with the next checkpoint, so the message must too, or a
    crash would leave a key that swallows the re-sent message. Two streams of
    100,000 keyed messages, each kill -9'd mid-way and then re-sent whole with
    the same keys: every counter ends exactly at what was sent."""
    require("statemeshd", "test/fn/testfn")
    seed = _seed()
    rng = random.Random(seed)
    fn = sandbox.testfn()
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)])
    cl = rt.client()
    ids = ["i%d" % i for i in range(2000)]
    n = 100000
    for rnd in range(2):
        kill_at = rng.randint(10000, 50000)
        last_ack = 0
        try:
            for r in cl.ingress.SendStream(_stream_requests(ids, 1, n, 1000, [0], "r%d" % rnd),
                                           timeout=scaled(120)):
                last_ack = r.committed_through
                if last_ack >= kill_at and rt.alive:
                    rt.kill9()
        except grpc.RpcError:
            pass
        assert not rt.alive, "round %d: the stream finished before %d acks" % (rnd, kill_at)
        rt.start()
        resps = list(cl.ingress.SendStream(_stream_requests(ids, 1, n, 1000, [0], "r%d" % rnd),
                                           timeout=scaled(120)))
        assert resps[-1].committed_through == n
        assert not [e for r in resps for e in r.errors]
        print("round %d: killed at committed_through=%d, then all %d re-sent" % (rnd, last_ack, n))
    counts = _settle(cl, ids, timeout=120)
    expect = [2 * n // len(ids)] * len(ids)
    wrong = [(ids[k], counts[k]) for k in range(len(ids)) if counts[k] != expect[k]]
    assert not wrong, "%d counters not exact (seed %d), first: %s" % (len(wrong), seed, wrong[:10])
    assert "event=panic" not in rt.full_log()


def _wait_stat(cl, name, want, timeout=30):
    deadline = time.monotonic() + scaled(timeout)
    while True:
        v = cl.stats().get(name)
        if v == want:
            return
        assert time.monotonic() < deadline, "stat %s stayed %r, wanted %r" % (name, v, want)
        time.sleep(0.05)


@pytest.mark.time_limit(180)
@pytest.mark.parametrize("filter_bytes", [8 << 20, 64])
def test_state_filter_after_kill9_finds_every_existing_state(sandbox, require, filter_bytes):
    """The state filter answers "absent" for state keys never written. After
    kill -9 it is rebuilt from disk: 3,000 counters written before the kill
    keep counting, 3,000 new ones start at zero without a LevelDB read each;
    with a 64-byte (saturated) filter the answers are the same, only slower."""
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn()
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)],
                         runtime_settings={"state_filter_bytes": filter_bytes})
    cl = rt.client()
    old = ["o%d" % i for i in range(3000)]
    new = ["n%d" % i for i in range(3000)]
    handed = [0]
    for _ in cl.ingress.SendStream(_stream_requests(old, 1, 2 * len(old), 500, handed),
                                   timeout=scaled(60)):
        pass
    assert _settle(cl, old) == [2] * len(old)
    rt.kill9()
    rt.start()
    _wait_stat(cl, "state_filter_ready", 1)
    st = cl.stats()
    assert st["state_filter_bytes"] == filter_bytes
    assert st["state_filter_scanned"] == len(old)      # one S key per counter
    both = old + new
    for _ in cl.ingress.SendStream(_stream_requests(both, 1, len(both), 500, handed),
                                   timeout=scaled(60)):
        pass
    counts = _settle(cl, both)
    assert counts[:len(old)] == [3] * len(old), "a counter written before the kill restarted"
    assert counts[len(old):] == [1] * len(new)
    skips = cl.stats()["state_filter_skips"]
    print("filter %d bytes: %d of %d reads of new counters skipped" % (filter_bytes, skips, len(new)))
    if filter_bytes > 64:
        assert skips >= len(new) * 99 // 100
    else:
        assert skips < len(new) // 10
    assert "event=store.state_filter_ready keys=%d " % len(old) in rt.full_log()
