"""
Tracing (docs/tracing.md): W3C trace context through the ingress, the
invocation protocol and the SDKs, and spans exported over OTLP/gRPC.

A small OTLP receiver runs in this process: grpcio serving
/opentelemetry.proto.collector.trace.v1.TraceService/Export, decoding with
messages that protoc generates here from our own protocol/otlp/trace.proto.
The functions are the C testfn (test/forward, test/trace, test/fail) and the
Python test_python_fn.py (py/trace).
"""

import json
import re
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc
import pytest

from harness import (HERE, PYTHON, REPO, binary, endpoint, python_env, string, wait_until)

PYFN = HERE / "test_python_fn.py"
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TID = "4bf92f3577b34da6a3ce929d0e0e4736"
SID = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def otlp_pb2(tmp_path_factory):
    """Python messages for protocol/otlp/trace.proto, generated now."""
    out = tmp_path_factory.mktemp("otlp-gen")
    subprocess.run(["protoc", "-I", str(REPO / "protocol"), "--python_out", str(out),
                    str(REPO / "protocol" / "otlp" / "trace.proto")], check=True)
    sys.path.insert(0, str(out))
    try:
        from otlp import trace_pb2
    finally:
        sys.path.remove(str(out))
    return trace_pb2


class Receiver:
    """An OTLP/gRPC trace collector on 127.0.0.1: keeps every span."""

    def __init__(self, pb2, creds=None):
        self.pb2 = pb2
        self.spans = []
        self.requests = 0
        self.lock = threading.Lock()
        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(
                self._export, request_deserializer=pb2.ExportTraceServiceRequest.FromString,
                response_serializer=pb2.ExportTraceServiceResponse.SerializeToString)})
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers((handler,))
        if creds is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        self.server.start()

    def _export(self, req, ctx):
        with self.lock:
            self.requests += 1
            for rs in req.resource_spans:
                attrs = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
                assert attrs.get("service.name") == "statemeshd"
                for ss in rs.scope_spans:
                    self.spans.extend(ss.spans)
        return self.pb2.ExportTraceServiceResponse()

    def trace(self, trace_id_hex):
        with self.lock:
            return [s for s in self.spans if s.trace_id.hex() == trace_id_hex]

    def stop(self):
        self.server.stop(0)


@pytest.fixture
def receiver(otlp_pb2):
    r = Receiver(otlp_pb2)
    yield r
    r.stop()


def start(sandbox, require, otlp, ratio=1.0, python=False, **kw):
    require("statemeshd", "test/fn/testfn")
    eps = [endpoint("test/*", sandbox.testfn())]
    if python:
        py = sandbox.server([PYTHON, str(PYFN), "--mode", "sync"], name="pyfn", env=python_env())
        eps.append(endpoint("py/*", py))
    rt = sandbox.runtime(endpoints=eps, runtime_settings={
        "tracing": {"otlp": otlp, "sample_ratio": ratio}}, **kw)
    return rt, rt.client()


def call(cl, type_, id_, value, traceparent=None, tracestate=None):
    """A Call with W3C metadata; returns the decoded reply."""
    from harness import decode, ingress_pb2, types_pb2
    req = ingress_pb2.CallRequest()
    req.target.CopyFrom(types_pb2.Address(type=type_, id=id_))
    req.argument.CopyFrom(value)
    md = []
    if traceparent is not None:
        md.append(("traceparent", traceparent))
    if tracestate is not None:
        md.append(("tracestate", tracestate))
    return decode(cl.ingress.Call(req, metadata=md, timeout=20, wait_for_ready=True).reply)


def by_name(spans, name):
    return [s for s in spans if s.name == name]


def attr(span, key):
    for kv in span.attributes:
        if kv.key == key:
            return kv.value.string_value or kv.value.int_value
    return None


def test_call_across_c_and_python_is_one_tree(sandbox, require, receiver):
    """Call C test/forward -> Python py/trace, which replies: the client's
    traceparent is honoured, both SDKs see the trace id, and the spans form
    one tree: ingress -> (queue, invoke A -> (checkpoint, queue, invoke B ->
    checkpoint))."""
    rt, cl = start(sandbox, require, "127.0.0.1:%d" % receiver.port, python=True)
    tp = "00-%s-%s-01" % (TID, SID)
    reply = call(cl, "test/forward", "a", string("py/trace k"), traceparent=tp,
                 tracestate="vendor=x")
    reply = json.loads(reply) if isinstance(reply, (str, bytes)) else reply
    assert reply["trace_id"] == TID
    assert re.fullmatch(r"00-%s-[0-9a-f]{16}-01" % TID, reply["traceparent"])

    def complete():
        sp = receiver.trace(TID)
        return len(by_name(sp, "statemesh.checkpoint")) >= 2 and \
            len(by_name(sp, "statemesh.ingress/Call")) == 1 and sp
    spans = wait_until(complete, timeout=20)
    ingress, = by_name(spans, "statemesh.ingress/Call")
    assert ingress.parent_span_id.hex() == SID            # child of the client's span
    assert ingress.kind == 2                               # SERVER
    assert attr(ingress, "statemesh.address") == "test/forward/a"
    invokes = {attr(s, "statemesh.address"): s for s in by_name(spans, "statemesh.invoke")}
    a, b = invokes["test/forward/a"], invokes["py/trace/k"]
    assert a.parent_span_id == ingress.span_id
    assert b.parent_span_id == a.span_id                   # B's message came from A's invocation
    assert reply["traceparent"].split("-")[2] == b.span_id.hex()  # the SDK saw B's span
    queues = {attr(s, "statemesh.address"): s for s in by_name(spans, "statemesh.queue")}
    assert queues["test/forward/a"].parent_span_id == ingress.span_id
    assert queues["py/trace/k"].parent_span_id == a.span_id
    ckpt_parents = {s.parent_span_id for s in by_name(spans, "statemesh.checkpoint")}
    assert {a.span_id, b.span_id} <= ckpt_parents
    ids = {s.span_id for s in spans}
    assert len(ids) == len(spans)                          # span ids are unique
    for s in spans:
        assert s.start_time_unix_nano <= s.end_time_unix_nano
        assert s.parent_span_id in ids or s is ingress     # one tree, rooted at the ingress
    assert wait_until(lambda: cl.stats()["spans_exported"] >= len(spans), timeout=10)
    assert cl.stats()["spans_dropped"] == 0


def test_malformed_or_missing_traceparent_starts_a_new_trace(sandbox, require, receiver):
    rt, cl = start(sandbox, require, "127.0.0.1:%d" % receiver.port)
    seen = set()
    for bad in [None, "garbage", "00-%s-%s-01x" % (TID, SID), "00-%s-%s-01" % ("0" * 32, SID),
                "00-%s-%s-01" % (TID.upper(), SID), "ff-%s-%s-01" % (TID, SID),
                "00-%s-%s-01" % (TID, "0" * 16)]:
        tid = call(cl, "test/trace", "x", string(""), traceparent=bad)   # C: sm_ctx_trace_id
        assert re.fullmatch(r"[0-9a-f]{32}", tid) and tid != TID and tid not in seen, bad
        seen.add(tid)
        spans = wait_until(lambda: by_name(receiver.trace(tid), "statemesh.ingress/Call"),
                           timeout=20)
        assert spans[0].parent_span_id == b""             # a root: the header was ignored
    # A future version with extra fields is accepted (W3C), its flags honoured.
    tid = call(cl, "test/trace", "x", string(""), traceparent="01-%s-%s-01-extra" % (TID, SID))
    assert tid == TID


def test_trace_id_in_log_lines_of_a_traced_message(sandbox, require, receiver):
    rt, cl = start(sandbox, require, "127.0.0.1:%d" % receiver.port)
    from harness import ingress_pb2, types_pb2
    req = ingress_pb2.SendRequest()
    req.target.CopyFrom(types_pb2.Address(type="test/fail", id="f"))
    req.argument.CopyFrom(string("x"))
    cl.ingress.Send(req, metadata=[("traceparent", "00-%s-%s-01" % (TID, SID))], timeout=20)
    wait_until(lambda: "trace_id=%s" % TID in rt.log(), timeout=20)
    line = [ln for ln in rt.log().splitlines() if "event=message.retry" in ln][0]
    assert "trace_id=%s" % TID in line
    # The failed invocation's span carries the error.
    inv = wait_until(lambda: by_name(receiver.trace(TID), "statemesh.invoke"), timeout=20)
    assert inv[0].status.code == 2 and "always fails" in inv[0].status.message


def test_delayed_messages_and_egress_records_carry_the_trace(sandbox, require, receiver):
    """test/effects sends a delayed message and an egress record: the
    delayed message, when it fires, is invoked in the same trace as a child
    of the sender's invocation, and the egress record's traceparent names
    that invocation span."""
    from harness import ingress_pb2
    rt, cl = start(sandbox, require, "127.0.0.1:%d" % receiver.port,
                   extra_config='egresses = ( { name = "ev"; } );')
    tp = "00-%s-%s-01" % (TID, SID)
    assert call(cl, "test/effects", "e", string("after 200 test/trace d;egress ev hi"),
                traceparent=tp) == "ok"

    def both():
        inv = {attr(s, "statemesh.address"): s for s in by_name(receiver.trace(TID),
                                                                 "statemesh.invoke")}
        return inv if {"test/effects/e", "test/trace/d"} <= set(inv) else None
    inv = wait_until(both, timeout=20)
    assert inv["test/trace/d"].parent_span_id == inv["test/effects/e"].span_id
    req = ingress_pb2.SubscribeRequest(egress="ev", from_offset=1)
    recs = [r for resp in cl.ingress.Subscribe(req, timeout=20) for r in resp.records]
    assert recs[0].traceparent == "00-%s-%s-01" % (TID, inv["test/effects/e"].span_id.hex())


def test_trace_context_survives_a_restart(sandbox, require, receiver):
    """A queued message keeps its context in the store: with the function
    server down, Send, restart the runtime, start the server: the message
    is invoked in the client's trace."""
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn(start=False)
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)], runtime_settings={
        "tracing": {"otlp": "127.0.0.1:%d" % receiver.port, "sample_ratio": 1.0}})
    cl = rt.client()
    from harness import ingress_pb2, types_pb2
    req = ingress_pb2.SendRequest()
    req.target.CopyFrom(types_pb2.Address(type="test/counter", id="r"))
    from harness import int64
    req.argument.CopyFrom(int64(5))
    cl.ingress.Send(req, metadata=[("traceparent", "00-%s-%s-01" % (TID, SID))], timeout=20)
    rt.stop()
    rt.start()
    fn.start()
    inv = wait_until(lambda: by_name(receiver.trace(TID), "statemesh.invoke"), timeout=30)
    assert attr(inv[0], "statemesh.address") == "test/counter/r"
    assert inv[0].parent_span_id in {s.span_id for s in by_name(receiver.trace(TID),
                                                                "statemesh.ingress/Send")}
    assert cl.int_state("test/counter", "r") == 5


def test_send_stream_context_applies_to_every_message(sandbox, require, receiver):
    """SendStream: the stream's traceparent is the parent of each message;
    a stream without one is not traced."""
    from harness import ingress_pb2, int64, types_pb2
    rt, cl = start(sandbox, require, "127.0.0.1:%d" % receiver.port)

    def stream(md, prefix):
        msgs = [ingress_pb2.StreamMessage(seq=i + 1, target=types_pb2.Address(
            type="test/counter", id="%s%d" % (prefix, i)), argument=int64(1)) for i in range(3)]
        it = cl.ingress.SendStream(iter([ingress_pb2.SendStreamRequest(messages=msgs)]),
                                   metadata=md, timeout=20)
        assert max(r.committed_through for r in it) == 3
    stream([("traceparent", "00-%s-%s-01" % (TID, SID))], "s")
    stream([], "u")
    inv = wait_until(lambda: len(by_name(receiver.trace(TID), "statemesh.invoke")) >= 3 and
                     by_name(receiver.trace(TID), "statemesh.invoke"), timeout=20)
    assert sorted(attr(s, "statemesh.address") for s in inv) == \
        ["test/counter/s0", "test/counter/s1", "test/counter/s2"]
    assert {s.parent_span_id.hex() for s in inv} == {SID}
    cl.wait_drained(timeout=20)
    time.sleep(0.5)                                        # an export tick or two
    assert not [s for s in receiver.spans if "/u" in (attr(s, "statemesh.address") or "")]


def test_sample_ratio_zero_exports_nothing(sandbox, require, receiver):
    """No new trace is started; a client's context with the sampled flag
    clear is carried (the SDK sees it) but records no span."""
    rt, cl = start(sandbox, require, "127.0.0.1:%d" % receiver.port, ratio=0.0)
    for i in range(20):
        assert call(cl, "test/trace", "z%d" % i, string("")) == ""
    assert call(cl, "test/trace", "u", string(""), traceparent="00-%s-%s-00" % (TID, SID)) == TID
    time.sleep(1.0)                                        # several export ticks
    assert receiver.spans == []
    st = cl.stats()
    assert st["spans_exported"] == 0 and st["spans_dropped"] == 0


def test_collector_down_runtime_unaffected(sandbox, require):
    """The collector's port is closed: every Call still works, spans are
    dropped and counted (Stats and /metrics)."""
    from harness import free_port
    rt, cl = start(sandbox, require, "127.0.0.1:%d" % free_port())
    for i in range(30):
        assert re.fullmatch(r"[0-9a-f]{32}", call(cl, "test/trace", "d%d" % i, string("")))
    assert wait_until(lambda: cl.stats()["spans_dropped"] >= 30 * 4, timeout=20)
    assert cl.stats()["spans_exported"] == 0
    assert rt.alive
    assert "event=tracing.export_failed" in rt.log()


def test_tls_to_the_collector(sandbox, require, otlp_pb2, tmp_path):
    """tracing.tls: spans reach a collector that serves TLS with our CA."""
    from test_tls import SAN_LOOPBACK, _ca, _leaf
    _ca(tmp_path, "ca")
    _leaf(tmp_path, "collector", "ca", SAN_LOOPBACK)
    creds = grpc.ssl_server_credentials([((tmp_path / "collector.key").read_bytes(),
                                          (tmp_path / "collector.crt").read_bytes())])
    r = Receiver(otlp_pb2, creds)
    try:
        require("statemeshd", "test/fn/testfn")
        rt = sandbox.runtime(endpoints=[endpoint("test/*", sandbox.testfn())], runtime_settings={
            "tracing": {"otlp": "127.0.0.1:%d" % r.port,
                        "tls": {"ca": str(tmp_path / "ca.crt")}}})
        cl = rt.client()
        tid = call(cl, "test/trace", "t", string(""))
        assert wait_until(lambda: by_name(r.trace(tid), "statemesh.invoke"), timeout=20)
    finally:
        r.stop()


@pytest.mark.parametrize("group,why", [
    ('{ sample_ratio = 0.5; }', "runtime.tracing.otlp: missing"),
    ('{ otlp = "127.0.0.1:4317"; sample_ratio = 1.5; }', "runtime.tracing.sample_ratio"),
    ('{ otlp = "127.0.0.1:4317"; sample_ratio = "all"; }', "must be a number from 0 to 1"),
    ('{ otlp = "no port here"; }', "runtime.tracing.otlp"),
    ('{ otlp = "127.0.0.1:4317"; exporter = "zipkin"; }', "runtime.tracing.exporter"),
    ('"127.0.0.1:4317"', "runtime.tracing"),
    ('{ otlp = "127.0.0.1:4317"; tls = { cert = "c.crt"; }; }', "runtime.tracing.tls"),
])
def test_config_errors(tmp_path, require, group, why):
    require("statemeshd")
    conf = tmp_path / "bad.conf"
    conf.write_text('runtime = { data_dir = "%s"; tracing = %s; };\n' % (tmp_path / "d", group))
    p = subprocess.run([str(binary("statemeshd")), "--check-config", str(conf)],
                       capture_output=True, text=True, timeout=15)
    assert p.returncode == 2, p.stdout + p.stderr
    assert why in p.stderr, p.stderr


def test_config_ok(tmp_path, require):
    require("statemeshd")
    conf = tmp_path / "ok.conf"
    conf.write_text('runtime = { data_dir = "%s"; tracing = { otlp = "127.0.0.1:4317"; '
                    'sample_ratio = 0.1; }; };\n' % (tmp_path / "d"))
    p = subprocess.run([str(binary("statemeshd")), "--check-config", str(conf)],
                       capture_output=True, text=True, timeout=15)
    assert p.returncode == 0, p.stderr
