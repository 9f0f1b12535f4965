"""
runtime/etcd.c against a real 3-member etcd (etcd_cluster.py), through its
driver build/test/fn/etcdtool: KV, compare-and-swap, leases and their
keepalive, prefix watches, the leader's kill -9 under writes, and a dead
endpoint in the list.
"""

import os
import shutil
import subprocess
import time

import pytest

from etcd_cluster import etcd_cluster  # noqa: F401  (fixture)
from harness import _kill9, _track, binary, free_port, scaled

pytestmark = pytest.mark.needs("test/fn/etcdtool")

TOOL = str(binary("test/fn/etcdtool"))


def tool(endpoints, *args, ok=True, timeout=30):
    r = subprocess.run([TOOL, endpoints] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=scaled(timeout))
    if ok:
        assert r.returncode == 0, "etcdtool %s: rc %d\n%s%s" % (args, r.returncode, r.stdout, r.stderr)
    return r


def kvs(out):
    """{key: (value, mod_revision)} from get/getp output."""
    res = {}
    for line in out.splitlines():
        if line.startswith("kv "):
            _, k, v, mod = line.split(" ")
            res[k] = (v, int(mod))
    return res


def rev_of(out):
    for line in out.splitlines():
        if line.startswith("rev ") or " rev " in line:
            return int(line.split(" rev ")[-1] if " rev " in line else line.split()[1])
    raise AssertionError("no revision in %r" % out)


def spawn(endpoints, *args):
    p = subprocess.Popen([TOOL, endpoints] + [str(a) for a in args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    _track(p)
    return p


def events(out):
    """[(type, key, value, mod_revision)] from watch output."""
    res = []
    for line in out.splitlines():
        if line.startswith("ev "):
            _, t, k, v, rev = line.split(" ")
            res.append((t, k, v, int(rev)))
    return res


def test_put_range_delete(etcd_cluster):
    ep = etcd_cluster.endpoints
    r1 = rev_of(tool(ep, "put", "/kv/a", "1").stdout)
    r2 = rev_of(tool(ep, "put", "/kv/b", "2").stdout)
    assert r2 == r1 + 1
    assert kvs(tool(ep, "get", "/kv/a").stdout) == {"/kv/a": ("1", r1)}
    assert kvs(tool(ep, "getp", "/kv/").stdout) == {"/kv/a": ("1", r1), "/kv/b": ("2", r2)}
    out = tool(ep, "del", "/kv/a").stdout
    assert out.startswith("deleted 1 rev %d" % (r2 + 1))
    assert kvs(tool(ep, "getp", "/kv/").stdout) == {"/kv/b": ("2", r2)}
    # deleting what is not there deletes nothing and moves no revision
    assert tool(ep, "del", "/kv/a").stdout.startswith("rev %d" % (r2 + 1))


def test_cas_once_and_the_second_writer_fails(etcd_cluster):
    ep = etcd_cluster.endpoints

    def cas(*args):
        """The verdict line (a conflict also prints the key as it is)."""
        return tool(ep, "cas", *args).stdout.strip().splitlines()[-1]

    first = cas("/cas/owner", "node-a", 0)
    assert first.startswith("ok rev "), first
    epoch = int(first.split()[-1])
    # a second writer with the same expectation loses and learns the epoch
    assert cas("/cas/owner", "node-b", 0) == "conflict mod %d" % epoch
    assert kvs(tool(ep, "get", "/cas/owner").stdout) == {"/cas/owner": ("node-a", epoch)}
    # with the epoch it succeeds once; the epoch moves on
    second = cas("/cas/owner", "node-b", epoch)
    assert second.startswith("ok rev ")
    epoch2 = int(second.split()[-1])
    assert epoch2 > epoch
    assert cas("/cas/owner", "node-c", epoch) == "conflict mod %d" % epoch2
    assert kvs(tool(ep, "get", "/cas/owner").stdout) == {"/cas/owner": ("node-b", epoch2)}


def test_lease_key_stays_while_kept_alive_and_goes_after_ttl(etcd_cluster):
    ep = etcd_cluster.endpoints
    ttl = 2
    p = spawn(ep, "lease", ttl, "/lease/node", "up", 4000)
    try:
        time.sleep(3.2)          # past the TTL: only keepalives keep it
        assert kvs(tool(ep, "get", "/lease/node").stdout)["/lease/node"][0] == "up"
        out, err = p.communicate(timeout=scaled(20))
    finally:
        _kill9(p)
    assert p.returncode == 0, out + err
    assert "stopped lost=0" in out
    left = [int(line.split()[1]) for line in out.splitlines() if line.startswith("deadline ")]
    assert len(left) >= 3, out                       # a keepalive every TTL/3
    assert all(0 < ms <= ttl * 1000 for ms in left), out
    # keepalives stopped: the key goes within about the TTL
    t0 = time.monotonic()
    while kvs(tool(ep, "get", "/lease/node").stdout):
        assert time.monotonic() - t0 < scaled(ttl + 3), "lease-bound key outlived its TTL"
        time.sleep(0.1)


def test_lease_revoked_elsewhere_is_reported_lost(etcd_cluster):
    ep = etcd_cluster.endpoints
    p = spawn(ep, "lease", 5, "/lease/revoked", "up", 8000)
    try:
        line = p.stdout.readline()
        assert line.startswith("lease "), line
        lease_id = int(line.split()[1])
        r = subprocess.run([shutil.which("etcdctl"), "--endpoints", ep, "lease", "revoke",
                            "%x" % lease_id], capture_output=True, text=True, timeout=scaled(10),
                           env=dict(os.environ, ETCDCTL_API="3"))
        assert r.returncode == 0, r.stdout + r.stderr
        out, err = p.communicate(timeout=scaled(20))
    finally:
        _kill9(p)
    assert "lost lease %d: etcd says it has expired or was revoked" % lease_id in out, out + err
    assert p.returncode == 1 and "stopped lost=1" in out
    assert kvs(tool(ep, "get", "/lease/revoked").stdout) == {}


def test_watch_from_revision_sees_every_later_event_in_order(etcd_cluster):
    ep = etcd_cluster.endpoints
    start = rev_of(tool(ep, "put", "/w1/k0", "0").stdout)
    for i in range(1, 5):
        tool(ep, "put", "/w1/k%d" % i, str(i))
    tool(ep, "del", "/w1/k2")
    tool(ep, "put", "/other", "x")           # outside the prefix
    w = spawn(ep, "watch", "/w1/", start, 8, 15000)
    try:
        tool(ep, "put", "/w1/k5", "5")
        tool(ep, "put", "/w1/k0", "again")
        out, err = w.communicate(timeout=scaled(20))
    finally:
        _kill9(w)
    assert w.returncode == 0, out + err
    ev = events(out)
    assert [(t, k, v) for t, k, v, _ in ev] == [
        ("PUT", "/w1/k0", "0"), ("PUT", "/w1/k1", "1"), ("PUT", "/w1/k2", "2"),
        ("PUT", "/w1/k3", "3"), ("PUT", "/w1/k4", "4"), ("DELETE", "/w1/k2", ""),
        ("PUT", "/w1/k5", "5"), ("PUT", "/w1/k0", "again")]
    revs = [r for *_, r in ev]
    assert revs[:6] == list(range(start, start + 6))
    assert revs[6] == start + 7 and revs[7] == start + 8      # /other took start+6


@pytest.mark.fault
@pytest.mark.time_limit(60)
def test_leader_kill_under_writes(etcd_cluster, capsys):
    ep = etcd_cluster.endpoints
    n = 300
    start = rev_of(tool(ep, "put", "/lk/start", "x").stdout) + 1
    leader = etcd_cluster.leader()
    w = spawn(ep, "watch", "/lk/k", start, n, 40000)
    wr = spawn(ep, "writeloop", "/lk/k", n, int(scaled(1000)))   # 1 s per attempt
    try:
        # let some writes land, then kill -9 the leader
        t0 = time.monotonic()
        while not kvs(tool(ep, "get", "/lk/k%06d" % (n // 4)).stdout):
            assert wr.poll() is None or time.monotonic() - t0 < 1, "writes ended before the kill"
            assert time.monotonic() - t0 < scaled(20), "writes too slow"
            time.sleep(0.02)
        etcd_cluster.kill(leader)
        wout, werr = wr.communicate(timeout=scaled(40))
        out, err = w.communicate(timeout=scaled(40))
    finally:
        _kill9(wr)
        _kill9(w)
    assert wr.returncode == 0, wout + werr
    assert w.returncode == 0, out + err
    gap = int(wout.split("maxgap_ms ")[1].split()[0])
    retries = int(wout.split("retries ")[1].split()[0])
    with capsys.disabled():
        print("\n  etcd leader kill -9 (member %d): longest gap between writes %d ms, %d retries"
              % (leader, gap, retries))
    ev = events(out)
    revs = [r for *_, r in ev]
    # every revision from `start` on, in order, none missed (a retried put may
    # have been applied twice: its key then appears twice)
    assert revs == list(range(start, start + len(revs))), revs
    keys = []
    for _, k, _, _ in ev:
        if not keys or keys[-1] != k:
            keys.append(k)
    assert keys == ["/lk/k%06d" % i for i in range(len(keys))]
    assert len(keys) >= n - (len(ev) - len(keys))
    etcd_cluster.restart(leader)


def test_dead_endpoint_is_skipped(etcd_cluster):
    dead = "http://127.0.0.1:%d" % free_port()
    ep = dead + "," + etcd_cluster.members[1].client_url
    r = rev_of(tool(ep, "put", "/dead/k", "v").stdout)
    assert kvs(tool(ep, "get", "/dead/k").stdout) == {"/dead/k": ("v", r)}
    # only dead endpoints: a clear error, exit 1
    r = tool(dead + ",http://127.0.0.1:%d" % free_port(), "get", "/dead/k", ok=False)
    assert r.returncode == 1
    assert "etcd Range via 127.0.0.1:" in r.stderr and "UNAVAILABLE" in r.stderr
    assert "every endpoint was tried twice" in r.stderr


def test_bad_endpoint_lists_are_refused(etcd_cluster):
    for bad, why in [("https://127.0.0.1:2379", "https needs a tls group"),
                     ("127.0.0.1", "must be http://host:port"),
                     ("", "the list is empty"),
                     ("127.0.0.1:1,,127.0.0.1:2", "an endpoint is empty")]:
        r = tool(bad, "get", "/x", ok=False)
        assert r.returncode == 2 and why in r.stderr, (bad, r.stderr)


@pytest.mark.fault
@pytest.mark.time_limit(60)
def test_keepalive_without_etcd_is_lost_at_its_deadline(etcd_cluster):
    """Every member down: no answer comes, and the holder is told once the
    lease's local deadline has passed (the self-fencing input)."""
    ep = etcd_cluster.endpoints
    ttl = 2
    p = spawn(ep, "lease", ttl, "/lease/alone", "up", 20000)
    try:
        while True:
            line = p.stdout.readline()
            assert line, "the lease tool ended early"
            if line.startswith("deadline "):
                break
        for i in range(len(etcd_cluster.members)):
            etcd_cluster.kill(i)
        t0 = time.monotonic()
        out, err = p.communicate(timeout=scaled(20))
        waited = time.monotonic() - t0
    finally:
        _kill9(p)
        for i in range(len(etcd_cluster.members)):
            etcd_cluster.start_member(i)
        etcd_cluster.wait_healthy()
    assert "no keepalive answer before its deadline" in out, out + err
    assert p.returncode == 1
    assert waited <= scaled(ttl + 1), waited
