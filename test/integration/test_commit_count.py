"""
Checkpoints per message at one client (issue 14, item 4).

A unary Send is acknowledged once the checkpoint holding it is durable; a
Call once the checkpoint holding its result is. At one client, sequential
requests to a C function server (a sidecar: its result comes back some
hundreds of microseconds after the batch leaves) must cost one checkpoint
each, as they do with an embedded module: the accept and the result of a
Send commit together (checkpoint.h, "Holding for an in-flight result").
Before the fix a Send cost 1.4-1.65 checkpoints (one for the accept and its
ack, another for the result).
"""

import pytest

from harness import endpoint, int64

COUNTER = "test/counter"
N = 2000
# at most ~1.1 checkpoints per request (the rest: housekeeping, the last result)
LIMIT = 1.1


def _run(sandbox, op):
    fn = sandbox.testfn()
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)])
    cl = rt.client()
    cl.call(COUNTER, "warm", int64(1))          # connection and function server up
    cl.wait_drained()
    before = cl.stats()["checkpoints"]
    for _ in range(N):
        op(cl)
    cl.wait_drained()
    assert cl.int_state(COUNTER, "a") == N      # every message applied once
    after = cl.stats()["checkpoints"]
    return (after - before) / N


@pytest.mark.time_limit(240)
def test_sequential_sends_cost_one_checkpoint_each(sandbox):
    per = _run(sandbox, lambda cl: cl.send(COUNTER, "a", int64(1)))
    print("checkpoints per Send: %.3f" % per)
    assert per <= LIMIT, "%.3f checkpoints per Send (limit %.2f)" % (per, LIMIT)


@pytest.mark.time_limit(240)
def test_sequential_calls_cost_one_checkpoint_each(sandbox):
    per = _run(sandbox, lambda cl: cl.call(COUNTER, "a", int64(1)))
    print("checkpoints per Call: %.3f" % per)
    assert per <= LIMIT, "%.3f checkpoints per Call (limit %.2f)" % (per, LIMIT)
