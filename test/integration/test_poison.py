"""
A bad message holds up nobody else (DESIGN guarantee 7), against the real
runtime and real function servers:

  - a poison message among good ones in one batch: the good ones are applied
    exactly once, the poison alone is retried and dead-lettered (isolation);
  - retry.on_exhausted = "pause": the address stops at the poison, others go
    on; inspect / stuck show it; resume (after a "fix") and skip continue it;
    a pause survives kill -9;
  - kill -9 while a poison message is being isolated: exact counts after;
  - answers encoded with explicit default values are accepted; an answer
    that is not valid UTF-8 fails only its own batch, not its neighbours;
  - non-UTF-8 strings at the ingress: INVALID_ARGUMENT, nothing stored;
  - a Call that times out says what happened, and the CLI adds the reason.

poison_fn.py (raw protocol, explicit defaults) serves raw/counter and
raw/badutf8; testfn serves test/counter (int64 only) and test/fail.
"""

import json
import re
import struct
import sys
import time

import grpc
import pytest

from harness import REPO, endpoint, int64, run_cli, wait_until

sys.path.insert(0, str(REPO / "sdk-python"))

pytestmark = pytest.mark.needs("statemesh", "statemeshd", "test/fn/testfn")

FAST = {"initial_backoff_ms": 20, "max_backoff_ms": 100, "max_attempts": 4}


def cli(rt, *args, timeout=30):
    return run_cli([str(a) for a in args], address=rt.ingress, timeout=timeout)


def cli_ok(rt, *args):
    p = cli(rt, *args)
    assert p.returncode == 0, "exit %d\nstdout: %s\nstderr: %s" % (p.returncode, p.stdout, p.stderr)
    return p


def inspect(rt, type_, id_):
    return json.loads(cli_ok(rt, "inspect", type_, id_, "--json").stdout)


def poison_server(sandbox, fix_file=None, start=True):
    args = ["--fix-file", fix_file] if fix_file else []
    return sandbox.python_server("poison_fn.py", args, name="poisonfn", start=start)


def batches(fn, type_, id_):
    """[(messages, ok)] of the batches poison_fn logged for one address."""
    out = []
    for line in fn.log_lines("event=batch type=%s id=%s " % (type_, id_)):
        kv = dict(w.split("=", 1) for w in line.split() if "=" in w)
        out.append((int(kv["messages"]), kv["ok"] == "1"))
    return out


def send_poison_sequence(c, type_, id_):
    """int64 1, 2, 3, the string "poison", then int64 4..10 (good sum 55)."""
    for k in (1, 2, 3):
        c.send(type_, id_, k)
    c.send(type_, id_, "poison")
    for k in range(4, 11):
        c.send(type_, id_, k)


def test_poison_in_a_batch_is_isolated(sandbox):
    """The issue's scenario: 1,2,3, a string, 4..10 queued before the function
    server is up, so they go out as one batch: counter 55, one dead letter."""
    fn = sandbox.testfn(start=False)
    rt = sandbox.runtime([endpoint("test/*", fn, retry=FAST)])
    c = rt.client()
    send_poison_sequence(c, "test/counter", "a")
    c.send("test/counter", "b", 7)              # another address, same batch frame
    fn.start()
    wait_until(lambda: c.stats()["dead_letters"] == 1 and c.queued() == 0, timeout=30,
               message="the poison dead-lettered and the rest applied")
    assert c.int_state("test/counter", "a") == 55
    assert c.int_state("test/counter", "b") == 7
    dl = json.loads(cli_ok(rt, "deadletters", "list", "--json").stdout.splitlines()[0])
    assert dl["target"] == {"type": "test/counter", "id": "a"}
    assert dl["value"] == "poison"
    assert dl["attempts"] == 4
    assert "wants statemesh/int64, got statemesh/string" in dl["error"]
    assert rt.log_lines("event=batch.isolate type=test/counter id=a messages=11")
    st = c.stats()
    assert st["dead_lettered"] == 1 and st["addresses_retrying"] == 0
    assert st["messages_delivered"] == 11       # 10 good + b; the poison was not delivered


def test_isolation_applies_each_good_message_once(sandbox):
    """poison_fn counts how often each batch ran: after the failed batch of 11
    the messages go one at a time; the 3 before the poison are applied once."""
    fn = poison_server(sandbox, start=False)
    rt = sandbox.runtime([endpoint("raw/*", fn, retry=FAST)])
    c = rt.client()
    send_poison_sequence(c, "raw/counter", "x")
    fn.start()
    wait_until(lambda: c.stats()["dead_letters"] == 1 and c.queued() == 0, timeout=30,
               message="isolation done")
    assert c.int_state("raw/counter", "x") == 55
    b = batches(fn, "raw/counter", "x")
    assert b[0] == (11, False), b
    # one at a time: 1, 2, 3 succeed; the poison fails 4 times; then 4..10
    assert b[1:4] == [(1, True)] * 3, b
    assert b[4:8] == [(1, False)] * 4, b
    assert all(ok for _, ok in b[8:]) and sum(n for n, _ in b[8:]) == 7, b


def test_explicit_default_fields_are_accepted(sandbox):
    """poison_fn writes kind = MODIFY (0) and invocation_index = 0 on the wire,
    as protobufjs does: the answers are applied, not refused."""
    fn = poison_server(sandbox)
    rt = sandbox.runtime([endpoint("raw/*", fn, retry=FAST)])
    c = rt.client()
    assert c.call("raw/counter", "d", 5) == 5
    assert c.call("raw/counter", "d", 6) == 11
    st = c.stats()
    assert st["invalid_results"] == 0 and st["batches_failed"] == 0


def test_bad_answer_fails_only_its_own_batch(sandbox):
    """raw/badutf8 answers with a typename that is not UTF-8, in the same
    stream message as raw/counter's answer: the counter is applied, the bad
    one is refused (invalid result) and ends alone in dead letters."""
    fn = poison_server(sandbox, start=False)
    rt = sandbox.runtime([endpoint("raw/*", fn, retry=FAST)])
    c = rt.client()
    c.send("raw/badutf8", "z", 1)
    c.send("raw/counter", "n", 3)
    fn.start()
    wait_until(lambda: c.stats()["dead_letters"] == 1 and c.queued() == 0, timeout=30,
               message="bad answer dead-lettered, neighbour applied")
    assert c.int_state("raw/counter", "n") == 3
    dl = json.loads(cli_ok(rt, "deadletters", "list", "--json").stdout.splitlines()[0])
    assert dl["target"]["type"] == "raw/badutf8"
    assert "not valid UTF-8" in dl["error"], dl
    assert c.stats()["invalid_results"] >= 4


def test_non_utf8_strings_refused_at_the_ingress(rt_env):
    runtime, _, c = rt_env
    before = c.stats()["messages_received"]
    req = c.send_request("test/counter", "u", int64(1))
    # Hand-made: a TypedValue typename of bytes ff fe (not UTF-8).
    arg = b"\x0a\x02\xff\xfe" + b"\x12\x08" + struct.pack("<q", 1)
    target = req.target.SerializeToString()
    raw = b"\x0a" + bytes([len(target)]) + target + b"\x12" + bytes([len(arg)]) + arg
    send = c.channel.unary_unary("/statemesh.v1.Ingress/Send", request_serializer=None,
                                 response_deserializer=None)
    with pytest.raises(grpc.RpcError) as e:
        send(raw, timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "argument.typename is not valid UTF-8" in e.value.details()
    # idempotency key (field 3) not UTF-8
    ok_arg = int64(1).SerializeToString()
    raw = (b"\x0a" + bytes([len(target)]) + target + b"\x12" + bytes([len(ok_arg)]) + ok_arg +
           b"\x1a\x03k\xc3\x28")
    with pytest.raises(grpc.RpcError) as e:
        send(raw, timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "idempotency_key is not valid UTF-8" in e.value.details()
    # a NUL inside the typename
    arg = b"\x0a\x03a\x00b" + b"\x12\x08" + struct.pack("<q", 1)
    raw = b"\x0a" + bytes([len(target)]) + target + b"\x12" + bytes([len(arg)]) + arg
    with pytest.raises(grpc.RpcError) as e:
        send(raw, timeout=5)
    assert "argument.typename contains a NUL byte" in e.value.details()
    assert c.stats()["messages_received"] == before
    assert c.int_state("test/counter", "u") == 0
    c.send("test/counter", "u", 2)                  # the ingress still works
    wait_until(lambda: c.int_state("test/counter", "u") == 2)


def test_non_utf8_strings_refused_by_the_dead_letter_calls(rt_env):
    _, _, c = rt_env
    for method, raw in (("ListDeadLetters", b"\x0a\x02\xff\xfe"),          # type
                        ("ReplayDeadLetters", b"\x10\x01\x1a\x02\xc3\x28"),  # all, type
                        ("DropDeadLetters", b"\x10\x01\x1a\x03a\x00b")):     # NUL in type
        call = c.channel.unary_unary("/statemesh.v1.Admin/" + method, request_serializer=None,
                                     response_deserializer=None)
        with pytest.raises(grpc.RpcError) as e:
            call(raw, timeout=5)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        assert "invalid request: type " in e.value.details(), (method, e.value.details())


PAUSE = {"initial_backoff_ms": 20, "max_backoff_ms": 50, "max_attempts": 3,
         "on_exhausted": "pause"}


def test_pause_inspect_stuck_resume(sandbox):
    fix = sandbox.path("fixed")
    fn = poison_server(sandbox, fix_file=fix)
    rt = sandbox.runtime([endpoint("raw/*", fn, retry=PAUSE)])
    c = rt.client()
    c.send("raw/counter", "p", 1)
    c.send("raw/counter", "p", "poison")
    c.send("raw/counter", "p", 2)
    c.send("raw/counter", "q", 5)                   # another address goes on
    wait_until(lambda: c.stats()["addresses_paused"] == 1, timeout=20, message="paused")
    wait_until(lambda: c.int_state("raw/counter", "q") == 5)
    assert c.int_state("raw/counter", "p") == 1     # the message after the poison waits
    st = inspect(rt, "raw/counter", "p")
    assert st["phase"] == "paused" and st["attempts"] == 3 and st["max_attempts"] == 3
    assert st["queued_messages"] == 2
    assert st["head"]["value"] == "poison" and st["head"]["caller"] is None
    assert "wants statemesh/int64, got statemesh/string" in st["last_error"]
    text = cli_ok(rt, "inspect", "raw/counter", "p").stdout
    assert "phase        paused" in text and "attempts     3 of 3" in text, text
    assert 'head         "poison" (from the ingress)' in text, text
    assert "wants statemesh/int64" in text
    stuck = cli_ok(rt, "stuck").stdout.splitlines()
    assert stuck[-1] == "# retrying=0 paused=1", stuck
    assert stuck[0].startswith("raw/counter p paused 3/3 queued=2 "), stuck
    assert cli_ok(rt, "stuck", "--type", "test/none").stdout.splitlines() == \
        ["# retrying=0 paused=1"]
    assert c.stats()["dead_letters"] == 0
    time.sleep(0.3)                                  # paused means no more attempts
    assert inspect(rt, "raw/counter", "p")["attempts"] == 3
    # kill -9: the pause is durable
    rt.kill9()
    rt.start()
    c = rt.client()
    st = inspect(rt, "raw/counter", "p")
    assert st["phase"] == "paused" and st["queued_messages"] == 2, st
    assert c.stats()["addresses_paused"] == 1
    assert rt.log_lines("event=recovery.paused type=raw/counter id=p")
    # a resume of an address that is not paused is refused, clearly
    p = cli(rt, "resume", "raw/counter", "q")
    assert p.returncode == 1 and "FAILED_PRECONDITION" in p.stderr and "no queued" in p.stderr
    # deploy the fix, resume: the poison now counts 0, then 2
    fix.write_text("x")
    assert cli_ok(rt, "resume", "raw/counter", "p").stdout == "resumed\n"
    wait_until(lambda: c.queued() == 0, timeout=20, message="resumed address drained")
    assert c.int_state("raw/counter", "p") == 3
    assert c.stats()["addresses_paused"] == 0 and c.stats()["dead_letters"] == 0
    assert inspect(rt, "raw/counter", "p")["phase"] == "idle"
    rt.kill9()                                       # the resume was durable too
    rt.start()
    c = rt.client()
    assert c.stats()["addresses_paused"] == 0 and c.int_state("raw/counter", "p") == 3


def test_skip_a_paused_address(sandbox):
    fn = poison_server(sandbox)
    rt = sandbox.runtime([endpoint("raw/*", fn, retry=PAUSE)])
    c = rt.client()
    c.send("raw/counter", "s", 1)
    c.send("raw/counter", "s", "poison")
    c.send("raw/counter", "s", 2)
    wait_until(lambda: c.stats()["addresses_paused"] == 1, timeout=20, message="paused")
    p = cli(rt, "skip", "raw/counter", "nobody")
    assert p.returncode == 1 and "FAILED_PRECONDITION" in p.stderr
    out = cli_ok(rt, "skip", "raw/counter", "s", "--json").stdout
    dl_id = json.loads(out)["dead_letter_id"]
    wait_until(lambda: c.queued() == 0, timeout=20, message="skipped address drained")
    assert c.int_state("raw/counter", "s") == 3
    dls = [json.loads(l) for l in cli_ok(rt, "deadletters", "list", "--json").stdout.splitlines()]
    assert dls[0]["id"] == dl_id and dls[0]["value"] == "poison"
    assert dls[0]["error"].startswith("skipped by an operator after 3 failed attempts; last error: ")
    assert dls[-1] == {"total": 1}
    st = c.stats()
    assert st["addresses_paused"] == 0 and st["addresses_retrying"] == 0


def test_skip_while_retrying(sandbox):
    """A retrying (not paused) address can be skipped between attempts."""
    fn = sandbox.testfn()
    retry = {"initial_backoff_ms": 1000, "max_backoff_ms": 1000, "max_attempts": 0}
    rt = sandbox.runtime([endpoint("test/*", fn, retry=retry)])
    c = rt.client()
    c.send("test/counter", "r", "poison")
    c.send("test/counter", "r", 4)
    wait_until(lambda: inspect(rt, "test/counter", "r")["phase"] == "retrying", timeout=10)
    st = inspect(rt, "test/counter", "r")
    assert st["max_attempts"] == 0 and st["next_retry_at_ms"] > 0
    assert "forever" in cli_ok(rt, "inspect", "test/counter", "r").stdout
    stuck = cli_ok(rt, "stuck", "--json").stdout.splitlines()
    assert json.loads(stuck[-1]) == {"retrying": 1, "paused": 0}
    assert json.loads(stuck[0])["phase"] == "retrying"
    # the head may be in flight at this instant: retry the skip a few times
    deadline = time.time() + 10
    while True:
        p = cli(rt, "skip", "test/counter", "r")
        if p.returncode == 0 or time.time() > deadline:
            break
        assert "FAILED_PRECONDITION" in p.stderr
        time.sleep(0.05)
    assert p.returncode == 0, p.stderr
    wait_until(lambda: c.int_state("test/counter", "r") == 4, timeout=10)
    assert c.stats()["dead_letters"] == 1 and c.stats()["addresses_retrying"] == 0


def test_kill9_while_isolating(sandbox):
    """Many addresses, each with a poison in the middle of its batch; the
    runtime is killed while it isolates them and restarted. Afterwards every
    good message is applied once and each poison is one dead letter."""
    fn = sandbox.testfn(start=False)
    retry = {"initial_backoff_ms": 150, "max_backoff_ms": 300, "max_attempts": 4}
    rt = sandbox.runtime([endpoint("test/*", fn, retry=retry)])
    c = rt.client()
    ids = ["k%d" % i for i in range(20)]
    for i in ids:
        send_poison_sequence(c, "test/counter", i)
    fn.start()
    wait_until(lambda: c.stats()["addresses_retrying"] >= 5, timeout=20, message="isolating")
    rt.kill9()
    rt.start()
    c = rt.client()
    time.sleep(0.5)
    rt.kill9()                                       # and once more, mid-way
    rt.start()
    c = rt.client()
    wait_until(lambda: c.stats()["dead_letters"] == len(ids) and c.queued() == 0, timeout=60,
               message="all poisons dead-lettered")
    for i in ids:
        assert c.int_state("test/counter", i) == 55, i
    dls = [json.loads(l) for l in cli_ok(rt, "deadletters", "list", "--json",
                                         "--limit", "100").stdout.splitlines()[:-1]]
    assert sorted(d["target"]["id"] for d in dls) == sorted(ids)
    assert all(d["value"] == "poison" for d in dls)


def test_call_deadline_says_what_happened(sandbox):
    fn = sandbox.testfn()
    retry = {"initial_backoff_ms": 100, "max_backoff_ms": 200, "max_attempts": 0}
    rt = sandbox.runtime([endpoint("test/*", fn, retry=retry)])
    c = rt.client()
    with pytest.raises(grpc.RpcError) as e:
        c.call("test/fail", "t", 1, timeout=1.0)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert re.match(r"no reply within \d+ ms; the message is durable and will still be "
                    r"processed \(retry with --idempotency-key to apply it once\)$",
                    e.value.details()), e.value.details()
    p = cli(rt, "call", "test/fail", "t", "x", "--timeout", "1500")
    assert p.returncode == 1
    assert re.search(r"DEADLINE_EXCEEDED: no reply within 1[0-9]{3} ms; the message is durable",
                     p.stderr), p.stderr
    assert "test/fail t is retrying (attempt" in p.stderr, p.stderr
    assert "last error: function failed: test/fail always fails" in p.stderr, p.stderr


def test_default_retry_is_finite(sandbox):
    """Without a retry group a failing message is not retried forever."""
    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)])
    c = rt.client()
    c.send("test/fail", "f", 1)
    wait_until(lambda: inspect(rt, "test/fail", "f")["attempts"] >= 1, timeout=10)
    assert inspect(rt, "test/fail", "f")["max_attempts"] == 13
