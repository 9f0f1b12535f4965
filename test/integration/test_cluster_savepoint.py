"""
Cluster savepoint and offline rescale (runtime/clustersp.c, clusterctl.c,
sprestore.c; docs/cluster.md "Rescaling", docs/savepoints.md "Cluster
savepoints") against a real 3-member etcd and real statemeshd nodes:

- a consistent cut of 2 nodes taken while traffic runs, restored onto 3
  nodes after `statemeshd --cluster-assign`, every counter exact; more
  traffic, a savepoint of the 3 nodes restored onto 2: exact again; the
  content of each savepoint equal (address by address, and the counts per
  type) to a savepoint of the cluster it was restored into;
- a node that dies inside the barrier (a failure point aborts it before it
  reports paused): the savepoint fails with a clear error, nothing is left
  under DIR, the other node resumes;
- bad input: DIR exists, a runtime without a cluster, bad or repeated node
  ids, assign while nodes run, a restored node the assignment leaves out,
  a non-empty data dir.

Lease TTL 5 s. Clients talk to each address's owner directly.
"""

import json
import os
import shutil
import subprocess
import threading
import time

import grpc
import pytest

from etcd_cluster import etcd_cluster  # noqa: F401  (fixture)
from harness import binary, endpoint, int64, scaled, wait_until
from test_cluster import COUNTER, CLI, cluster_group, expected_ranges, key_group, ranges_of, status

pytestmark = pytest.mark.needs("statemeshd", "statemesh", "test/fn/testfn")

TTL = 5000
IDS = ["c%d" % i for i in range(48)]


def owner_of(id_, n):
    return owner_of_type(COUNTER, id_, n)


def owner_of_type(type_, id_, n):
    kg = key_group(type_, id_)
    for i, (a, b) in enumerate(expected_ranges(n)):
        if a <= kg <= b:
            return i
    raise AssertionError(kg)


class Cluster:
    """n nodes n-0.. of cluster `name` sharing one function server."""

    def __init__(self, sandbox, etcd, name, n, fn, tag, args=(), env=None, start=True):
        self.name, self.fn = name, fn
        self.rts = []
        for i in range(n):
            rt = sandbox.runtime([endpoint("test/*", fn)], name="%s-n%d" % (tag, i), start=False,
                                 extra_config=cluster_group(name, "n-%d" % i, etcd, ttl_ms=TTL,
                                                            initial_nodes=n),
                                 args=list(args), env=env)
            self.rts.append(rt)
        if start:
            self.start()

    def start(self):
        for rt in self.rts:
            rt.start(wait=False)
        for rt in self.rts:
            rt.wait_ready(40)
        self.clients = [rt.client() for rt in self.rts]

    def wait_ranges(self):
        n = len(self.rts)
        want = [(a, b, "n-%d" % i) for i, (a, b) in enumerate(expected_ranges(n))]

        def agreed():
            views = [status(rt) for rt in self.rts]
            ok = all([(a, b, o) for a, b, o, _ in ranges_of(v)] == want and v["state"] == "serving"
                     for v in views)
            return views if ok else None
        return wait_until(agreed, timeout=30, interval=0.2, message="ranges on every node")

    def client_for(self, id_):
        return self.clients[owner_of(id_, len(self.rts))]

    def counters(self):
        return {i: self.client_for(i).int_state(COUNTER, i) for i in IDS}

    def stop(self):
        for rt in self.rts:
            rt.stop()


def run_cli(*argv, timeout=90):
    return subprocess.run([CLI] + [str(a) for a in argv], capture_output=True, text=True,
                          timeout=scaled(timeout))


def cluster_savepoint(rt, path):
    r = run_cli("--address", rt.ingress, "cluster", "savepoint", path)
    assert r.returncode == 0, "cluster savepoint: rc %d\n%s%s" % (r.returncode, r.stdout, r.stderr)
    return r.stdout


def assign(rt, nodes):
    return subprocess.run([str(binary("statemeshd")), "-c", str(rt.config_path),
                           "--cluster-assign", nodes], capture_output=True, text=True,
                          timeout=scaled(30))


def export(sp, parts):
    """Every address of the savepoint's node parts, as canonical JSON lines, sorted."""
    lines = []
    for p in parts:
        r = run_cli("savepoint", "export", sp / p, "--jsonl")
        assert r.returncode == 0, r.stderr
        lines += [ln for ln in r.stdout.splitlines() if ln]
    return sorted(lines)


def inspect(sp):
    r = run_cli("savepoint", "inspect", sp, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def value_at_cut(lines):
    """id -> counter state + queued increments, from exported lines."""
    out = {}
    for ln in lines:
        a = json.loads(ln)
        if a["type"] != COUNTER:
            continue
        v = sum(s["value"] for s in a.get("state", {}).values())
        v += sum(m["value"] for m in a.get("messages", []))
        out[a["id"]] = v
    return out


class Traffic:
    """Sends +1 to every counter at its owner, round after round, counting acks."""

    def __init__(self, cluster):
        self.cluster, self.acked = cluster, {i: 0 for i in IDS}
        self.stop_ev, self.errors = threading.Event(), []
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop_ev.is_set():
            for i in IDS:
                try:
                    self.cluster.client_for(i).send(COUNTER, i, int64(1))
                except grpc.RpcError as e:        # a paused node still accepts: none expected
                    self.errors.append(e.details())
                    continue
                with self.lock:
                    self.acked[i] += 1

    def snapshot(self):
        with self.lock:
            return dict(self.acked)

    def stop(self):
        self.stop_ev.set()
        self.t.join(30)


def test_rescale_2_3_2_every_counter_exact(sandbox, etcd_cluster):
    fn = sandbox.testfn()
    c2 = Cluster(sandbox, etcd_cluster, "rescale", 2, fn, "a")
    c2.wait_ranges()
    assert {owner_of(i, 2) for i in IDS} == {0, 1} and {owner_of(i, 3) for i in IDS} == {0, 1, 2}

    # 1. a savepoint of 2 nodes while traffic runs
    tr = Traffic(c2)
    wait_until(lambda: min(tr.snapshot().values()) >= 3, timeout=30, message="traffic flowing")
    lo = tr.snapshot()
    sp_a = sandbox.path("sp-a")
    out = cluster_savepoint(c2.rts[1], sp_a)
    hi = tr.snapshot()
    tr.stop()
    assert tr.errors == []
    assert "node n-0 key_groups 0-2047:" in out and "node n-1 key_groups 2048-4095:" in out
    assert "cluster savepoint %s" % sp_a in out and "2 nodes" in out
    r = run_cli("savepoint", "verify", sp_a)
    assert r.returncode == 0 and "cluster savepoint of rescale" in r.stdout, r.stderr
    lines_a = export(sp_a, ["n-0", "n-1"])
    cut = value_at_cut(lines_a)
    for i in IDS:   # nothing acked before the request lost, nothing acked after it in the cut
        assert lo[i] <= cut.get(i, 0) <= hi[i], (i, lo[i], cut.get(i), hi[i])
    assert sum(cut.values()) > sum(lo.values())    # traffic went on during the barrier
    assert "event=clustersp.resumed" in c2.rts[0].log()
    c2.stop()
    fn.stop()

    # 2. assign 3 nodes, restore each from the cluster savepoint
    r = assign(c2.rts[0], "n-0,n-1,n-2")
    assert r.returncode == 0, r.stderr
    assert "range 2731-4095 n-2" in r.stdout and "3 range(s) assigned" in r.stdout
    c3 = Cluster(sandbox, etcd_cluster, "rescale", 3, fn, "b", args=["--from-savepoint", sp_a])
    views = c3.wait_ranges()
    assert len({e for *_, e in ranges_of(views[0])}) == 1            # one Txn, one new epoch
    for rt in c3.rts:
        assert "event=restore.done" in rt.log()
    # with the function server down nothing runs: a savepoint now holds what was restored
    sp_a3 = sandbox.path("sp-a3")
    cluster_savepoint(c3.rts[2], sp_a3)
    assert export(sp_a3, ["n-0", "n-1", "n-2"]) == lines_a
    assert inspect(sp_a3)["types"] == inspect(sp_a)["types"]
    fn.start()
    wait_until(lambda: c3.counters() == {i: cut.get(i, 0) for i in IDS}, timeout=30,
               message="every counter at its value at the cut")

    # 3. more traffic on 3 nodes, then a savepoint of them onto 2 nodes
    for i in IDS:
        c3.client_for(i).send(COUNTER, i, int64(5))
    want = {i: cut.get(i, 0) + 5 for i in IDS}
    wait_until(lambda: c3.counters() == want, timeout=30, message="+5 applied on 3 nodes")
    sp_b = sandbox.path("sp-b")
    cluster_savepoint(c3.rts[0], sp_b)
    c3.stop()
    fn.stop()
    assert assign(c3.rts[0], "n-0,n-1").returncode == 0
    c2b = Cluster(sandbox, etcd_cluster, "rescale", 2, fn, "c", args=["--from-savepoint", sp_b])
    c2b.wait_ranges()
    sp_b2 = sandbox.path("sp-b2")
    cluster_savepoint(c2b.rts[0], sp_b2)
    lines_b = export(sp_b, ["n-0", "n-1", "n-2"])
    assert export(sp_b2, ["n-0", "n-1"]) == lines_b
    assert inspect(sp_b2)["types"] == inspect(sp_b)["types"]
    assert value_at_cut(lines_b) == want
    fn.start()
    wait_until(lambda: c2b.counters() == want, timeout=30, message="every counter exact on 2 nodes")
    c2b.stop()


@pytest.mark.parametrize("step,coordinator", [("before_paused", 0), ("after_paused", 0),
                                             ("after_cut", 0), ("after_paused", 1),
                                             ("after_cut", 1)])
def test_node_dying_in_the_barrier_aborts_and_the_other_resumes(sandbox, etcd_cluster, step,
                                                                coordinator):
    """n-1 aborts at a failure point of the barrier (as kill -9 would stop it):
    coordinated by n-0 the savepoint fails with a clear error once n-1's lease
    is gone; coordinated by n-1 itself, its lease-bound barrier key goes with
    it. Either way n-0 resumes and no DIR appears. A new savepoint started
    while n-0 still takes part in the dead one (after_cut, coordinated by
    n-1: n-0 has its cut and waits for the old barrier key to go) is queued
    on n-0 and runs once that key goes."""
    fn = sandbox.testfn()
    c = Cluster(sandbox, etcd_cluster, "barrier-%s-%d" % (step.replace("_", ""), coordinator), 2,
                fn, "d", start=False)
    c.rts[1].env = dict(os.environ, STATEMESH_FAILPOINT_CLUSTERSP=step)
    c.start()
    c.wait_ranges()
    mine = [i for i in IDS if owner_of(i, 2) == 0][0]
    theirs = [i for i in IDS if owner_of(i, 2) == 1][0]
    assert c.clients[0].call(COUNTER, mine, int64(1)) == 1
    assert c.clients[1].call(COUNTER, theirs, int64(1)) == 1
    sp = sandbox.path("sp-x")
    r = run_cli("--address", c.rts[coordinator].ingress, "cluster", "savepoint", sp)
    assert r.returncode == 1, r.stdout
    if coordinator == 0:
        assert "cluster savepoint %s not written" % sp in r.stderr
        assert "node n-1 went down during the barrier" in r.stderr
        assert "every node has resumed" in r.stderr
    assert c.rts[1].wait_exit(timeout=20) != 0                    # aborted at the failure point
    assert "step=%s" % step in c.rts[1].log()
    assert not sp.exists()
    assert run_cli("savepoint", "verify", sp).returncode == 1
    for p in sp.parent.glob("sp-x.partial-*"):                     # a dead coordinator's leftover
        assert coordinator == 1 and run_cli("savepoint", "verify", p).returncode == 1
    # n-0 resumed: its addresses are served again
    assert c.clients[0].call(COUNTER, mine, int64(1), timeout=scaled(15)) == 2
    wait_until(lambda: "event=clustersp.resumed" in c.rts[0].log(), timeout=15)
    # restarted without the failure point, n-1 has its data and the next savepoint works
    c.rts[1].env = None
    c.rts[1].start()
    c.wait_ranges()
    assert c.clients[1].call(COUNTER, theirs, int64(1), timeout=scaled(15)) == 2
    out = cluster_savepoint(c.rts[1], sp)
    assert "2 nodes" in out
    assert run_cli("savepoint", "verify", sp).returncode == 0
    c.stop()


def test_bad_input_gets_clear_errors(sandbox, etcd_cluster):
    fn = sandbox.testfn()
    c = Cluster(sandbox, etcd_cluster, "badinput", 2, fn, "e")
    c.wait_ranges()
    existing = sandbox.path("exists")
    existing.mkdir()
    r = run_cli("--address", c.rts[0].ingress, "cluster", "savepoint", existing)
    assert r.returncode == 1 and "already exists" in r.stderr
    r = run_cli("--address", c.rts[0].ingress, "cluster", "savepoint", "/nonexistent-parent/sp")
    assert r.returncode == 1 and "does not exist" in r.stderr
    r = run_cli("--address", c.rts[0].ingress, "cluster", "savepoint")
    assert r.returncode == 2 and "needs DIR" in r.stderr
    # assign: bad ids, repeated ids, nodes running
    for nodes, why in [("n-0,n 1", "'n 1' is not a node id"), ("n-0,,n-1", "'' is not a node id"),
                       ("n-0,n-0", "node n-0 is listed twice")]:
        r = assign(c.rts[0], nodes)
        assert r.returncode == 2 and why in r.stderr, (nodes, r.stderr)
    r = assign(c.rts[0], "n-0,n-1,n-2")
    assert r.returncode == 2 and "are running" in r.stderr and "n-0" in r.stderr
    assert "stop every node" in r.stderr
    # a runtime without a cluster has no cluster savepoint
    alone = sandbox.runtime([endpoint("test/*", fn)], name="alone")
    r = run_cli("--address", alone.ingress, "cluster", "savepoint", sandbox.path("sp-alone"))
    assert r.returncode == 1 and "not in a cluster" in r.stderr
    alone.stop()
    # restore: a node the assignment leaves out; a data dir that holds a store
    for i in IDS:
        assert c.client_for(i).call(COUNTER, i, int64(3)) == 3
    sp = sandbox.path("sp-e")
    cluster_savepoint(c.rts[0], sp)
    c.stop()
    assert assign(c.rts[0], "n-0").returncode == 0
    left_out = Cluster(sandbox, etcd_cluster, "badinput", 2, fn, "f", args=["--from-savepoint", sp],
                       start=False).rts[1]
    left_out.start(wait=False)
    assert left_out.wait_exit(timeout=30) == 2
    assert "node n-1 owns no key group in cluster badinput (owners: n-0)" in left_out.log()
    c.rts[0].args = ["--from-savepoint", str(sp)]
    c.rts[0].start(wait=False)
    assert c.rts[0].wait_exit(timeout=30) == 3
    assert "already holds a store" in c.rts[0].log()
    # a damaged part: verify names the node, file and offset; a restore refuses it
    bad = sandbox.path("sp-bad")
    shutil.copytree(sp, bad)
    f = max((bad / "n-1").glob("kg-*.smsp"), key=lambda p: p.stat().st_size)
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    r = run_cli("savepoint", "verify", bad)
    assert r.returncode == 1 and "node n-1: " in r.stderr and f.name + ": offset" in r.stderr
    assert "checksum mismatch" in r.stderr, r.stderr
    damaged = Cluster(sandbox, etcd_cluster, "badinput", 1, fn, "g", args=["--from-savepoint", bad],
                      start=False).rts[0]
    damaged.start(wait=False)
    assert damaged.wait_exit(timeout=30) == 3
    assert "does not verify, nothing restored: node n-1: " in damaged.log()
    assert f.name + ": offset" in damaged.log()
    # without a cluster group a cluster savepoint is refused
    plain = sandbox.runtime([endpoint("test/*", fn)], name="plain", start=False,
                            args=["--from-savepoint", str(sp)])
    plain.start(wait=False)
    assert plain.wait_exit(timeout=30) == 3
    assert "is a cluster savepoint (CLUSTER.json)" in plain.log()


def test_node_that_cannot_pause_in_time_aborts(sandbox, etcd_cluster):
    """A batch in flight longer than the pause timeout keeps its node from
    pausing: the savepoint is aborted with the node named, and every node
    goes on (the slow batch is answered, the other node serves)."""
    from harness import admin_pb2
    fn = sandbox.testfn(slow_ms=4000)
    c = Cluster(sandbox, etcd_cluster, "slowpause", 2, fn, "h")
    c.wait_ranges()
    slow = [i for i in ("s%d" % k for k in range(100)) if owner_of_type("test/slow", i, 2) == 1][0]
    admin = c.clients[0].admin
    for req, why in [(admin_pb2.ClusterSavepointRequest(path="relative/sp"), "absolute path"),
                     (admin_pb2.ClusterSavepointRequest(path=str(sandbox.path("sp")), ranges=5000),
                      "ranges must be 1..4096")]:
        with pytest.raises(grpc.RpcError) as ei:
            admin.ClusterSavepoint(req, timeout=scaled(10))
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and why in ei.value.details()
    c.clients[1].send("test/slow", slow, int64(1))
    wait_until(lambda: c.clients[1].get_state("test/slow", slow).in_flight, timeout=10,
               message="the slow batch in flight")
    sp = sandbox.path("sp-slow")
    r = run_cli("--address", c.rts[0].ingress, "cluster", "savepoint", sp, "--pause-timeout", 1000)
    assert r.returncode == 1 and "ABORTED" in r.stderr, r.stderr
    assert "node(s) n-1 did not pause within 1000 ms" in r.stderr
    r = run_cli("--address", c.rts[0].ingress, "cluster", "status", "--pause-timeout", 1000)
    assert r.returncode == 2 and "--pause-timeout only applies to cluster savepoint" in r.stderr
    assert not sp.exists() and list(sp.parent.glob("sp-slow*")) == []
    wait_until(lambda: c.clients[1].int_state("test/slow", slow, name="batches") == 1,
               timeout=20, message="the slow batch answered")
    mine = [i for i in IDS if owner_of(i, 2) == 0][0]
    assert c.clients[0].call(COUNTER, mine, int64(4), timeout=scaled(15)) == 4
    for rt in c.rts:
        assert "event=clustersp.resumed" in rt.log()
    c.stop()
