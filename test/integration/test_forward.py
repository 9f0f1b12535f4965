"""
Any node is an ingress (runtime/forward.c, docs/cluster.md "Routing"): three
real statemeshd nodes on a real 3-member etcd (etcd_cluster.py), one shared
function server. A unary call for an address another node owns is forwarded
to the owner in one hop, with the client's metadata, deadline and
idempotency key, and the client gets the owner's answer.

Cases: Send/Call/GetState and the per-address Admin calls through every node
to addresses on every node; a write to each of the 4096 key groups through
random nodes, read back exactly; an idempotency key retried through two
different nodes applies once; the owner killed: UNAVAILABLE for its
addresses while the others work; a call already forwarded is not forwarded
again; bearer tokens travel with the forward; bad input is refused on the
first node. Lease TTL 5 s (docs/cluster.md).
"""

import json
import os
import queue
import random
import secrets
import signal
import subprocess
import threading

import grpc
import pytest
import statemesh

from etcd_cluster import etcd_cluster  # noqa: F401  (fixture)
from test_tls import certs  # noqa: F401  (fixture)
from harness import endpoint, int64, scaled, wait_until
from statemesh.v1 import admin_pb2, ingress_pb2, types_pb2
from test_cluster import (CLI, COUNTER, KEY_GROUPS, call_ok, cluster_group, expected_ranges,
                          key_group)

pytestmark = pytest.mark.needs("statemeshd", "statemesh", "test/fn/testfn")

TTL_MS = 5000


class Cluster:
    """Nodes n-0..n-2 of cluster `name` (lease 5 s), one testfn. `settings`:
    runtime settings every node gets (e.g. auth)."""

    def __init__(self, sandbox, etcd, name, n=3, settings=None, extra=""):
        self.fn = sandbox.testfn()
        self.rts = []
        for i in range(n):
            rt = sandbox.runtime([endpoint("test/*", self.fn)], name="node%d" % i, start=False,
                                 runtime_settings=settings,
                                 extra_config=extra + "\n" + cluster_group(
                                     name, "n-%d" % i, etcd, ttl_ms=TTL_MS, initial_nodes=n))
            self.rts.append(rt)
        for rt in self.rts:
            rt.start(wait=False)
        for rt in self.rts:
            rt.wait_ready(30)
        self.clients = [rt.client() for rt in self.rts]

    def owner_index(self, id_, type_=COUNTER):
        kg = key_group(type_, id_)
        for i, (a, b) in enumerate(expected_ranges(len(self.rts))):
            if a <= kg <= b:
                return i
        raise AssertionError(kg)

    def ids_owned_by(self, i, count=1, prefix="k", type_=COUNTER):
        out, j = [], 0
        while len(out) < count:
            if self.owner_index("%s%d" % (prefix, j), type_) == i:
                out.append("%s%d" % (prefix, j))
            j += 1
        return out

    def wait_serving(self):
        """Until every node answers for addresses on every node (ranges assigned,
        every owner reachable)."""
        ids = [self.ids_owned_by(i, prefix="ready")[0] for i in range(len(self.rts))]
        for c in self.clients:
            for id_ in ids:
                call_ok(c, id_, 0, timeout=30)
        return ids


def send_req(id_, v, key=""):
    r = ingress_pb2.SendRequest(idempotency_key=key)
    r.target.CopyFrom(types_pb2.Address(type=COUNTER, id=id_))
    r.argument.CopyFrom(int64(v))
    return r


def call_req(id_, v, key=""):
    r = ingress_pb2.CallRequest(idempotency_key=key)
    r.target.CopyFrom(types_pb2.Address(type=COUNTER, id=id_))
    r.argument.CopyFrom(int64(v))
    return r


def n_of(resp):
    """test/counter's n from a GetStateResponse."""
    for v in resp.values:
        if v.name == "n":
            return int.from_bytes(v.value.value, "little", signed=True)
    return 0


def reply_n(call_resp):
    return int.from_bytes(call_resp.reply.value, "little", signed=True)


def test_every_node_serves_every_address(sandbox, etcd_cluster):
    c = Cluster(sandbox, etcd_cluster, "fwd-all")
    c.wait_serving()
    ids = [c.ids_owned_by(i)[0] for i in range(3)]
    total = {id_: 0 for id_ in ids}
    for via in range(3):
        cl = c.clients[via]
        for owner, id_ in enumerate(ids):
            # Call: the owner's reply, the owner named in the trailing metadata.
            resp, info = cl.ingress.Call.with_call(call_req(id_, 2), timeout=scaled(10))
            total[id_] += 2
            assert reply_n(resp) == total[id_]
            md = dict(info.trailing_metadata())
            assert md["x-statemesh-owner"] == "n-%d" % owner
            assert md["x-statemesh-owner-address"] == c.rts[owner].ingress
            # Send: acked after the owner's commit, so it is visible at once.
            _, info = cl.ingress.Send.with_call(send_req(id_, 3), timeout=scaled(10))
            total[id_] += 3
            assert dict(info.trailing_metadata())["x-statemesh-owner"] == "n-%d" % owner
            wait_until(lambda: n_of(cl.get_state(COUNTER, id_)) == total[id_], timeout=10,
                       message="n of %s through n-%d" % (id_, via))
    for owner, id_ in enumerate(ids):
        # GetState through a non-owner reads the owner's store, not its own.
        other = (owner + 1) % 3
        assert c.clients[other].int_state(COUNTER, id_) == total[id_] == 15
        assert c.clients[owner].int_state(COUNTER, id_) == 15
    # The per-address Admin calls too: SetState, Inspect, DeleteState through a non-owner.
    id_ = ids[2]
    cl = c.clients[0]
    req = admin_pb2.SetStateRequest(name="n")
    req.address.CopyFrom(types_pb2.Address(type=COUNTER, id=id_))
    req.value.CopyFrom(int64(100))
    cl.admin.SetState(req, timeout=scaled(10))
    assert c.clients[2].int_state(COUNTER, id_) == 100
    ins = admin_pb2.InspectRequest()
    ins.address.CopyFrom(types_pb2.Address(type=COUNTER, id=id_))
    assert cl.admin.Inspect(ins, timeout=scaled(10)).status.address.id == id_
    dreq = admin_pb2.DeleteStateRequest(name="n")
    dreq.address.CopyFrom(types_pb2.Address(type=COUNTER, id=id_))
    assert cl.admin.DeleteState(dreq, timeout=scaled(10)).deleted == 1
    assert c.clients[2].state(COUNTER, id_) == {}
    # Every node forwarded (its Stats say so), and none is left open.
    for cl in c.clients:
        st = cl.stats()
        assert st["forwarded_calls"] > 0 and st["forwarding_calls"] == 0


def test_all_key_groups_through_random_nodes(sandbox, etcd_cluster):
    c = Cluster(sandbox, etcd_cluster, "fwd-4096")
    c.wait_serving()
    by_kg, j = {}, 0
    while len(by_kg) < KEY_GROUPS:
        id_ = "g%d" % j
        by_kg.setdefault(key_group(COUNTER, id_), id_)
        j += 1
    rnd = random.Random(17)
    kgs = sorted(by_kg)
    futures = []
    for kg in kgs:            # all in flight at once: many forwards per node at a time
        cl = c.clients[rnd.randrange(3)]
        futures.append(cl.ingress.Send.future(send_req(by_kg[kg], kg + 1), timeout=scaled(60)))
    for f in futures:
        f.result()
    futures = []
    for kg in kgs:
        cl = c.clients[rnd.randrange(3)]
        req = admin_pb2.GetStateRequest(name="n")
        req.address.CopyFrom(types_pb2.Address(type=COUNTER, id=by_kg[kg]))
        futures.append(cl.admin.GetState.future(req, timeout=scaled(60)))
    got = [n_of(f.result()) for f in futures]
    assert got == [kg + 1 for kg in kgs]
    # Each value lives on its owner only.
    for kg in (0, 1365, 1366, 2730, 2731, 4095):
        owner = c.owner_index(by_kg[kg])
        req = admin_pb2.GetStateRequest(name="n")
        req.address.CopyFrom(types_pb2.Address(type=COUNTER, id=by_kg[kg]))
        assert n_of(c.clients[owner].admin.GetState(req, timeout=scaled(10))) == kg + 1


def test_idempotency_key_through_two_nodes_applies_once(sandbox, etcd_cluster):
    c = Cluster(sandbox, etcd_cluster, "fwd-idem")
    c.wait_serving()
    id_ = c.ids_owned_by(2)[0]
    key = "k-" + secrets.token_hex(4)
    r1 = c.clients[0].ingress.Call(call_req(id_, 7, key), timeout=scaled(10))
    r2 = c.clients[1].ingress.Call(call_req(id_, 7, key), timeout=scaled(10))
    r3 = c.clients[2].ingress.Call(call_req(id_, 7, key), timeout=scaled(10))
    assert reply_n(r1) == reply_n(r2) == reply_n(r3) == 7
    skey = "s-" + secrets.token_hex(4)
    c.clients[1].ingress.Send(send_req(id_, 5, skey), timeout=scaled(10))
    c.clients[0].ingress.Send(send_req(id_, 5, skey), timeout=scaled(10))
    assert c.clients[2].int_state(COUNTER, id_) == 12
    # A Send's key reused by a Call is refused by the owner, through any node.
    with pytest.raises(grpc.RpcError) as ei:
        c.clients[0].ingress.Call(call_req(id_, 1, skey), timeout=scaled(10))
    assert ei.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert c.clients[1].int_state(COUNTER, id_) == 12


def test_forwarded_call_is_not_forwarded_again(sandbox, etcd_cluster):
    c = Cluster(sandbox, etcd_cluster, "fwd-loop")
    c.wait_serving()
    id_ = c.ids_owned_by(1)[0]
    md = (("x-statemesh-forwarded", "n-7"),)
    for method, req in ((c.clients[0].ingress.Send, send_req(id_, 1)),
                        (c.clients[0].ingress.Call, call_req(id_, 1))):
        with pytest.raises(grpc.RpcError) as ei:
            method(req, metadata=md, timeout=scaled(10))
        e = ei.value
        assert e.code() == grpc.StatusCode.UNAVAILABLE
        assert "owned by node n-1 at %s" % c.rts[1].ingress in e.details()
        assert "not forwarded again" in e.details()
        tmd = dict(e.trailing_metadata())
        assert tmd["x-statemesh-owner"] == "n-1"
        assert tmd["x-statemesh-owner-address"] == c.rts[1].ingress
    req = admin_pb2.GetStateRequest()
    req.address.CopyFrom(types_pb2.Address(type=COUNTER, id=id_))
    with pytest.raises(grpc.RpcError) as ei:
        c.clients[2].admin.GetState(req, metadata=md, timeout=scaled(10))
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    # The owner itself serves a marked call (it is where forwards go).
    c.clients[1].ingress.Send(send_req(id_, 4), metadata=md, timeout=scaled(10))
    assert c.clients[0].int_state(COUNTER, id_) == 4          # the refusals changed nothing
    assert c.clients[0].stats()["forwarded_calls"] >= 1


def test_bad_input_is_refused_on_the_first_node(sandbox, etcd_cluster):
    c = Cluster(sandbox, etcd_cluster, "fwd-bad")
    c.wait_serving()
    id_ = c.ids_owned_by(1)[0]
    before = c.clients[0].stats().get("forwarded_calls", 0)
    bad = send_req(id_, 1)
    bad.target.type = "no-slash"
    with pytest.raises(grpc.RpcError) as ei:
        c.clients[0].ingress.Send(bad, timeout=scaled(10))
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    unknown = send_req(id_, 1)
    unknown.target.type = "nobody/serves"
    with pytest.raises(grpc.RpcError) as ei:
        c.clients[0].ingress.Send(unknown, timeout=scaled(10))
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as ei:      # an oversized idempotency key
        c.clients[0].ingress.Send(send_req(id_, 1, "x" * 5000), timeout=scaled(10))
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert c.clients[0].stats()["forwarded_calls"] == before
    assert c.clients[1].int_state(COUNTER, id_) == 0


def test_owner_killed_unavailable_for_its_addresses_only(sandbox, etcd_cluster):
    c = Cluster(sandbox, etcd_cluster, "fwd-kill")
    c.wait_serving()
    ids = [c.ids_owned_by(i)[0] for i in range(3)]
    c.rts[2].kill9()
    for via in (0, 1):
        # At once (lease still valid, connection refused) and after the lease
        # expired (seen down): UNAVAILABLE, retryable, naming the owner.
        with pytest.raises(grpc.RpcError) as ei:
            c.clients[via].ingress.Send(send_req(ids[2], 1), timeout=scaled(10),
                                        wait_for_ready=False)
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE, ei.value.details()
        assert "n-2" in ei.value.details()
    for via in (0, 1):
        for owner in (0, 1):
            c.clients[via].ingress.Send(send_req(ids[owner], 1), timeout=scaled(10))
    wait_until(lambda: not [n for n in _status_nodes(c.clients[0]) if n == ("n-2", True)],
               timeout=20, message="n-2 seen down")
    with pytest.raises(grpc.RpcError) as ei:
        c.clients[0].ingress.Call(call_req(ids[2], 1), timeout=scaled(10))
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "owned by node n-2" in ei.value.details() and "down" in ei.value.details()
    assert dict(ei.value.trailing_metadata())["x-statemesh-owner"] == "n-2"
    c.rts[2].start()
    assert call_ok(c.clients[0], ids[2], 1, timeout=30) == 1    # back, through a non-owner
    assert c.clients[1].int_state(COUNTER, ids[0]) == 2
    assert c.clients[2].int_state(COUNTER, ids[1]) == 2


def _status_nodes(client):
    t = client.admin.GetTopology(admin_pb2.GetTopologyRequest(), timeout=scaled(10))
    return [(n.id, n.alive) for n in t.nodes]


def test_bearer_tokens_travel_with_the_forward(sandbox, etcd_cluster):
    tokens = {}
    files = []
    for role in ("admin", "client"):
        tokens[role] = secrets.token_hex(16)
        p = sandbox.path("%s.token" % role)
        p.write_text(tokens[role] + "\n")
        p.chmod(0o600)
        files.append({"file": str(p), "role": role})
    c = Cluster(sandbox, etcd_cluster, "fwd-auth", settings={"auth": {"tokens": files}})
    cl_md = (("authorization", "Bearer " + tokens["client"]),)
    ad_md = (("authorization", "Bearer " + tokens["admin"]),)
    ids = [c.ids_owned_by(i)[0] for i in range(3)]

    def through_all():
        for via in range(3):
            for id_ in ids:
                c.clients[via].ingress.Send(send_req(id_, 1), metadata=cl_md, timeout=scaled(5))
        return True
    wait_until(through_all, timeout=30, message="every node forwards with the token")
    for via in range(3):
        with pytest.raises(grpc.RpcError) as ei:
            c.clients[via].ingress.Send(send_req(ids[(via + 1) % 3], 1), timeout=scaled(5))
        assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
    req = admin_pb2.GetStateRequest(name="n")
    req.address.CopyFrom(types_pb2.Address(type=COUNTER, id=ids[1]))
    # The client role may not read state: the owner's refusal, through n-0.
    with pytest.raises(grpc.RpcError) as ei:
        c.clients[0].admin.GetState(req, metadata=cl_md, timeout=scaled(5))
    assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
    got = c.clients[0].admin.GetState(req, metadata=ad_md, timeout=scaled(5))
    assert n_of(got) >= 3


def stream_msgs(items, start_seq=1):
    """SendStreamRequests of 100 messages each: items = [(id, value)], seqs from start_seq."""
    reqs, cur = [], ingress_pb2.SendStreamRequest()
    for k, (id_, v) in enumerate(items):
        m = cur.messages.add(seq=start_seq + k)
        m.target.CopyFrom(types_pb2.Address(type=COUNTER, id=id_))
        m.argument.CopyFrom(int64(v))
        if len(cur.messages) == 100:
            reqs.append(cur)
            cur = ingress_pb2.SendStreamRequest()
    if len(cur.messages):
        reqs.append(cur)
    return reqs


def test_send_stream_with_mixed_owners(sandbox, etcd_cluster):
    c = Cluster(sandbox, etcd_cluster, "fwd-stream")
    c.wait_serving()
    ids = [id_ for i in range(3) for id_ in c.ids_owned_by(i, count=40, prefix="s%d-" % i)]
    rnd = random.Random(5)
    for via in range(3):
        items = [(rnd.choice(ids), 1) for _ in range(3000)]
        acks, errors = [], []
        for resp in c.clients[via].ingress.SendStream(iter(stream_msgs(items)), timeout=scaled(60)):
            acks.append(resp.committed_through)
            errors.extend(resp.errors)
        assert errors == []
        assert acks == sorted(acks) and acks[-1] == 3000      # in order, to the last seq
        want = {}
        for id_, _ in items:
            want[id_] = want.get(id_, 0) + 1
        for id_ in ids:
            want.setdefault(id_, 0)
        # Every message applied once, on its owner.
        for id_ in ids:
            assert c.clients[c.owner_index(id_)].int_state(COUNTER, id_) == want[id_], id_
        for id_ in ids:                      # reset for the next round
            dreq = admin_pb2.DeleteStateRequest()
            dreq.address.CopyFrom(types_pb2.Address(type=COUNTER, id=id_))
            c.clients[via].admin.DeleteState(dreq, timeout=scaled(10))
    # The owner's own refusal of a message comes back as that message's error.
    bad = stream_msgs([(ids[-1], 1), (ids[-2], 1)])
    bad[0].messages[1].idempotency_key = "k"
    bad[0].messages[1].delay_ms = 10 ** 13            # over 365 days: refused locally too
    out = list(c.clients[0].ingress.SendStream(iter(bad), timeout=scaled(30)))
    errs = [e for r in out for e in r.errors]
    assert [(e.seq, e.code) for e in errs] == [(2, grpc.StatusCode.INVALID_ARGUMENT.value[0])]
    assert out[-1].committed_through == 2


def test_send_stream_ack_waits_for_the_owner(sandbox, etcd_cluster):
    """A message forwarded to a stopped owner is not acknowledged until the
    owner commits it (SIGSTOP shorter than the 5 s lease)."""
    c = Cluster(sandbox, etcd_cluster, "fwd-ackwait")
    c.wait_serving()
    local = c.ids_owned_by(0)[0]
    remote = c.ids_owned_by(2)[0]
    q = queue.Queue()

    def reqs():
        while True:
            r = q.get()
            if r is None:
                return
            yield r
    resp = c.clients[0].ingress.SendStream(reqs(), timeout=scaled(60))
    q.put(stream_msgs([(local, 1)])[0])
    assert next(resp).committed_through == 1
    os.kill(c.rts[2].pid, signal.SIGSTOP)
    try:
        q.put(stream_msgs([(remote, 1), (local, 1)], start_seq=2)[0])
        # n-0 commits seq 3 at once; the ack stays below seq 2 while n-2 is stopped.
        wait_until(lambda: c.clients[1].int_state(COUNTER, local) == 2, timeout=10,
                   message="seq 3 committed on n-0")
        got = []
        t = threading.Thread(target=lambda: got.append(next(resp)), daemon=True)
        t.start()
        t.join(1.0)
        assert got == []             # nothing above seq 1 while the owner cannot commit
    finally:
        os.kill(c.rts[2].pid, signal.SIGCONT)
    t.join(scaled(20))
    last = got[-1].committed_through if got else 0
    while last < 3:
        last = next(resp).committed_through
    assert last == 3
    q.put(None)
    for _ in resp:                   # ends OK once everything is acknowledged
        pass
    assert c.clients[2].int_state(COUNTER, remote) == 1
    assert c.clients[1].int_state(COUNTER, local) == 2


def subscribe_req(start="EARLIEST", follow=False, from_offset=0, node_offsets=None):
    r = ingress_pb2.SubscribeRequest(egress="log", follow=follow, from_offset=from_offset,
                                     start=getattr(ingress_pb2.SubscribeRequest, start))
    for node, off in (node_offsets or {}).items():
        r.node_offsets.add(node=node, offset=off)
    return r


def records(stream):
    return [(e.node, e.offset, e.value.value.decode(), e.source.id)
            for resp in stream for e in resp.records]


def test_subscribe_on_one_node_sees_every_node(sandbox, etcd_cluster):
    c = Cluster(sandbox, etcd_cluster, "fwd-sub", extra='egresses = ( { name = "log"; } );')
    c.wait_serving()
    ids = [c.ids_owned_by(i, prefix="e", type_="test/effects")[0] for i in range(3)]
    for i, id_ in enumerate(ids):       # through node 0: forwarded to each owner
        c.clients[0].call("test/effects", id_, ";".join("egress log r%d-%d" % (i, k)
                                                        for k in range(5)))
    got = records(c.clients[1].ingress.Subscribe(subscribe_req(), timeout=scaled(20)))
    assert len(got) == 15
    for i, id_ in enumerate(ids):
        mine = [g for g in got if g[0] == "n-%d" % i]
        # Per node: its offsets, in commit order, every record once.
        assert mine == [("n-%d" % i, k + 1, "r%d-%d" % (i, k), id_) for k in range(5)]
    # The SDKs and the CLI show each record's node.
    with statemesh.Client(c.rts[2].ingress) as sdk:
        recs = list(sdk.subscribe("log", earliest=True, follow=False, timeout=scaled(20)))
    assert sorted((r.node, r.offset) for r in recs) == sorted((g[0], g[1]) for g in got)
    p = subprocess.run([CLI, "--address", c.rts[0].ingress, "egress", "tail", "log"],
                       capture_output=True, text=True, timeout=scaled(30))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 15 and sum(l.startswith("n-1/") for l in lines) == 5, p.stdout
    p = subprocess.run([CLI, "--address", c.rts[0].ingress, "egress", "tail", "log", "--json",
                        "--from", "5"], capture_output=True, text=True, timeout=scaled(30))
    assert sorted((json.loads(l)["node"], json.loads(l)["offset"]) for l in p.stdout.splitlines()) \
        == [("n-0", 5), ("n-1", 5), ("n-2", 5)]
    # Resuming with a per-node position: n-0 from offset 4, the others from the start.
    got = records(c.clients[2].ingress.Subscribe(
        subscribe_req("OFFSET", node_offsets={"n-0": 4}), timeout=scaled(20)))
    assert sorted(g[1] for g in got if g[0] == "n-0") == [4, 5]
    assert len([g for g in got if g[0] != "n-0"]) == 10
    # Following: a record committed on n-2 later reaches a subscriber on n-0.
    stream = c.clients[0].ingress.Subscribe(subscribe_req("LATEST", follow=True),
                                             timeout=scaled(30))
    seen = []

    def reader():
        try:
            for resp in stream:
                seen.extend((e.node, e.value.value.decode()) for e in resp.records)
        except grpc.RpcError as e:         # our cancel below
            assert e.code() == grpc.StatusCode.CANCELLED
    t = threading.Thread(target=reader, daemon=True)
    t.start()

    def write_and_see():
        c.clients[1].call("test/effects", ids[2], "egress log later")
        return ("n-2", "later") in seen
    wait_until(write_and_see, timeout=20, interval=0.3, message="a later record from n-2")
    stream.cancel()
    t.join(scaled(10))
    # An egress the node does not know is refused at once; a marked request is
    # answered from the node's own log only.
    with pytest.raises(grpc.RpcError) as ei:
        list(c.clients[0].ingress.Subscribe(ingress_pb2.SubscribeRequest(egress="nope"),
                                            timeout=scaled(10)))
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    own = records(c.clients[1].ingress.Subscribe(subscribe_req(), timeout=scaled(10),
                                                 metadata=(("x-statemesh-forwarded", "n-x"),)))
    assert own and {g[0] for g in own} == {"n-1"}


def test_forwarding_over_mtls(sandbox, etcd_cluster, certs):
    """runtime.tls with client certificates required: a node forwards with the
    runtime's CA and its own certificate as client identity."""
    from test_tls import _p, _server_tls
    c = Cluster(sandbox, etcd_cluster, "fwd-tls", settings={"tls": _server_tls(certs, mtls=True)})
    ids = [c.ids_owned_by(i)[0] for i in range(3)]
    clients = [statemesh.Client(rt.ingress, timeout=scaled(10), tls_ca=_p(certs, "ca.crt"),
                                tls_cert=_p(certs, "client.crt"), tls_key=_p(certs, "client.key"))
               for rt in c.rts]
    try:
        def through(via, id_):
            try:
                return clients[via].call(COUNTER, id_, 1, type=statemesh.IntType)
            except statemesh.Unavailable:
                return None
        for via in range(3):
            for owner in range(3):
                if via != owner:
                    wait_until(lambda: through(via, ids[owner]), timeout=30,
                               message="n-%d forwards to n-%d over mTLS" % (via, owner))
        for owner in range(3):
            assert clients[owner].call(COUNTER, ids[owner], 0, type=statemesh.IntType) == 2
    finally:
        for cl in clients:
            cl.close()


def test_send_stream_owner_killed_ends_with_what_is_committed(sandbox, etcd_cluster):
    c = Cluster(sandbox, etcd_cluster, "fwd-streamkill")
    c.wait_serving()
    local = c.ids_owned_by(0)[0]
    remote = c.ids_owned_by(2)[0]
    q = queue.Queue()

    def reqs():
        while True:
            r = q.get()
            if r is None:
                return
            yield r
    resp = c.clients[0].ingress.SendStream(reqs(), timeout=scaled(60))
    q.put(stream_msgs([(remote, 1), (local, 1)])[0])
    first = next(resp)
    while first.committed_through < 2:
        first = next(resp)
    c.rts[2].kill9()
    q.put(stream_msgs([(local, 1), (remote, 1), (local, 1)], start_seq=3)[0])
    # Either the owner is already seen down (a per-message UNAVAILABLE for seq
    # 4) or its forwarded stream breaks: the client's stream ends UNAVAILABLE
    # saying what is committed. Never an ack for seq 4 without its owner.
    errors, acked = [], 2
    try:
        for r in resp:
            errors.extend((e.seq, e.code) for e in r.errors)
            acked = r.committed_through
            if acked >= 5:
                break
        ended = None
    except grpc.RpcError as e:
        ended = e
    q.put(None)
    if ended is not None:
        assert ended.code() == grpc.StatusCode.UNAVAILABLE, ended.details()
        assert "n-2" in ended.details() and "re-send the rest" in ended.details()
        assert acked < 4
    else:
        assert errors == [(4, grpc.StatusCode.UNAVAILABLE.value[0])]
    c.rts[2].start()
    assert call_ok(c.clients[1], remote, 0, timeout=30) == 1     # seq 1 only, once
