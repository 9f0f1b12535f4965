"""
The function tier as stateless services: remote mode over several backends
(killed and restarted under load), scale-to-zero, backpressure from a slow
backend, new versions picked up without a runtime restart.
"""

import time

import grpc
import pytest

from harness import SendLoad, endpoint, free_port, int64, scaled, string, wait_until


def backends(sandbox, n, **kw):
    out = []
    for i in range(n):
        port = free_port()
        out.append(sandbox.testfn(name="backend%d" % i, listen="127.0.0.1:%d" % port, **kw))
    return out


def ipv4_target(servers):
    return "ipv4:" + ",".join(s.listen for s in servers)


def batches_served(fn):
    """Invoke streams the backend served (its log: fn.stream.open lines)."""
    return len(fn.log_lines("event=fn.stream.open"))


@pytest.mark.fault
@pytest.mark.time_limit(240)
def test_remote_backends_killed_and_restarted_under_load_lose_nothing(sandbox):
    fns = backends(sandbox, 3)
    rt = sandbox.runtime([endpoint("test/*", ipv4_target(fns), mode="remote", streams=6,
                                   invocation_timeout_ms=5000)])
    c = rt.client()
    ids = ["r%d" % i for i in range(200)]
    with SendLoad(rt.ingress, [("test/counter", i, int64(1)) for i in ids], threads=4) as load:
        load.wait_acks(2000, timeout=60)
        # streams first land on whichever backend connected first; the early
        # rotation spreads them
        wait_until(lambda: all(batches_served(f) >= 1 for f in fns), timeout=30,
                   message="streams not spread over the backends")
        fns[0].kill9()                              # one backend dies mid-load
        load.wait_acks(2000, timeout=60, message="load stalled after a backend died")
        for f in fns[1:]:                           # rolling restart of the others
            f.stop()
            load.wait_acks(1000, timeout=60, message="load stalled during a rolling restart")
            f.start()
            load.wait_acks(1000, timeout=60)
        fns[0].start()
        load.wait_acks(1000, timeout=60)
    c.wait_drained(timeout=60)
    acked = load.acked
    for k, i in enumerate(ids):
        assert c.int_state("test/counter", i) == acked[k], i
    assert load.total_failed() == 0, load.failure_codes()
    assert rt.log_lines("event=endpoint.stream_closed")


def test_zero_backends_then_one_appears_delivers_everything_in_order(sandbox):
    port = free_port()
    fn = sandbox.testfn(listen="127.0.0.1:%d" % port, start=False)
    rt = sandbox.runtime([endpoint("test/*", "dns:///127.0.0.1:%d" % port, mode="remote")])
    c = rt.client()
    for i in range(50):
        c.send("test/order", "o", string("%d" % i))       # accepted durably, no backend
    time.sleep(1.0)
    assert c.get_state("test/order", "o").queued_messages == 50
    rt.restart()                                            # still nothing lost meanwhile
    fn.start()
    wait_until(lambda: c.get_state("test/order", "o").queued_messages == 0, timeout=30,
               message="messages not delivered once a backend appeared")
    assert c.state("test/order", "o")["seen"] == "".join("%d," % i for i in range(50))


@pytest.mark.time_limit(180)
def test_slow_backend_bounds_queues_with_resource_exhausted(sandbox):
    fn = sandbox.testfn(slow_ms=200)
    rt = sandbox.runtime([endpoint("test/*", fn, max_in_flight=4, max_batch=10)],
                         runtime_settings={"max_queued_bytes": 1 << 20})
    c = rt.client()
    payload = b"x" * 8192
    exhausted = 0
    accepted = 0
    deadline = time.monotonic() + scaled(60)
    while exhausted < 20 and time.monotonic() < deadline:
        try:
            c.send("test/slow", "s%d" % (accepted % 500), payload)
            accepted += 1
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
            assert "max_queued_bytes" in e.details()
            exhausted += 1
    assert exhausted >= 20, "never refused after %d messages" % accepted
    st = c.stats()
    assert st["rejected_overloaded"] >= 20
    # ~1 MiB of 8 KiB messages: the runtime stopped accepting near the cap
    assert accepted < 400, accepted
    assert st["queued_bytes"] < 2 << 20


def test_new_backend_version_is_picked_up_without_runtime_restart(sandbox):
    port = free_port()
    fn = sandbox.python_server("msg_fn.py", [], name="v1", listen="127.0.0.1:%d" % port,
                               listen_flag="--listen")
    rt = sandbox.runtime([endpoint("msg/*", "ipv4:127.0.0.1:%d" % port, mode="remote", streams=2)],
                         extra_config='egresses = ( { name = "events"; } );')
    c = rt.client()
    # until the first Describe answers, unknown types are accepted (and wait)
    wait_until(lambda: c.stats()["endpoints_up"] == 1, timeout=20)
    with pytest.raises(grpc.RpcError) as e:
        c.send("msg/v2only", "x", string("x"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    fn.stop()
    fn2 = sandbox.python_server("msg_fn.py", ["--version", "2"], name="v2",
                                listen="127.0.0.1:%d" % port, listen_flag="--listen")

    def served():
        try:
            return c.call("msg/v2only", "x", string("hi"), timeout=5) == "hi"
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:   # not described yet
                raise
            return False

    wait_until(served, timeout=30, message="new version not picked up")
    assert fn2.alive
    assert rt.log_lines("msg/v2only")


@pytest.mark.fault
@pytest.mark.time_limit(180)
def test_keepalive_detects_a_frozen_backend(sandbox):
    """A backend that stops answering without closing its connection (SIGSTOP:
    a hung host) is detected by HTTP/2 keepalive, not by the (long)
    invocation timeout: its streams die, their batches go to the other
    backend, and nothing is lost or applied twice."""
    import os
    import signal
    fns = backends(sandbox, 2)
    rt = sandbox.runtime([endpoint("test/*", ipv4_target(fns), mode="remote", streams=4,
                                   keepalive_ms=1000, invocation_timeout_ms=600000)])
    c = rt.client()
    ids = ["k%d" % i for i in range(50)]
    with SendLoad(rt.ingress, [("test/counter", i, int64(1)) for i in ids], threads=2) as load:
        load.wait_acks(500, timeout=60)
        wait_until(lambda: all(batches_served(f) >= 1 for f in fns), timeout=30,
                   message="streams not spread over the backends")
        os.kill(fns[0].pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            wait_until(lambda: rt.log_lines("event=endpoint.stream_closed"), timeout=30,
                       message="keepalive did not close the frozen backend's streams")
            detected = time.monotonic() - t0
            load.wait_acks(500, timeout=60, message="load stalled with a frozen backend")
        finally:
            os.kill(fns[0].pid, signal.SIGCONT)
    assert detected < scaled(15), "took %.1f s" % detected
    c.wait_drained(timeout=60)
    acked = load.acked
    for k, i in enumerate(ids):
        assert c.int_state("test/counter", i) == acked[k], i
