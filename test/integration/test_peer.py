"""
Cross-node exactly-once delivery (runtime/peer.c, docs/cluster.md "Cross-node
messages"): a function on one node sends to an address another node owns;
the message leaves through the sender's durable outbox and the receiver's
channel table drops duplicates and refuses lower epochs. Real 3-member etcd,
three real statemeshd nodes, one shared testfn (test/forward sends int64 1 to
the "TYPE ID" it is given; test/counter adds and replies the sum).
Lease TTL 5 s.
"""

import shutil
import time

import grpc
import pytest

from etcd_cluster import etcd_cluster  # noqa: F401  (fixture)
from harness import int64, scaled, string, wait_until
from test_cluster import COUNTER, Nodes, key_group, ranges_of, status
from test_tls import certs  # noqa: F401  (fixture)

pytestmark = pytest.mark.needs("statemeshd", "statemesh", "test/fn/testfn")

FORWARD = "test/forward"
TTL = 5000


def peer_pb():
    from statemesh.v1 import peer_pb2
    return peer_pb2


def send_key(client, type_, id_, value, key, timeout=20):
    """Send with an idempotency key, retrying UNAVAILABLE (node down/fenced)."""
    req = client.send_request(type_, id_, value)
    req.idempotency_key = key
    deadline = time.monotonic() + scaled(timeout)
    while True:
        try:
            return client.ingress.Send(req, timeout=scaled(5), wait_for_ready=True)
        except grpc.RpcError as e:
            if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) \
                    or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def outbox_for(rt, node):
    return [n.get("outbox_frames", 0) for n in status(rt)["nodes"] if n["id"] == node][0]


def wait_counter(client, id_, want, timeout=30):
    wait_until(lambda: client.int_state(COUNTER, id_) == want, timeout=timeout,
               message="counter %s reaches %d" % (id_, want))


def deliver(target, frames):
    """Sends one PeerFrames to the node at `target`; returns its PeerAck list."""
    pb = peer_pb()
    ch = grpc.insecure_channel(target)
    try:
        stream = ch.stream_stream("/statemesh.v1.Peer/Deliver",
                                  request_serializer=pb.PeerFrames.SerializeToString,
                                  response_deserializer=pb.PeerAcks.FromString)
        out = []
        for acks in stream(iter([pb.PeerFrames(src_node="test", frames=frames)]),
                           timeout=scaled(15)):
            out.extend(acks.acks)
            if len(out) >= len(frames):
                break
        return out
    finally:
        ch.close()


def message_frame(src_kg, epoch, type_, id_, k, seq, kind=1, first=None):
    pb = peer_pb()
    from statemesh.v1 import types_pb2
    pm = pb.PeerMessage(target=types_pb2.Address(type=type_, id=id_),
                        argument=types_pb2.TypedValue(typename="statemesh/int64",
                                                      value=int64(k).value))
    return pb.PeerFrame(src_kg=src_kg, src_epoch=epoch, dst_kg=key_group(type_, id_), seq=seq,
                        first=(seq == 1) if first is None else first, kind=kind,
                        payload=pm.SerializeToString())


def test_message_to_another_node_delivered_once_and_reply_comes_back(sandbox, etcd_cluster):
    nodes = Nodes(sandbox, etcd_cluster, "peer-once", ttl_ms=TTL)
    nodes.wait_assigned()
    fwd = nodes.ids_owned_by(0, type_=FORWARD)[0]
    remote = nodes.ids_owned_by(1, prefix="r")[0]
    nodes.clients[0].send(FORWARD, fwd, string("%s %s" % (COUNTER, remote)))
    wait_counter(nodes.clients[1], remote, 1)
    # a Call on n-0 whose chain ends on n-1: n-1's reply travels back
    assert nodes.clients[0].call(FORWARD, fwd, string("%s %s" % (COUNTER, remote)),
                                 timeout=20) == 2
    # the same with an idempotency key: the reply is stored on n-0 and a retry gets it
    req = nodes.clients[0].send_request(FORWARD, fwd, string("%s %s" % (COUNTER, remote)))
    from statemesh.v1 import ingress_pb2
    creq = ingress_pb2.CallRequest(target=req.target, argument=req.argument,
                                   idempotency_key="call-1")
    r1 = nodes.clients[0].ingress.Call(creq, timeout=scaled(20)).reply
    r2 = nodes.clients[0].ingress.Call(creq, timeout=scaled(20)).reply
    assert r1 == r2 and r1.value == int64(3).value
    time.sleep(0.5)                       # would a duplicate arrive? (it must not)
    assert nodes.clients[1].int_state(COUNTER, remote) == 3
    assert nodes.clients[0].stats()["queued_messages"] == 0   # nothing held on n-0
    # a delayed message from n-0 to n-1's address: kept on n-0 until due, then sent
    eff = nodes.ids_owned_by(0, type_="test/effects", prefix="e")[0]
    nodes.clients[0].send("test/effects", eff, string("after 300 %s %s" % (COUNTER, remote)))
    wait_counter(nodes.clients[1], remote, 4)
    wait_until(lambda: outbox_for(nodes.rts[0], "n-1") == 0, timeout=15,
               message="n-0's outbox acked")


def test_receiver_down_outbox_waits_then_drains(sandbox, etcd_cluster):
    nodes = Nodes(sandbox, etcd_cluster, "peer-down", ttl_ms=TTL)
    nodes.wait_assigned()
    fwd = nodes.ids_owned_by(0, type_=FORWARD, count=3)
    remote = nodes.ids_owned_by(1, prefix="r", count=3)
    nodes.rts[1].kill9()
    for i in range(30):
        nodes.clients[0].send(FORWARD, fwd[i % 3], string("%s %s" % (COUNTER, remote[i % 3])))
    wait_until(lambda: outbox_for(nodes.rts[0], "n-1") == 30, timeout=20,
               message="30 frames wait in n-0's outbox for n-1")
    text = __import__("subprocess").run(
        [str(__import__("harness").binary("statemesh")), "--address", nodes.rts[0].ingress,
         "cluster", "status"], capture_output=True, text=True, timeout=30).stdout
    assert "outbox_frames=30" in text
    nodes.rts[0].kill9()                  # the outbox is durable: the sender restarts too
    nodes.rts[0].start()
    nodes.rts[1].start()
    for r in remote:
        wait_counter(nodes.clients[1], r, 10)
    wait_until(lambda: outbox_for(nodes.rts[0], "n-1") == 0, timeout=20,
               message="the outbox drained")
    for r in remote:
        assert nodes.clients[1].int_state(COUNTER, r) == 10


def test_cross_node_chain_under_kill9_is_exact(sandbox, etcd_cluster):
    """Sends through forwarders on n-0 and n-2 to counters on n-1 and n-0 while
    n-1 (a receiver) and n-0 (a sender and receiver) are killed -9 and restarted."""
    nodes = Nodes(sandbox, etcd_cluster, "peer-chain", ttl_ms=TTL)
    nodes.wait_assigned()
    fwd0 = nodes.ids_owned_by(0, type_=FORWARD, count=2)
    fwd2 = nodes.ids_owned_by(2, type_=FORWARD, count=2, prefix="g")
    tgt1 = nodes.ids_owned_by(1, prefix="a", count=2)
    tgt0 = nodes.ids_owned_by(0, prefix="b", count=2)
    want = {}
    n = 0

    def burst(count, down=None):
        nonlocal n
        for _ in range(count):
            i = n
            n += 1
            if i % 2 == 0 and down != 0:
                src, f, tgt = 0, fwd0[i % 4 // 2], tgt1[i % 3 % 2]
            else:
                src, f, tgt = 2, fwd2[i % 4 // 2], tgt0[i % 3 % 2]
            send_key(nodes.clients[src], FORWARD, f, string("%s %s" % (COUNTER, tgt)), "m%d" % i)
            want[tgt] = want.get(tgt, 0) + 1

    for victim in (1, 0, 1, 0):
        burst(20)
        nodes.rts[victim].kill9()
        burst(10, down=victim)             # to a dead receiver: waits in the outboxes
        nodes.rts[victim].start()
    burst(10)
    for tgt, k in want.items():
        owner = nodes.owner_index(tgt)
        wait_counter(nodes.clients[owner], tgt, k, timeout=40)
    time.sleep(0.5)
    for tgt, k in want.items():
        assert nodes.clients[nodes.owner_index(tgt)].int_state(COUNTER, tgt) == k


def test_zombie_and_bad_frames_are_refused_and_change_nothing(sandbox, etcd_cluster):
    nodes = Nodes(sandbox, etcd_cluster, "peer-bad", ttl_ms=TTL)
    views = nodes.wait_assigned()
    epoch = ranges_of(views[0])[0][3]
    pb = peer_pb()
    target = nodes.ids_owned_by(1, prefix="z")[0]
    src_kg = 5                              # owned by n-0
    rt1 = nodes.rts[1].ingress
    # a frame from a stale epoch: refused
    acks = deliver(rt1, [message_frame(src_kg, epoch - 1, COUNTER, target, 100, 1)])
    assert [a.status for a in acks] == [pb.PEER_ACK_REJECTED]
    assert "older than its range's epoch" in acks[0].reason
    # a good frame is applied once; its duplicate is acked without effect; a gap is refused
    acks = deliver(rt1, [message_frame(src_kg, epoch, COUNTER, target, 7, 1),
                         message_frame(src_kg, epoch, COUNTER, target, 7, 1),
                         message_frame(src_kg, epoch, COUNTER, target, 7, 3)])
    assert [a.status for a in acks] == [pb.PEER_ACK_OK, pb.PEER_ACK_OK, pb.PEER_ACK_GAP]
    assert acks[2].expected_seq == 2
    wait_counter(nodes.clients[1], target, 7)
    # a key group n-1 does not own
    other = nodes.ids_owned_by(2, prefix="o")[0]
    acks = deliver(rt1, [message_frame(src_kg, epoch, COUNTER, other, 1, 1)])
    assert acks[0].status == pb.PEER_ACK_NOT_OWNER and acks[0].revision == epoch
    # garbage payload, unknown key group, unknown kind, an unserved type, a mismatched kg
    kg1 = key_group(COUNTER, target)
    bad = [pb.PeerFrame(src_kg=src_kg, src_epoch=epoch, dst_kg=kg1, seq=2, kind=1,
                        payload=b"\xff\xff\xff garbage"),
           pb.PeerFrame(src_kg=src_kg, src_epoch=epoch, dst_kg=9999, seq=2, kind=1),
           pb.PeerFrame(src_kg=src_kg, src_epoch=epoch, dst_kg=kg1, seq=2, kind=77),
           message_frame(src_kg, epoch, "nosuch/type", target, 1, 2),
           message_frame(src_kg, epoch, COUNTER, target, 1, 1)]
    bad[3].dst_kg = kg1
    bad[4].dst_kg = (kg1 + 1) if kg1 < 2730 else kg1 - 1     # a new channel, wrong kg
    acks = deliver(rt1, bad)
    assert [a.status for a in acks] == [pb.PEER_ACK_INVALID] * 5, acks
    assert "not a PeerMessage" in acks[0].reason and "unknown frame kind" in acks[2].reason
    # a message that is not a PeerFrames at all ends the stream
    ch = grpc.insecure_channel(rt1)
    raw = ch.stream_stream("/statemesh.v1.Peer/Deliver")
    with pytest.raises(grpc.RpcError) as ei:
        list(raw(iter([b"\x0a\xff\xff\xff"]), timeout=scaled(10)))
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ch.close()
    # nothing changed; the next good frame (seq 2) still applies
    assert nodes.clients[1].int_state(COUNTER, target) == 7
    acks = deliver(rt1, [message_frame(src_kg, epoch, COUNTER, target, 1, 2)])
    assert acks[0].status == pb.PEER_ACK_OK
    wait_counter(nodes.clients[1], target, 8)
    assert nodes.rts[1].alive


def test_runtime_alone_refuses_peer_frames(rt_env):
    rt, _fn, _client = rt_env
    pb = peer_pb()
    with pytest.raises(grpc.RpcError) as ei:
        deliver(rt.ingress, [pb.PeerFrame(src_kg=1, src_epoch=1, dst_kg=2, seq=1, kind=1)])
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not part of a cluster" in ei.value.details()


def test_outbox_travels_in_a_savepoint(sandbox, etcd_cluster):
    """O (and C) records are per key group: a savepoint of the sender holds its
    unacknowledged frames, and a node restored from it sends them."""
    from harness import run_cli
    nodes = Nodes(sandbox, etcd_cluster, "peer-sp", ttl_ms=TTL)
    nodes.wait_assigned()
    fwd = nodes.ids_owned_by(0, type_=FORWARD)[0]
    remote = nodes.ids_owned_by(1, prefix="s")[0]
    nodes.rts[1].kill9()
    for _ in range(12):
        nodes.clients[0].send(FORWARD, fwd, string("%s %s" % (COUNTER, remote)))
    wait_until(lambda: outbox_for(nodes.rts[0], "n-1") == 12, timeout=20,
               message="12 frames in n-0's outbox")
    sp = sandbox.path("sp")
    p = run_cli(["savepoint", "create", sp, "--ranges", 3], address=nodes.rts[0].ingress)
    assert p.returncode == 0, p.stderr
    v = run_cli(["savepoint", "verify", sp], address="127.0.0.1:1")
    assert v.returncode == 0, v.stderr
    nodes.rts[0].kill9()
    shutil.rmtree(nodes.rts[0].data_dir)
    nodes.rts[0].args = ["--from-savepoint", str(sp)]
    nodes.rts[0].start()
    assert "event=peer.outbox_recovered frames=12" in nodes.rts[0].log()
    nodes.rts[1].start()
    wait_counter(nodes.clients[1], remote, 12)
    wait_until(lambda: outbox_for(nodes.rts[0], "n-1") == 0, timeout=20,
               message="the restored outbox drained")


@pytest.mark.parametrize("auth", [False, True], ids=["mtls", "mtls+auth"])
def test_nodes_talk_over_mtls(sandbox, etcd_cluster, certs, auth):
    """runtime.tls with require_client_cert: the nodes verify each other with
    runtime.tls.ca and present runtime.tls.cert as their client certificate.
    With runtime.auth, that certificate mapped to the role `peer` lets the
    nodes in, and only them: a client's certificate gets PERMISSION_DENIED."""
    import statemesh
    from harness import endpoint
    from test_cluster import cluster_group, expected_ranges
    tls = {"cert": str(certs / "server.crt"), "key": str(certs / "server.key"),
           "ca": str(certs / "ca.crt"), "require_client_cert": True}
    settings = {"tls": tls}
    if auth:
        settings["auth"] = {"certificates": [{"identity": "localhost", "role": "peer"},
                                             {"identity": "client-1.example", "role": "client"}]}
    fn = sandbox.testfn()
    name = "peer-tls-auth" if auth else "peer-tls"
    rts = [sandbox.runtime([endpoint("test/*", fn)], name="tnode%d" % i, start=False,
                           runtime_settings=settings,
                           extra_config=cluster_group(name, "n-%d" % i, etcd_cluster,
                                                      ttl_ms=TTL, initial_nodes=2))
           for i in range(2)]
    for rt in rts:
        rt.start(wait=False)
    for rt in rts:
        rt.wait_ready(30)

    def owned_by(i, prefix, type_):
        a, b = expected_ranges(2)[i]
        return next("%s%d" % (prefix, j) for j in range(10000)
                    if a <= key_group(type_, "%s%d" % (prefix, j)) <= b)
    fwd, remote = owned_by(0, "f", FORWARD), owned_by(1, "r", COUNTER)
    kw = dict(timeout=scaled(20), tls_ca=tls["ca"], tls_cert=str(certs / "client.crt"),
              tls_key=str(certs / "client.key"))
    with statemesh.Client(rts[0].ingress, **kw) as c0, statemesh.Client(rts[1].ingress, **kw) as c1:
        def first_call():
            try:
                return c0.call(FORWARD, fwd, "%s %s" % (COUNTER, remote))  # n-0 -> n-1 -> n-0
            except statemesh.errors.Unavailable:
                return None                                # ranges not assigned everywhere yet
        assert wait_until(first_call, timeout=30, interval=0.2, message="the first call") == 1
        assert c1.call(COUNTER, remote, 0) == 1
    assert "event=peer.auth" not in rts[0].log()
    if auth:                                               # a client may not speak Peer
        pb = peer_pb()
        creds = grpc.ssl_channel_credentials(
            open(tls["ca"], "rb").read(), open(certs / "client.key", "rb").read(),
            open(certs / "client.crt", "rb").read())
        ch = grpc.secure_channel(rts[1].ingress, creds)
        stream = ch.stream_stream("/statemesh.v1.Peer/Deliver",
                                  request_serializer=pb.PeerFrames.SerializeToString,
                                  response_deserializer=pb.PeerAcks.FromString)
        with pytest.raises(grpc.RpcError) as ei:
            list(stream(iter([pb.PeerFrames(src_node="x")]), timeout=scaled(10)))
        assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
        ch.close()
