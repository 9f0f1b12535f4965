"""
The CLI's messaging commands against the real runtime, and the C SDK's
delayed messages, cancellations, egress records and state TTL end to end:

    statemesh send TYPE ID VALUE [--delay MS] [--idempotency-key K]
    statemesh call TYPE ID VALUE [--idempotency-key K]
    statemesh send --stdin            JSON lines over SendStream
    statemesh egress tail NAME [--from N | --earliest | --latest] [--follow] [--json]

The SendStream client's batching, window and error reporting are also checked
against a fake Ingress server written here (the runtime cannot show how the
client packs and paces its messages).
"""

import json
import queue
import re
import struct
import subprocess
import threading
import time
from concurrent import futures

import grpc
import pytest

from harness import (binary, endpoint, free_port, ingress_pb2, ingress_pb2_grpc, run_cli,
                     scaled, wait_until)

pytestmark = pytest.mark.needs("statemesh", "statemeshd", "test/fn/testfn")

EGRESSES = 'egresses = ( { name = "log"; }, { name = "tiny"; retention_records = 2; } );'
TTL_MS = 800


@pytest.fixture
def env(sandbox):
    fn = sandbox.testfn(extra_args=["--ttl-ms", str(TTL_MS)])
    rt = sandbox.runtime([endpoint("test/*", fn)], extra_config=EGRESSES)
    return rt, rt.client()


def cli(rt, *args, input=None, timeout=60):
    return run_cli([str(a) for a in args], address=rt.ingress, input=input, timeout=timeout)


def ok(p):
    assert p.returncode == 0, "exit %d\nstdout: %s\nstderr: %s" % (p.returncode, p.stdout, p.stderr)
    return p


def stored(cl, id_):
    """(typename, hex) that test/store recorded for id_."""
    s = cl.state("test/store", id_)
    return s.get("typename"), s.get("hex")


def summary(stderr):
    m = re.search(r"(\d+) messages in [\d.]+ s \(\d+ msg/s\): (\d+) committed, (\d+) rejected, "
                  r"(\d+) unacknowledged, (\d+) malformed lines skipped", stderr)
    assert m, "no summary line in:\n" + stderr
    return tuple(int(g) for g in m.groups())


# ---- send / call options ------------------------------------------------------


def test_send_delay(env):
    rt, cl = env
    t0 = time.monotonic()
    ok(cli(rt, "send", "test/counter", "d", 5, "--type", "int64", "--delay", 1500))
    # acknowledged (durable) at once, delivered only after the delay
    assert cl.int_state("test/counter", "d") == 0
    time.sleep(0.5)
    assert cl.int_state("test/counter", "d") == 0
    wait_until(lambda: cl.int_state("test/counter", "d") == 5, timeout=10)
    assert time.monotonic() - t0 >= 1.45
    # --delay 0 is an ordinary send
    ok(cli(rt, "send", "test/counter", "d", 1, "--type", "int64", "--delay", 0))
    wait_until(lambda: cl.int_state("test/counter", "d") == 6, timeout=5)


def test_send_idempotency_key(env):
    rt, cl = env
    for _ in range(3):
        ok(cli(rt, "send", "test/counter", "k", 1, "--type", "int64", "--idempotency-key", "K-1"))
    ok(cli(rt, "send", "test/counter", "k", 10, "--type", "int64", "--idempotency-key", "K-2"))
    ok(cli(rt, "call", "test/counter", "k", 0, "--type", "int64"))  # after both were applied
    assert cl.int_state("test/counter", "k") == 11


def test_call_idempotency_key_returns_the_stored_reply(env):
    rt, cl = env
    first = ok(cli(rt, "call", "test/counter", "c", 3, "--type", "int64", "--idempotency-key", "call-1"))
    again = ok(cli(rt, "call", "test/counter", "c", 3, "--type", "int64", "--idempotency-key", "call-1"))
    assert first.stdout.strip() == again.stdout.strip() == "3"
    assert cl.int_state("test/counter", "c") == 3
    p = ok(cli(rt, "call", "test/counter", "c", 3, "--type", "int64"))
    assert p.stdout.strip() == "6"


@pytest.mark.parametrize("args", [
    ["call", "test/counter", "x", "1", "--delay", "5"],              # --delay is send only
    ["send", "test/counter", "x", "1", "--delay", "-1"],
    ["send", "test/counter", "x", "1", "--delay", "31536000001"],     # > 365 days
    ["send", "test/counter", "x", "1", "--delay", "soon"],
    ["send", "test/counter", "x", "1", "--idempotency-key", ""],
    ["send", "test/counter", "x", "1", "--idempotency-key", "k" * 257],
    ["state", "get", "test/counter", "x", "--idempotency-key", "k"],
    ["send", "--stdin", "test/counter", "x", "1"],                   # no positional args
    ["send", "--stdin", "--delay", "5"],                             # per line instead
    ["send", "--stdin", "--idempotency-key", "k"],
    ["send", "--stdin", "--type", "nosuch"],
    ["call", "--stdin"],
    ["send", "test/counter", "x", "1", "--quiet"],
    ["egress"],
    ["egress", "tail"],
    ["egress", "head", "log"],
    ["egress", "tail", "bad name"],
    ["egress", "tail", "log", "--from", "0"],
    ["egress", "tail", "log", "--from", "x"],
    ["egress", "tail", "log", "--from", "3", "--latest"],
    ["egress", "tail", "log", "--earliest", "--latest"],
    ["send", "test/counter", "x", "1", "--follow"],
], ids=lambda a: "-".join(x[:12] for x in a))
def test_usage_errors_exit_2(args):
    p = run_cli(args, address="127.0.0.1:%d" % free_port(), timeout=20)
    assert p.returncode == 2, "exit %d for %r\nstdout: %s\nstderr: %s" % (
        p.returncode, args, p.stdout, p.stderr)
    assert p.stderr.startswith("statemesh: "), p.stderr


# ---- send --stdin ---------------------------------------------------------------


def test_stdin_encodes_every_typename(env):
    rt, cl = env
    lines = [
        {"type": "test/store", "id": "json", "value": {"a": [1, 2], "s": "x y"}},
        {"type": "test/store", "id": "string", "value": "h\u00e9 \"q\"\n", "typename": "string"},
        {"type": "test/store", "id": "int64", "value": -2, "typename": "statemesh/int64"},
        {"type": "test/store", "id": "float64", "value": 2.5, "typename": "float64"},
        {"type": "test/store", "id": "bool", "value": True, "typename": "bool"},
        {"type": "test/store", "id": "bytes", "value": "00ff10", "typename": "bytes"},
        {"type": "test/store", "id": "user", "value": "CAFE", "typename": "acme/blob"},
        {"type": "test/store", "id": "jsonstr", "value": "plain", "typename": "json"},
        {"type": "test/store", "id": "id with spaces \u2603", "value": 1, "typename": "int64",
         "key": "store-1", "delay_ms": 0},
    ]
    text = "\n".join(json.dumps(l) for l in lines)        # no final newline: still read
    text = text.replace('{"a": [1, 2]', '{"a":  [1,2]', 1)  # JSON text is sent as written
    p = ok(cli(rt, "send", "--stdin", input=text))
    assert summary(p.stderr) == (9, 9, 0, 0, 0)
    assert stored(cl, "json") == ("statemesh/json", '{"a":  [1,2], "s": "x y"}'.encode().hex())
    assert stored(cl, "string") == ("statemesh/string", "h\u00e9 \"q\"\n".encode().hex())
    assert stored(cl, "int64") == ("statemesh/int64", struct.pack("<q", -2).hex())
    assert stored(cl, "float64") == ("statemesh/float64", struct.pack("<d", 2.5).hex())
    assert stored(cl, "bool") == ("statemesh/bool", "01")
    assert stored(cl, "bytes") == ("statemesh/bytes", "00ff10")
    assert stored(cl, "user") == ("acme/blob", "cafe")
    assert stored(cl, "jsonstr") == ("statemesh/json", b'"plain"'.hex())
    assert stored(cl, "id with spaces \u2603") == ("statemesh/int64", struct.pack("<q", 1).hex())


def test_stdin_default_typename_from_type_option(env):
    rt, cl = env
    text = '{"type":"test/counter","id":"t","value":4}\n{"type":"test/counter","id":"t","value":5}\n'
    p = ok(cli(rt, "send", "--stdin", "--type", "int64", "--quiet", input=text))
    assert ", acknowledged " not in p.stderr           # --quiet: no progress line
    assert summary(p.stderr)[:2] == (2, 2)
    wait_until(lambda: cl.int_state("test/counter", "t") == 9)


def test_stdin_bulk_keeps_per_address_order(env):
    rt, cl = env
    n, counters = 20000, 20
    lines = []
    for i in range(n):
        lines.append('{"type":"test/counter","id":"b%d","value":%d,"typename":"int64"}' % (i % counters, 1))
        if i % 100 == 0:
            lines.append('{"type":"test/order","id":"o","value":"%d","typename":"string"}' % (i // 100))
    p = ok(cli(rt, "send", "--stdin", input="\n".join(lines) + "\n", timeout=180))
    total = n + n // 100
    assert summary(p.stderr) == (total, total, 0, 0, 0)
    cl.wait_drained(timeout=120)
    assert all(cl.int_state("test/counter", "b%d" % k) == n // counters for k in range(counters))
    assert cl.state("test/order", "o")["seen"] == "".join("%d," % k for k in range(n // 100))


def test_stdin_reports_bad_lines_by_number_and_sends_the_rest(env):
    rt, cl = env
    lines = [
        '{"type":"test/counter","id":"g","value":1,"typename":"int64"}',     # 1 ok
        'not json',                                                          # 2
        '{"type":"test/counter","value":1}',                                 # 3 missing id
        '{"type":"test/counter","id":"g","value":1,"colour":"red"}',         # 4 unknown member
        '{"type":"nosuch/fn","id":"g","value":1}',                           # 5 rejected by the runtime
        '{"type":"test/counter","id":"g","value":1,"typename":"statemesh/nope"}',  # 6
        '{"type":"test/counter","id":"g","value":"x","typename":"int64"}',   # 7 not an int64
        '   ',                                                               # 8 blank: skipped
        '[1,2]',                                                             # 9 not an object
        '{"type":"test/counter","id":"g","value":1,"delay_ms":-5}',          # 10
        '{"type":"test/counter","id":"g","value":1,"key":""}',               # 11 empty key
        '{"type":"test/counter","id":"","value":1}',                         # 12 empty id (client)
        '{"type":"test/counter","id":"g","value":1,"id":"h"}',               # 13 duplicate
        '{"type":"test/counter","id":"g","value":2,"typename":"int64"}',     # 14 ok
    ]
    p = cli(rt, "send", "--stdin", input="\n".join(lines) + "\n")
    assert p.returncode == 1, (p.returncode, p.stderr)
    err = p.stderr
    for lineno, needle in [(2, "not valid JSON"), (3, 'missing "id"'), (4, "unknown member"),
                           (5, "rejected: NOT_FOUND"), (6, "unknown typename"),
                           (7, "must be a 64-bit integer"), (9, "must be a JSON object"),
                           (10, '"delay_ms" must be an integer'), (11, '"key" is empty'),
                           (12, "id is empty"), (13, "appears twice")]:
        assert re.search(r"stdin:%d: .*%s" % (lineno, re.escape(needle)), err), (lineno, needle, err)
    assert "stdin:8:" not in err and "stdin:1:" not in err and "stdin:14:" not in err
    # 3 pushed (lines 1, 5, 14); 1 rejected; 10 malformed
    assert summary(err) == (3, 2, 1, 0, 10)
    wait_until(lambda: cl.int_state("test/counter", "g") == 3)


def test_stdin_key_and_delay_per_line(env):
    rt, cl = env
    lines = ['{"type":"test/counter","id":"kd","value":1,"typename":"int64","key":"same"}'] * 3
    lines.append('{"type":"test/counter","id":"late","value":7,"typename":"int64","delay_ms":1200}')
    t0 = time.monotonic()
    ok(cli(rt, "send", "--stdin", input="\n".join(lines)))
    assert cl.int_state("test/counter", "late") == 0
    wait_until(lambda: cl.int_state("test/counter", "late") == 7, timeout=10)
    assert time.monotonic() - t0 >= 1.15
    assert cl.int_state("test/counter", "kd") == 1


def test_stdin_unreachable_runtime_exit_1():
    p = run_cli(["send", "--stdin"], address="127.0.0.1:%d" % free_port(),
                input='{"type":"test/counter","id":"x","value":1}\n', timeout=60)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "UNAVAILABLE" in p.stderr and "is statemeshd running" in p.stderr
    assert summary(p.stderr) == (1, 0, 0, 1, 0)


# ---- egress tail ----------------------------------------------------------------


def write_egress(rt, egress, *texts, id_="e1"):
    cmd = ";".join("egress %s %s" % (egress, t) for t in texts)
    ok(cli(rt, "call", "test/effects", id_, cmd))


TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def test_egress_tail_text_json_and_positions(env):
    rt, cl = env
    write_egress(rt, "log", "first one", 'with "quotes"')
    write_egress(rt, "log", "third", id_="id two")
    p = ok(cli(rt, "egress", "tail", "log"))
    out = p.stdout.splitlines()
    assert len(out) == 3, p.stdout
    assert re.fullmatch(r'1 %s test/effects e1 "first one"' % TS, out[0]), out[0]
    assert re.fullmatch(r'2 %s test/effects e1 "with \\"quotes\\""' % TS, out[1]), out[1]
    assert re.fullmatch(r'3 %s test/effects "id two" "third"' % TS, out[2]), out[2]

    p = ok(cli(rt, "egress", "tail", "log", "--json", "--from", 2))
    recs = [json.loads(l) for l in p.stdout.splitlines()]
    assert [r["offset"] for r in recs] == [2, 3]
    assert recs[0]["source"] == {"type": "test/effects", "id": "e1"}
    assert recs[0]["typename"] == "statemesh/string" and recs[0]["value"] == 'with "quotes"'
    assert recs[1]["source"]["id"] == "id two"
    assert abs(recs[1]["timestamp_ms"] / 1000 - time.time()) < 600
    assert re.fullmatch(TS, recs[1]["time"])

    assert ok(cli(rt, "egress", "tail", "log", "--earliest")).stdout == "\n".join(out) + "\n"
    assert ok(cli(rt, "egress", "tail", "log", "--latest")).stdout == ""
    assert ok(cli(rt, "egress", "tail", "log", "--from", 4)).stdout == ""


def test_egress_tail_follow_sees_new_records(env):
    rt, cl = env
    write_egress(rt, "log", "old")
    proc = subprocess.Popen([str(binary("statemesh")), "--address", rt.ingress, "egress", "tail",
                             "log", "--latest", "--follow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True).start()
        # --latest: the old record is not shown; records committed from now on are
        deadline = time.monotonic() + scaled(20)
        got = None
        while got is None and time.monotonic() < deadline:
            write_egress(rt, "log", "live")
            try:
                got = lines.get(timeout=1)
            except queue.Empty:
                pass
        assert got is not None, "no record from --follow"
        assert got.split()[0] != "1" and got.rstrip().endswith('"live"'), got
        assert proc.poll() is None          # still following
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_egress_tail_errors(env):
    rt, cl = env
    p = cli(rt, "egress", "tail", "nosuch")
    assert p.returncode == 1
    assert "NOT_FOUND: no egress named 'nosuch'" in p.stderr, p.stderr
    write_egress(rt, "tiny", "a", "b", "c", "d")

    def trimmed():
        p = cli(rt, "egress", "tail", "tiny", "--from", 1)
        return p if p.returncode == 1 else None
    p = wait_until(trimmed, timeout=10, message="offset 1 of 'tiny' trimmed")
    assert "OUT_OF_RANGE" in p.stderr and "no longer retained" in p.stderr, p.stderr
    out = ok(cli(rt, "egress", "tail", "tiny")).stdout.splitlines()
    assert out and out[-1].endswith('"d"') and not out[0].startswith("1 "), out


def test_egress_tail_unreachable_exit_1():
    p = run_cli(["egress", "tail", "log"], address="127.0.0.1:%d" % free_port(), timeout=60)
    assert p.returncode == 1 and "UNAVAILABLE" in p.stderr, (p.returncode, p.stderr)


# ---- the C SDK's effects through the runtime --------------------------------------


def test_sdk_delayed_messages_and_cancellation(env):
    rt, cl = env
    ok(cli(rt, "call", "test/effects", "x", "after 300 test/counter d1 t1"))
    # cancelled in the same batch: never sent
    ok(cli(rt, "call", "test/effects", "x", "after 300 test/counter d2 t2;cancel t2"))
    # cancelled by a later batch of the same address, before it fires
    ok(cli(rt, "call", "test/effects", "x", "after 2500 test/counter d3 t3"))
    ok(cli(rt, "call", "test/effects", "x", "cancel t3"))
    # the same token from another address is another token
    ok(cli(rt, "call", "test/effects", "y", "after 400 test/counter d4 t3"))
    wait_until(lambda: cl.int_state("test/counter", "d1") == 1, timeout=10)
    wait_until(lambda: cl.int_state("test/counter", "d4") == 1, timeout=10)
    time.sleep(scaled(3.0))
    assert cl.int_state("test/counter", "d2") == 0
    assert cl.int_state("test/counter", "d3") == 0
    assert cl.int_state("test/counter", "d1") == 1


def test_sdk_failed_batch_discards_effects(env):
    rt, cl = env
    p = cli(rt, "call", "test/effects", "f", "after 10 test/counter f1;egress log nope;fail",
            "--timeout", 1500)
    assert p.returncode == 1 and "DEADLINE_EXCEEDED" in p.stderr, (p.returncode, p.stderr)
    time.sleep(scaled(1.0))
    assert cl.int_state("test/counter", "f1") == 0
    assert ok(cli(rt, "egress", "tail", "log")).stdout == ""


def test_sdk_state_ttl(env):
    rt, cl = env
    assert ok(cli(rt, "call", "test/ttl", "a", "set")).stdout.strip() == "w=x,i=x"
    assert ok(cli(rt, "call", "test/ttl", "a", "get")).stdout.strip() == "w=x,i=x"
    time.sleep((TTL_MS + 700) / 1000)
    assert ok(cli(rt, "call", "test/ttl", "a", "get")).stdout.strip() == "w=-,i=-"
    # invoking keeps expire-after-invoke state alive, not expire-after-write state
    ok(cli(rt, "call", "test/ttl", "b", "set"))
    t0 = time.monotonic()
    while time.monotonic() - t0 < (TTL_MS + 700) / 1000:
        last = ok(cli(rt, "call", "test/ttl", "b", "touch")).stdout.strip()
        time.sleep(TTL_MS / 4000)
    assert last == "w=-,i=x", last


# ---- the SendStream client against a fake Ingress ----------------------------------


class FakeIngress(ingress_pb2_grpc.IngressServicer):
    """Records every SendStream request; acknowledges only when the client has
    been quiet for `idle` seconds (so a client that respects its window must
    stall at exactly `window` unacknowledged messages), and rejects `reject`."""

    def __init__(self, idle=0.3, reject=()):
        self.idle = idle
        self.reject = set(reject)
        self.requests = []          # list of lists of (seq, type, id, typename, value, key, delay)
        self.max_unacked = 0
        self.half_closed = False

    def SendStream(self, request_iterator, context):
        q = queue.Queue()

        def reader():
            try:
                for req in request_iterator:
                    q.put(req)
            finally:
                q.put(None)
        threading.Thread(target=reader, daemon=True).start()
        received = acked = 0
        errors = []
        while True:
            try:
                req = q.get(timeout=self.idle)
            except queue.Empty:
                req = False
            if req is None or req is False:
                if received > acked:
                    yield ingress_pb2.SendStreamResponse(committed_through=received, errors=errors)
                    acked, errors = received, []
                if req is None:
                    self.half_closed = True
                    return
                continue
            batch = []
            for m in req.messages:
                assert m.seq == received + 1, (m.seq, received)
                received = m.seq
                batch.append((m.seq, m.target.type, m.target.id, m.argument.typename,
                              m.argument.value, m.idempotency_key, m.delay_ms))
                if m.seq in self.reject:
                    errors.append(ingress_pb2.StreamError(seq=m.seq, code=5, message="fake rejection"))
            self.requests.append(batch)
            self.max_unacked = max(self.max_unacked, received - acked)


@pytest.fixture
def fake_ingress():
    def start(**kw):
        svc = FakeIngress(**kw)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                             options=[("grpc.max_receive_message_length", 64 << 20)])
        ingress_pb2_grpc.add_IngressServicer_to_server(svc, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        started.append(server)
        return svc, "127.0.0.1:%d" % port
    started = []
    yield start
    for s in started:
        s.stop(0)


@pytest.mark.time_limit(240)
def test_stream_client_batches_window_and_errors(fake_ingress):
    svc, addr = fake_ingress(idle=0.3, reject={5, 70001})
    n = 70010
    text = "".join('{"type":"f/n","id":"i%d","value":%d,"typename":"int64"%s}\n'
                   % (i, i, ',"key":"k%d"' % i if i % 2 else "") for i in range(n))
    p = run_cli(["send", "--stdin"], address=addr, input=text, timeout=180)
    assert p.returncode == 1, (p.returncode, p.stderr)     # two rejections
    assert summary(p.stderr) == (n, n - 2, 2, 0, 0)
    assert "stdin:5: rejected: NOT_FOUND: fake rejection" in p.stderr, p.stderr
    assert "stdin:70001: rejected: NOT_FOUND: fake rejection" in p.stderr, p.stderr
    assert svc.half_closed
    msgs = [m for batch in svc.requests for m in batch]
    assert [m[0] for m in msgs] == list(range(1, n + 1))
    assert msgs[0][1:] == ("f/n", "i0", "statemesh/int64", struct.pack("<q", 0), "", 0)
    assert msgs[7][5] == "k7" and msgs[8][5] == ""
    # many messages per stream message, never more than 256
    assert max(len(b) for b in svc.requests) == 256
    assert len(svc.requests) < n / 100
    # the window (65536) bounded the unacknowledged messages, and was used fully
    assert svc.max_unacked == 65536, svc.max_unacked


def test_stream_client_flushes_when_input_pauses(fake_ingress):
    """A slow producer's messages are sent (and acknowledged) without waiting
    for a full batch or the end of input."""
    svc, addr = fake_ingress(idle=0.05)
    proc = subprocess.Popen([str(binary("statemesh")), "--address", addr, "send", "--stdin"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        proc.stdin.write('{"type":"f/n","id":"a","value":1}\n')
        proc.stdin.flush()
        wait_until(lambda: len(svc.requests) == 1, timeout=10, message="first message sent")
        proc.stdin.write('{"type":"f/n","id":"b","value":2}\n')
        proc.stdin.flush()
        wait_until(lambda: len(svc.requests) == 2, timeout=10, message="second message sent")
        proc.stdin.close()
        assert proc.wait(timeout=scaled(20)) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [m[2] for b in svc.requests for m in b] == ["a", "b"]
