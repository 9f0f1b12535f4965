"""The function server: serves a StatefulFunctions over gRPC.

    serve(functions, "unix:/tmp/fn.sock")      # blocks; SIGTERM/SIGINT stop it
    serve(functions, "127.0.0.1:7001", mode="sync")

Services: ``statemesh.v1.FunctionService`` (Describe, Invoke) and
``grpc.health.v1.Health/Check`` (always SERVING while up).

Modes (``mode=``):

* ``"aio"`` -- a ``grpc.aio`` server on one event loop. Sync handlers run
  inline on the loop; async handlers are driven inline and only become tasks
  when they really await. Batches whose handler awaits do not hold up the
  others; their answers go out as soon as they are ready.
* ``"sync"`` -- a threaded ``grpc.server``: one thread per Invoke stream
  (the GIL makes more threads per stream useless). Async handlers run on a
  private event loop per stream thread.
* ``"auto"`` (default) -- ``aio``. Measured with sdk-python/bench_invoke.py
  (sync handlers): on one stream the two modes are within the noise of the
  VM of each other (aio ahead in most runs), with 4 streams aio is ~25%
  faster because the GIL serialises the threaded server's stream threads
  (see sdk-python/README.md). So every kind of handler gets aio. Pick
  ``sync`` when a sync handler blocks on I/O and streams should not wait
  for each other.

Every Invoke message is processed whole and its answers leave in one
FromFunction message (split only above 16 MiB). Max message sizes are 64 MiB
both ways. TCP ports are bound without SO_REUSEPORT, so a second server on the
same port fails instead of silently sharing it. On a unix socket, gRPC
replaces a stale socket file at bind.
"""

import asyncio
import logging
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

from . import _wire
from .function import RequestHandler, StatefulFunctions, SDK_NAME

__all__ = ["serve", "serve_async", "FunctionServer", "MAX_MESSAGE_BYTES"]

log = logging.getLogger("statemesh")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_MAX_OUT = 16 * 1024 * 1024
_HEALTH_SERVING = b"\x08\x01"      # HealthCheckResponse{status: SERVING}

_SERVICE = "statemesh.v1.FunctionService"


def _server_options(extra):
    opts = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 0),
        # Accept the runtime's keepalive pings on idle streams.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 1000),
        ("grpc.http2.max_ping_strikes", 0),
    ]
    if extra:
        opts.extend(extra)
    return opts


def _chunks(parts):
    """Joins answer fragments into FromFunction messages of <= 16 MiB."""
    total = 0
    for p in parts:
        total += len(p)
    if total <= _MAX_OUT:
        return [b"".join(parts)]
    out, cur, size = [], [], 0
    for p in parts:
        if cur and size + len(p) > _MAX_OUT:
            out.append(b"".join(cur))
            cur, size = [], 0
        cur.append(p)
        size += len(p)
    if cur:
        out.append(b"".join(cur))
    return out


class FunctionServer:
    """A function server you start and stop yourself (serve() wraps it).

    ``FunctionServer(functions, "unix:/tmp/fn.sock").start()`` returns at
    once; in ``aio`` mode the server's event loop runs on a background
    thread. ``port`` is the bound TCP port (useful with "127.0.0.1:0").
    ``stop(grace)`` lets the batches being processed finish (up to ``grace``
    seconds), then ends every RPC.
    """

    def __init__(self, functions, address, *, mode="auto", max_workers=32, options=None,
                 tls_cert=None, tls_key=None, tls_ca=None, require_client_cert=False):
        if not isinstance(functions, StatefulFunctions):
            raise TypeError("expected a StatefulFunctions")
        if not len(functions):
            raise ValueError("no function is bound")
        if mode not in ("auto", "aio", "sync"):
            raise ValueError("mode must be 'auto', 'aio' or 'sync'")
        self.functions = functions
        self.address = address
        # TLS (statemesh.tls): files read and checked now, errors are ValueError.
        self._credentials = self._tls = None
        if tls_cert or tls_key or tls_ca or require_client_cert:
            from . import tls
            tls.check_address(address)
            self._tls = tls.ReloadableServerCredentials(tls_cert, tls_key, tls_ca,
                                                        require_client_cert)
            self._credentials = self._tls.credentials
        self.mode = "aio" if mode == "auto" else mode
        self.port = None
        self._handler = RequestHandler(functions)
        self._max_workers = max_workers
        self._options = _server_options(options)
        self._server = None
        self._loop = None
        self._thread = None
        self._stopped = threading.Event()
        # Messages being processed or answers being written (all streams):
        # stop() waits for 0 before it cancels the runtime's Invoke streams.
        self._work = 0
        self._work_lock = threading.Lock()

    def reload_tls(self):
        """Re-reads the TLS files (serve() calls it on SIGHUP): new handshakes
        use them, open connections are not touched. Returns True, or False
        after logging why the files were refused (the old ones stay)."""
        if self._tls is None:
            log.info("SIGHUP: no TLS to reload")
            return False
        try:
            self._tls.reload()
        except ValueError as e:
            log.error("TLS reload failed, keeping the previous certificate: %s", e)
            return False
        log.info("TLS certificate reloaded")
        return True

    # ---- sync (threaded) ----------------------------------------------------

    def _invoke_sync(self, request_iterator, context):
        process = self._handler.process_all_sync
        for data in request_iterator:
            with self._work_lock:
                self._work += 1
            try:
                try:
                    answers = process(data)
                except _wire.DecodeError as e:
                    log.error("malformed ToFunction from the runtime: %s", e)
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  "malformed ToFunction: %s" % e)
                    return
                if answers:
                    # Resumes once gRPC has taken the message (and asks for the next).
                    if len(answers) == 1:
                        yield answers[0]
                    else:
                        yield from _chunks(answers)
            finally:
                with self._work_lock:
                    self._work -= 1

    def _generic_handler(self, invoke, aio):
        from .v1 import function_pb2
        resp = self._handler.describe()
        if aio:
            async def describe(req, ctx):
                return resp

            async def health(req, ctx):
                return _HEALTH_SERVING
        else:
            def describe(req, ctx):
                return resp

            def health(req, ctx):
                return _HEALTH_SERVING
        fs = grpc.method_handlers_generic_handler(_SERVICE, {
            "Describe": grpc.unary_unary_rpc_method_handler(
                describe,
                request_deserializer=function_pb2.DescribeRequest.FromString,
                response_serializer=function_pb2.DescribeResponse.SerializeToString),
            # Raw bytes both ways: the hot path uses statemesh._wire.
            "Invoke": grpc.stream_stream_rpc_method_handler(invoke),
        })
        hs = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
            "Check": grpc.unary_unary_rpc_method_handler(health),
        })
        return (fs, hs)

    def _bind(self, server):
        try:
            if self._credentials is not None:
                port = server.add_secure_port(self.address, self._credentials)
            else:
                port = server.add_insecure_port(self.address)
        except RuntimeError as e:
            raise OSError("cannot listen on %s: %s" % (self.address, e)) from None
        if not port:
            raise OSError("cannot listen on %s" % self.address)
        self.port = port

    def _start_sync(self):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self._max_workers,
                                                        thread_name_prefix="statemesh"),
                             options=self._options)
        server.add_generic_rpc_handlers(self._generic_handler(self._invoke_sync, False))
        self._bind(server)
        server.start()
        self._server = server

    # ---- aio ----------------------------------------------------------------

    async def _invoke_aio(self, request_iterator, context):
        process = self._handler.process
        loop = asyncio.get_running_loop()
        outbox = []
        tasks = set()
        flushing = False
        flusher = None

        async def flush():
            nonlocal flushing
            self._work += 1
            try:
                while outbox:
                    parts = outbox[:]
                    outbox.clear()
                    for chunk in _chunks(parts):
                        await context.write(chunk)
            finally:
                flushing = False
                self._work -= 1

        async def finish(p):
            nonlocal flushing, flusher
            self._work += 1
            try:
                outbox.append(await p)
            finally:
                self._work -= 1
            if not flushing:
                flushing = True
                flusher = loop.create_task(flush())

        try:
            while True:
                data = await context.read()
                if data is grpc.aio.EOF:
                    break
                try:
                    answers, pending = process(data)
                except _wire.DecodeError as e:
                    log.error("malformed ToFunction from the runtime: %s", e)
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                        "malformed ToFunction: %s" % e)
                    return
                if pending:
                    for p in pending:
                        t = loop.create_task(finish(p))
                        tasks.add(t)
                        t.add_done_callback(tasks.discard)
                if answers:
                    outbox.extend(answers)
                    if not flushing:
                        flushing = True
                        await flush()
            # The runtime half-closed: answer what is still running.
            while tasks:
                await asyncio.gather(*list(tasks))
            if flusher is not None:
                await flusher
            if outbox:
                flushing = True
                await flush()
        finally:
            for t in tasks:
                t.cancel()
            if flusher is not None and not flusher.done():
                flusher.cancel()

    async def start_async(self):
        """Starts the aio server on the running event loop."""
        server = grpc.aio.server(options=self._options)
        server.add_generic_rpc_handlers(self._generic_handler(self._invoke_aio, True))
        self._bind(server)
        await server.start()
        self._server = server
        self._loop = asyncio.get_running_loop()

    async def stop_async(self, grace=5.0):
        """Waits (up to ``grace`` seconds) until no batch is being processed or
        answered, then ends every RPC: the runtime's Invoke streams never end
        on their own, and whatever it sends after this is re-sent elsewhere."""
        if self._server is not None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace
            while self._work and loop.time() < deadline:
                await asyncio.sleep(0.01)
            await self._server.stop(0.1 if not self._work else 0)
        self._stopped.set()

    async def wait_async(self):
        await self._server.wait_for_termination()

    def _start_aio_thread(self):
        ready = threading.Event()
        error = []

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as e:  # report to start()
                error.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()      # until stop()
            finally:
                for t in asyncio.all_tasks(loop):
                    t.cancel()
                loop.run_until_complete(asyncio.sleep(0))
                loop.close()

        self._thread = threading.Thread(target=run, name="statemesh-aio", daemon=True)
        self._thread.start()
        ready.wait()
        if error:
            raise error[0]

    # ---- public -------------------------------------------------------------

    def start(self):
        """Binds and starts serving; returns self."""
        if self._server is not None:
            raise RuntimeError("already started")
        if self.mode == "sync":
            self._start_sync()
        else:
            self._start_aio_thread()
        log.info("serving %s on %s mode=%s sdk=%s", ", ".join(self.functions.types),
                 self.address, self.mode, SDK_NAME)
        return self

    def stop(self, grace=5.0):
        """Lets the batches being processed finish (up to ``grace`` seconds),
        then ends every RPC and the server."""
        if self._server is None or self._stopped.is_set():
            return
        if self.mode == "sync":
            deadline = time.monotonic() + grace
            while self._work and time.monotonic() < deadline:
                time.sleep(0.01)
            self._server.stop(0.1 if not self._work else 0).wait()
        else:
            fut = asyncio.run_coroutine_threadsafe(self.stop_async(grace), self._loop)
            try:
                fut.result(grace + 10)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(grace + 10)
        self._stopped.set()
        log.info("stopped serving on %s", self.address)

    def wait(self, timeout=None):
        """Blocks until stop(); returns True when stopped."""
        return self._stopped.wait(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _ensure_logging():
    if not log.handlers and not logging.getLogger().handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("statemesh-python level=%(levelname)s msg=%(message)s"))
        log.addHandler(h)
        if log.level == logging.NOTSET:
            log.setLevel(logging.INFO)


def serve(functions, address, *, mode="auto", grace=5.0, max_workers=32, options=None,
          tls_cert=None, tls_key=None, tls_ca=None, require_client_cert=False):
    """Serves ``functions`` on ``address`` ("unix:/path.sock" or "host:port")
    until SIGTERM or SIGINT, then drains in-flight RPCs for ``grace`` seconds.
    Signal handlers are installed only when called from the main thread.
    ``tls_cert``/``tls_key`` (PEM files, host:port only): serve over TLS;
    ``tls_ca`` + ``require_client_cert=True``: only clients (the runtime)
    with a certificate signed by that CA get in (mTLS). With TLS, SIGHUP
    re-reads the three files (FunctionServer.reload_tls)."""
    _ensure_logging()
    srv = FunctionServer(functions, address, mode=mode, max_workers=max_workers,
                         options=options, tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca,
                         require_client_cert=require_client_cert)
    if srv.mode == "aio":
        try:
            asyncio.run(_serve_aio(srv, grace))
        except KeyboardInterrupt:
            pass
        return
    stop = threading.Event()
    main = threading.current_thread() is threading.main_thread()
    old = {}
    if main:
        # Before binding: a supervisor that sees the socket may signal at once.
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, lambda *_: stop.set())
        if srv._tls is not None:
            old[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: srv.reload_tls())
    try:
        srv.start()
    except BaseException:
        for sig, h in old.items():
            signal.signal(sig, h)
        raise
    try:
        while not stop.wait(3600):
            pass
        log.info("signal received, stopping (grace %.1fs)", grace)
    finally:
        srv.stop(grace)
        for sig, h in old.items():
            signal.signal(sig, h)


async def _serve_aio(srv, grace):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed = []
    if threading.current_thread() is threading.main_thread():
        handlers = {signal.SIGTERM: stop.set, signal.SIGINT: stop.set}
        if srv._tls is not None:
            handlers[signal.SIGHUP] = srv.reload_tls
        for sig, fn in handlers.items():
            try:
                loop.add_signal_handler(sig, fn)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):
                pass
    await srv.start_async()
    log.info("serving %s on %s mode=aio sdk=%s", ", ".join(srv.functions.types),
             srv.address, SDK_NAME)
    try:
        await stop.wait()
        log.info("signal received, stopping (grace %.1fs)", grace)
    finally:
        await srv.stop_async(grace)
        for sig in installed:
            loop.remove_signal_handler(sig)


async def serve_async(functions, address, *, grace=5.0, options=None, **tls):
    """Serves on the running event loop (aio mode) until cancelled. ``tls``:
    tls_cert, tls_key, tls_ca, require_client_cert as for serve()."""
    srv = FunctionServer(functions, address, mode="aio", options=options, **tls)
    await srv.start_async()
    try:
        await srv.wait_async()
    finally:
        await srv.stop_async(grace)
