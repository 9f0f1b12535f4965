"""
Failure handling through the Python SDK (statemesh.Client) against the real
runtime: inspect() and stuck() of a paused address, skip() into the dead
letters, resume() after a fix, FailedPrecondition on an idle address, and the
runtime's text in a Call's DeadlineExceeded.

poison_fn.py serves raw/counter (fails on a non-int64 message unless the fix
file exists); testfn serves test/fail (always fails). See test_poison.py for
the same scenarios through the CLI.
"""

import datetime
import re
import sys

import pytest

from harness import REPO, endpoint, scaled, wait_until

sys.path.insert(0, str(REPO / "sdk-python"))
from statemesh import (Address, AddressStatus, Client, DeadlineExceeded,  # noqa: E402
                       FailedPrecondition, StuckList)

pytestmark = pytest.mark.needs("statemeshd", "test/fn/testfn")

PAUSE = {"initial_backoff_ms": 20, "max_backoff_ms": 50, "max_attempts": 3,
         "on_exhausted": "pause"}


def paused_env(sandbox, fix_file=None):
    """A runtime whose raw/counter p is paused on "poison" (1 applied, 2 waits);
    -> (harness client, statemesh.Client)."""
    args = ["--fix-file", fix_file] if fix_file else []
    fn = sandbox.python_server("poison_fn.py", args, name="poisonfn")
    rt = sandbox.runtime([endpoint("raw/*", fn, retry=PAUSE)])
    h = rt.client()
    c = Client(rt.ingress, timeout=scaled(20))
    c.send("raw/counter", "p", 1)
    c.send("raw/counter", "p", "poison")
    c.send("raw/counter", "p", 2)
    wait_until(lambda: c.stats()["addresses_paused"] == 1, timeout=20, message="paused")
    return h, c


def test_inspect_stuck_and_resume(sandbox):
    fix = sandbox.path("fixed")
    h, c = paused_env(sandbox, fix_file=fix)
    with c:
        st = c.inspect("raw/counter", "p")
        assert isinstance(st, AddressStatus)
        assert st.address == Address("raw/counter", "p")
        assert st.phase == "paused" and st.attempts == 3 and st.max_attempts == 3
        assert st.queued_messages == 2 and st.in_flight_messages == 0
        assert st.head.value == "poison" and st.head_caller is None
        assert "wants statemesh/int64, got statemesh/string" in st.last_error
        assert isinstance(st.last_error_at, datetime.datetime)
        assert st.next_retry_at is None and not st.isolating

        stuck = c.stuck()
        assert isinstance(stuck, StuckList)
        assert (stuck.retrying, stuck.paused) == (0, 1)
        assert [(s.address, s.phase) for s in stuck] == [(Address("raw/counter", "p"), "paused")]
        other = c.stuck(type="test/none", limit=10)
        assert len(other) == 0 and other.paused == 1        # totals are of every type

        idle = c.inspect("raw/counter", "nobody")
        assert idle.phase == "idle" and idle.head is None and idle.last_error is None
        with pytest.raises(FailedPrecondition) as e:
            c.resume("raw/counter", "nobody")
        assert "no queued" in e.value.details, e.value.details
        with pytest.raises(FailedPrecondition):
            c.skip("raw/counter", "nobody")

        fix.write_text("x")                                  # deploy the fix
        assert c.resume("raw/counter", "p") is None
        wait_until(lambda: h.queued() == 0, timeout=20, message="resumed address drained")
        assert c.state("raw/counter", "p") == {"n": 3}       # the poison now counts 0
        assert c.inspect("raw/counter", "p").phase == "idle"
        after = c.stuck()
        assert list(after) == [] and (after.retrying, after.paused) == (0, 0)
        assert c.dead_letters().total == 0


def test_skip_into_dead_letters(sandbox):
    h, c = paused_env(sandbox)
    with c:
        dl_id = c.skip("raw/counter", "p")
        assert isinstance(dl_id, int)
        wait_until(lambda: h.queued() == 0, timeout=20, message="skipped address drained")
        assert c.state("raw/counter", "p") == {"n": 3}
        page = c.dead_letters()
        assert page.total == 1 and [d.id for d in page] == [dl_id]
        d = page[0]
        assert d.target == Address("raw/counter", "p") and d.argument.value == "poison"
        assert d.error.startswith("skipped by an operator after 3 failed attempts; last error: ")
        assert c.inspect("raw/counter", "p").phase == "idle"
        with pytest.raises(FailedPrecondition):             # nothing left to skip
            c.skip("raw/counter", "p")
        st = c.stats()
        assert st["addresses_paused"] == 0 and st["addresses_retrying"] == 0


def test_call_deadline_carries_the_runtimes_text(sandbox):
    fn = sandbox.testfn()
    retry = {"initial_backoff_ms": 100, "max_backoff_ms": 200, "max_attempts": 0}
    rt = sandbox.runtime([endpoint("test/*", fn, retry=retry)])
    with Client(rt.ingress, timeout=scaled(20)) as c:
        with pytest.raises(DeadlineExceeded) as e:
            c.call("test/fail", "t", 1, timeout=1.0)
        assert isinstance(e.value, TimeoutError)
        assert re.match(r"no reply within \d+ ms; the message is durable and will still be "
                        r"processed \(retry with --idempotency-key to apply it once\)$",
                        e.value.details), e.value.details
        assert re.search(r"no reply within \d+ ms", str(e.value))
        # the address explains why
        wait_until(lambda: c.inspect("test/fail", "t").attempts >= 1, timeout=10)
        st = c.inspect("test/fail", "t")
        assert st.phase in ("retrying", "in_flight") and st.max_attempts == 0
        assert "test/fail always fails" in st.last_error
