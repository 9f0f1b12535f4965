"""
fnserve — what the raw-protocol test function servers (msg_fn.py,
poison_fn.py, garbage_fn.py) share: a log line on stderr, and serving
statemesh.v1.FunctionService (Describe, Invoke) on one address until
SIGTERM or SIGINT, accepting the runtime's keepalive pings on idle streams.
"""

import os
import signal
import sys
import threading
from concurrent import futures

import grpc

SERVICE = "statemesh.v1.FunctionService"
_lock = threading.Lock()


def log(line):
    """One line on stderr (whole, from any thread)."""
    with _lock:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def serve(listen, describe, invoke, workers=8, ready=None, grace=1):
    """Serves describe (unary, bytes -> bytes) and invoke (bidi stream of
    bytes) on listen (unix:/path or host:port) until SIGTERM or SIGINT.
    Logs `event=listening addr=A pid=P` (or `ready`) once serving; on a
    signal, stops with `grace` seconds for the calls under way. Returns the
    exit status: 0, or 1 when listen cannot be bound."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=[
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 1000),
        ("grpc.http2.max_ping_strikes", 0)])
    handlers = {
        "Describe": grpc.unary_unary_rpc_method_handler(describe),
        "Invoke": grpc.stream_stream_rpc_method_handler(invoke),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if server.add_insecure_port(listen) == 0:
        log("event=listen_failed addr=%s" % listen)
        return 1
    server.start()
    log(ready or "event=listening addr=%s pid=%d" % (listen, os.getpid()))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    stop.wait()
    server.stop(grace).wait()
    return 0
