#!/usr/bin/python3
"""
Forwarding cost on loopback (docs/cluster.md, "Routing"): a real 3-member
etcd and 3 statemeshd nodes sharing one testfn, as in test_forward.py.

Measures, for N sequential Calls to test/counter:
  - latency p50/p99 of a Call sent to the owner (direct) and of the same Call
    sent to another node (forwarded in one hop);
  - CPU time the forwarding node spends per forwarded call (utime + stime
    from /proc/PID/stat, over the forwarded run), against the owner's CPU
    per call in the direct run.
and the rate of a SendStream of M messages spread over every node's
addresses, through one node, against one whose messages are all its own.

On a shared 2-core machine the numbers move with the load of the other
processes; run it on a quiet machine for figures to keep.

  make bench-forward [FWD_BENCH_ARGS="--calls 2000 --stream 100000"]
"""

import argparse
import os
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

from etcd_cluster import EtcdCluster, etcd_available  # noqa: E402
from harness import Sandbox, endpoint, int64  # noqa: E402
from statemesh.v1 import ingress_pb2, types_pb2  # noqa: E402
from test_cluster import COUNTER, cluster_group, expected_ranges, key_group  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def owner(id_):
    kg = key_group(COUNTER, id_)
    for i, (a, b) in enumerate(expected_ranges(3)):
        if a <= kg <= b:
            return i
    raise AssertionError(kg)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


def call_req(id_):
    r = ingress_pb2.CallRequest()
    r.target.CopyFrom(types_pb2.Address(type=COUNTER, id=id_))
    r.argument.CopyFrom(int64(1))
    return r


def timed_calls(client, ids, n):
    lat = []
    for k in range(n):
        t0 = time.perf_counter()
        client.ingress.Call(call_req(ids[k % len(ids)]), timeout=30)
        lat.append((time.perf_counter() - t0) * 1000)
    return lat


def stream_rate(client, ids, m):
    reqs, cur = [], ingress_pb2.SendStreamRequest()
    rnd = random.Random(1)
    for k in range(m):
        msg = cur.messages.add(seq=k + 1)
        msg.target.CopyFrom(types_pb2.Address(type=COUNTER, id=rnd.choice(ids)))
        msg.argument.CopyFrom(int64(1))
        if len(cur.messages) == 500:
            reqs.append(cur)
            cur = ingress_pb2.SendStreamRequest()
    if len(cur.messages):
        reqs.append(cur)
    t0 = time.perf_counter()
    last = 0
    for r in client.ingress.SendStream(iter(reqs), timeout=600):
        assert not r.errors, r.errors
        last = r.committed_through
    assert last == m
    return m / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--stream", type=int, default=50000)
    a = ap.parse_args()
    if not etcd_available():
        sys.exit("forward_bench: etcd/etcdctl not installed (ci/install-deps.sh)")
    sb = Sandbox(prefix="sm-fwdb-")
    sb.path("etcd").mkdir()
    etcd = EtcdCluster(sb.path("etcd"))
    try:
        etcd.start()
        fn = sb.testfn()
        rts = [sb.runtime([endpoint("test/*", fn)], name="node%d" % i, start=False,
                          extra_config=cluster_group("bench", "n-%d" % i, etcd, ttl_ms=5000,
                                                     initial_nodes=3))
               for i in range(3)]
        for rt in rts:
            rt.start(wait=False)
        for rt in rts:
            rt.wait_ready(30)
        cl = [rt.client() for rt in rts]
        ids = {i: [] for i in range(3)}
        j = 0
        while min(len(v) for v in ids.values()) < 100:
            ids[owner("b%d" % j)].append("b%d" % j)
            j += 1
        deadline = time.monotonic() + 30
        while True:                      # until ranges are assigned everywhere
            try:
                for c in cl:
                    for i in range(3):
                        c.ingress.Call(call_req(ids[i][0]), timeout=5)
                break
            except Exception:            # noqa: BLE001 - not ready yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        timed_calls(cl[1], ids[1], 200)   # warm-up, both paths
        timed_calls(cl[0], ids[1], 200)
        c0 = cpu_s(rts[1].pid)
        direct = timed_calls(cl[1], ids[1], a.calls)
        direct_cpu = (cpu_s(rts[1].pid) - c0) / a.calls * 1e6
        c0 = cpu_s(rts[0].pid)
        fwd = timed_calls(cl[0], ids[1], a.calls)
        fwd_cpu = (cpu_s(rts[0].pid) - c0) / a.calls * 1e6
        print("Call latency, %d sequential calls (ms):" % a.calls)
        print("  direct to the owner   p50 %.2f  p99 %.2f" % (pct(direct, 50), pct(direct, 99)))
        print("  forwarded (one hop)   p50 %.2f  p99 %.2f" % (pct(fwd, 50), pct(fwd, 99)))
        print("CPU per call: owner serving it directly %.0f us; forwarding node %.0f us"
              % (direct_cpu, fwd_cpu))
        own = stream_rate(cl[0], ids[0], a.stream)
        mixed = stream_rate(cl[0], ids[0] + ids[1] + ids[2], a.stream)
        print("SendStream through n-0, %d messages: own addresses %.0f msg/s, "
              "every node's addresses %.0f msg/s" % (a.stream, own, mixed))
    finally:
        sb.close()
        etcd.stop()


if __name__ == "__main__":
    main()
