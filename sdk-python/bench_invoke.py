#!/usr/bin/python3
"""bench_invoke — the ceiling of one Python function server, without a runtime.

Starts a function server (this SDK) in a child process on a unix socket and
drives its Invoke stream directly, the way statemeshd does: ToFunction
messages of N batches (each one address, an int64 state `n`, M int64
messages), pipelined with a window of W messages in flight. The function is a
counter (n += k; reply n). Prints invocations/s for each server mode.

    /usr/bin/python3 sdk-python/bench_invoke.py                  # sync vs aio, 1/10/100/1000 per message
    /usr/bin/python3 sdk-python/bench_invoke.py --batches 100 --mode aio --handler async
    /usr/bin/python3 sdk-python/bench_invoke.py --batches 100 --streams 4

The client is Python too (pre-serialized requests, responses counted, not
parsed), in its own process; on a 2-core machine client and server each get
about one core. Needs the generated modules (make sdk-python/statemesh/v1/function_pb2.py).
"""

import argparse
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def make_functions(handler):
    from statemesh import IntType, StatefulFunctions, ValueSpec
    functions = StatefulFunctions()
    if handler == "async":
        @functions.bind("bench/counter", specs=[ValueSpec("n", IntType)])
        async def counter(ctx, message):
            n = (ctx.storage.n or 0) + message.as_int()
            ctx.storage.n = n
            ctx.reply(n)
    else:
        @functions.bind("bench/counter", specs=[ValueSpec("n", IntType)])
        def counter(ctx, message):
            n = (ctx.storage.n or 0) + message.as_int()
            ctx.storage.n = n
            ctx.reply(n)
    return functions


def serve_child(address, mode, handler):
    from statemesh import FunctionServer
    srv = FunctionServer(make_functions(handler), address, mode=mode).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    srv.stop(0)


def _build(batches, invocations, count=64):
    from statemesh.v1 import function_pb2, types_pb2
    one = types_pb2.TypedValue(typename="statemesh/int64", value=struct.pack("<q", 1))
    out = []
    bid = 0
    for _ in range(count):
        msg = function_pb2.ToFunction()
        for _ in range(batches):
            bid += 1
            req = msg.batches.add(batch_id=bid)
            req.target.type = "bench/counter"
            req.target.id = "user-%d" % (bid % 100000)
            sv = req.state.add(name="n")
            sv.value.typename = "statemesh/int64"
            sv.value.value = struct.pack("<q", bid)
            for _ in range(invocations):
                req.invocations.add(argument=one)
        out.append(msg.SerializeToString())
    return out


def drive(address, batches, invocations, seconds, window, streams, check):
    """Runs `streams` Invoke streams for `seconds`; returns (invocations/s, messages/s)."""
    import asyncio
    import grpc
    msgs = _build(batches, invocations)
    per_msg = batches * invocations

    async def run():
        channel = grpc.aio.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20)])
        await asyncio.wait_for(channel.channel_ready(), 10)
        invoke = channel.stream_stream("/statemesh.v1.FunctionService/Invoke")
        if check:
            from statemesh.v1 import function_pb2
            call = invoke()
            await call.write(msgs[0])
            r = function_pb2.FromFunction.FromString(await call.read())
            await call.done_writing()
            assert len(r.responses) == batches, r
            assert all(x.WhichOneof("outcome") == "result" for x in r.responses), r

        loop = asyncio.get_running_loop()
        stop_at = loop.time() + seconds

        async def one_stream():
            call = invoke()
            sem = asyncio.Semaphore(window)
            done = False

            async def writer():
                i = 0
                while not done:
                    await sem.acquire()
                    if done:
                        return
                    await call.write(msgs[i % len(msgs)])
                    i += 1

            w = asyncio.ensure_future(writer())
            n = 0
            while loop.time() < stop_at:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    raise RuntimeError("stream ended early")
                n += 1
                sem.release()
            done = True
            sem.release()
            call.cancel()
            w.cancel()
            try:
                await w
            except (asyncio.CancelledError, grpc.RpcError, Exception):
                pass
            return n

        t0 = loop.time()
        counts = await asyncio.gather(*(one_stream() for _ in range(streams)))
        elapsed = loop.time() - t0
        await channel.close()
        return sum(counts), elapsed

    total, elapsed = asyncio.run(run())
    return total * per_msg / elapsed, total / elapsed


def _cpu_seconds(pid):
    """utime + stime of a process (Linux /proc), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser(description="Invoke throughput of one Python function server")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="both", choices=("sync", "aio", "both"))
    ap.add_argument("--handler", default="sync", choices=("sync", "async"))
    ap.add_argument("--batches", type=int, action="append",
                    help="batches per ToFunction message (repeatable; default 1 10 100 1000)")
    ap.add_argument("--invocations", type=int, default=1, help="messages per batch (default 1)")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--window", type=int, default=8, help="ToFunction messages in flight per stream")
    ap.add_argument("--streams", type=int, default=1)
    args = ap.parse_args()

    if args.serve:
        serve_child(args.serve, args.mode, args.handler)
        return

    modes = ["sync", "aio"] if args.mode == "both" else [args.mode]
    batch_sizes = args.batches or [1, 10, 100, 1000]
    tmp = tempfile.mkdtemp(prefix="statemesh-bench-")
    print("handler=%s invocations/batch=%d window=%d streams=%d seconds=%.1f"
          % (args.handler, args.invocations, args.window, args.streams, args.seconds))
    print("%-5s %8s %14s %12s %10s %14s" % ("mode", "batches", "invocations/s", "messages/s",
                                           "server-cpu", "cpu-us/invoc"))
    for mode in modes:
        sock = os.path.join(tmp, "bench-%s.sock" % mode)
        address = "unix:" + sock
        env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
        child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", address,
                                  "--mode", mode, "--handler", args.handler],
                                 env=env, stdout=subprocess.PIPE, text=True)
        try:
            if child.stdout.readline().strip() != "ready":
                raise SystemExit("bench server did not start")
            for b in batch_sizes:
                c0, t0 = _cpu_seconds(child.pid), time.perf_counter()
                ips, mps = drive(address, b, args.invocations, args.seconds, args.window,
                                 args.streams, check=True)
                cpu = (_cpu_seconds(child.pid) - c0) / (time.perf_counter() - t0)
                print("%-5s %8d %14.0f %12.0f %9.0f%% %14.1f"
                      % (mode, b, ips, mps, cpu * 100, cpu / ips * 1e6 if ips else 0),
                      flush=True)
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
    try:
        os.rmdir(tmp)
    except OSError:
        pass


if __name__ == "__main__":
    main()
