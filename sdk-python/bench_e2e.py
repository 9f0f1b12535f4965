#!/usr/bin/python3
"""bench_e2e — messages/s through statemeshd and one Python function server.

The load is function-to-function, so no ingress client limits it: N addresses
of py/hop each get C messages "H hops left"; every invocation adds 1 to the
address's state `n` (int64) and sends "hops - 1" to the next address, until
N * C * H messages have been delivered. The rate is messages_delivered/s from the
runtime's Stats while the chains run.

    /usr/bin/python3 sdk-python/bench_e2e.py                     # aio, N=2000, H=50
    /usr/bin/python3 sdk-python/bench_e2e.py --mode sync --addresses 5000 --hops 20

Uses build/statemeshd and test/integration/harness.py (run `make` first).
"""

import argparse
import asyncio
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "test", "integration"))

FN = r'''
import sys
sys.path.insert(0, %(sdk)r)
from statemesh import IntType, StatefulFunctions, ValueSpec, serve
N = %(n)d
functions = StatefulFunctions()

@functions.bind("py/hop", specs=[ValueSpec("n", IntType)])
def hop(ctx, message):
    k = message.as_int()
    ctx.storage.n = (ctx.storage.n or 0) + 1
    if k > 1:
        ctx.send("py/hop", str((int(ctx.address.id) + 1) %% N), k - 1)

serve(functions, sys.argv[1], mode=%(mode)r)
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", default="aio", choices=("aio", "sync"))
    ap.add_argument("--addresses", type=int, default=2000)
    ap.add_argument("--hops", type=int, default=50)
    ap.add_argument("--chains", type=int, default=1,
                    help="seed messages per address (>1: messages queue up per address "
                         "and batches hold several invocations)")
    ap.add_argument("--max-batch", type=int, default=100)
    ap.add_argument("--max-in-flight", type=int, default=1000)
    ap.add_argument("--sync-commit", action="store_true",
                    help="checkpoint sync = true (default false: measure the SDK, not fsync)")
    args = ap.parse_args()

    from harness import PYTHON, Sandbox, endpoint
    import statemesh

    total = args.addresses * args.hops * args.chains
    with Sandbox(prefix="statemesh-e2e-") as sb:
        script = sb.path("hop.py")
        script.write_text(FN % {"sdk": HERE, "n": args.addresses, "mode": args.mode})
        fn = sb.server([PYTHON, str(script), "{listen}"], name="pyhop")
        rt = sb.runtime(endpoints=[endpoint("py/*", fn, max_batch=args.max_batch,
                                            max_in_flight=args.max_in_flight)],
                        checkpoint_sync=bool(args.sync_commit))

        async def seed():
            async with statemesh.AsyncClient(rt.ingress, timeout=60) as c:
                sem = asyncio.Semaphore(200)

                async def one(i):
                    async with sem:
                        await c.send("py/hop", str(i), args.hops)
                await asyncio.gather(*(one(i) for i in range(args.addresses)
                                       for _ in range(args.chains)))

        cl = statemesh.Client(rt.ingress, timeout=30)
        base = cl.stats()["messages_delivered"]
        t0 = time.monotonic()
        asyncio.run(seed())
        t_seeded = time.monotonic()
        at_seeded = cl.stats()["messages_delivered"] - base
        samples = []
        while True:
            d = cl.stats()["messages_delivered"] - base
            samples.append((time.monotonic(), d))
            if d >= total:
                break
            if time.monotonic() - t0 > 600:
                raise SystemExit("not done after 600 s: %d of %d delivered" % (d, total))
            time.sleep(0.2)
        elapsed = time.monotonic() - t0
        # steady state: between 10% and 90% of the messages
        lo = next(s for s in samples if s[1] >= total * 0.1)
        hi = next(s for s in samples if s[1] >= total * 0.9)
        steady = (hi[1] - lo[1]) / (hi[0] - lo[0]) if hi[0] > lo[0] else float("nan")
        after_seed = (total - at_seeded) / (samples[-1][0] - t_seeded)
        cpu = {}
        for name, proc in (("statemeshd", rt.proc), ("python", fn.proc)):
            with open("/proc/%d/stat" % proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        n0 = cl.state("py/hop", "0").get("n")
        cl.close()
        print("mode=%s addresses=%d chains=%d hops=%d max_batch=%d max_in_flight=%d "
              "sync_commit=%s" % (args.mode, args.addresses, args.chains, args.hops,
                                  args.max_batch, args.max_in_flight, bool(args.sync_commit)))
        print("delivered %d messages in %.2f s (seeding by the ingress took %.2f s): "
              "%.0f msg/s overall, %.0f msg/s after seeding, %.0f msg/s between 10%% and 90%%"
              % (total, elapsed, t_seeded - t0, total / elapsed, after_seed, steady))
        print("cpu seconds: statemeshd %.2f, python %.2f (python %.1f us/message)"
              % (cpu["statemeshd"], cpu["python"], cpu["python"] / total * 1e6))
        assert n0 is not None and n0 >= 1


if __name__ == "__main__":
    main()
