"""
Upgrade of a data dir written by the release before savepoints (store format
1) in place at start-up (docs/architecture.md#storage-layout).

data/store-format-1.tar.gz was written by that release's statemeshd with
msg_fn.py (the egress "events" configured), idempotency_retention_hours =
8760, and:
  msg/echo a     5 Sends (n = 5)
  msg/echo b     1 Send with idempotency key "upgrade-send-1" (n = 1)
  msg/echo e     1 Call with key "upgrade-call-1", reply "first" (n = 1)
  msg/sink soon  a delayed Send due 1.5 s after it was written (not yet fired)
  msg/sink later a delayed Send due 300 days after it was written
"""

import tarfile
import time
from pathlib import Path

from harness import endpoint, string, wait_until
from test_messaging import EGRESS, call, send

FIXTURE = Path(__file__).resolve().parent / "data" / "store-format-1.tar.gz"
WRITTEN_AT = 1796473970           # 2026-12-05 12:32 UTC, when the fixture was written
LATER_DUE = WRITTEN_AT + 300 * 24 * 3600


def start_on_fixture(sandbox):
    fn = sandbox.python_server("msg_fn.py", ["--ttl-ms", 1000], name="msgfn", listen_flag="--listen")
    rt = sandbox.runtime([endpoint("msg/*", fn)], start=False, extra_config=EGRESS,
                         runtime_settings={"idempotency_retention_hours": 8760})
    rt.data_dir.mkdir(parents=True)
    with tarfile.open(FIXTURE) as tf:
        tf.extractall(rt.data_dir)
    rt.start()
    return fn, rt, rt.client()


def test_format_1_store_is_upgraded_in_place(sandbox):
    fn, rt, c = start_on_fixture(sandbox)
    log = rt.log()
    assert "event=store.upgrade_start" in log
    assert "event=store.upgraded from=1 to=2 delayed=2 idempotency=2" in log
    assert "event=idem.legacy_records" in log

    # State is there.
    assert c.int_state("msg/echo", "a") == 5
    assert c.int_state("msg/echo", "b") == 1
    # The delayed message that came due while the runtime was down fires once.
    wait_until(lambda: c.int_state("msg/sink", "soon") == 1, timeout=20,
               message="the due delayed message is delivered")
    # The idempotency records of format 1 still deduplicate: a retried Send
    # is not applied again, a retried Call gets the stored reply.
    send(c, "msg/echo", "b", string("again"), key="upgrade-send-1")
    assert call(c, "msg/echo", "e", string("second"), key="upgrade-call-1").value == b"first"
    c.wait_drained()
    assert c.int_state("msg/echo", "b") == 1
    assert c.int_state("msg/echo", "e") == 1
    # New keys work as before, scoped to their address.
    send(c, "msg/echo", "b", string("new"), key="after-upgrade")
    send(c, "msg/echo", "b", string("new"), key="after-upgrade")
    send(c, "msg/echo", "a", string("new"), key="after-upgrade")     # another address
    c.wait_drained()
    assert c.int_state("msg/echo", "b") == 2
    assert c.int_state("msg/echo", "a") == 6
    if time.time() < LATER_DUE - 60:
        assert c.stats()["delayed_pending"] == 1                   # the 300-day one

    # A second start finds format 2: no upgrade, nothing delivered twice.
    rt.kill9()
    rt.start()
    assert "event=store.upgrade" not in rt.log()
    time.sleep(0.5)
    c.wait_drained()
    assert c.int_state("msg/sink", "soon") == 1
    assert c.int_state("msg/echo", "b") == 2
    send(c, "msg/echo", "b", string("again"), key="upgrade-send-1")
    send(c, "msg/echo", "b", string("new"), key="after-upgrade")
    c.wait_drained()
    assert c.int_state("msg/echo", "b") == 2
