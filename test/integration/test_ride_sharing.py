"""
The ride-sharing example (examples/ride-sharing/ride.c) against the real
runtime, driven through the ingress: drivers join geocells, passengers request
rides, the chain passenger -> ride -> geocell -> driver -> ride -> passenger
answers the passenger's Call, and every lifecycle event lands in the
`ride-events` egress exactly once.
"""

import json
import time
from concurrent import futures

import pytest

from harness import endpoint, ingress_pb2, json_value, scaled, wait_until

pytestmark = pytest.mark.needs("statemeshd", "examples/ride-sharing/ride")

EGRESS = 'egresses = ( { name = "ride-events"; } );'


def start(sandbox, pickup_timeout_ms=600000):
    from harness import binary
    fn = sandbox.server([str(binary("examples/ride-sharing/ride")), "--pickup-timeout-ms",
                         str(pickup_timeout_ms)], name="ride")
    rt = sandbox.runtime([endpoint("ride/*", fn)], extra_config=EGRESS)
    return rt, rt.client()


@pytest.fixture
def ride(sandbox):
    return start(sandbox)


def call(cl, type_, id_, obj):
    return cl.call(type_, id_, json_value(obj))


def state(cl, type_, id_, name):
    return cl.state(type_, id_).get(name)


def events(cl, ride=None):
    req = ingress_pb2.SubscribeRequest(egress="ride-events",
                                       start=ingress_pb2.SubscribeRequest.EARLIEST)
    out = []
    for resp in cl.ingress.Subscribe(req, timeout=scaled(20), wait_for_ready=True):
        for r in resp.records:
            assert r.value.typename == "statemesh/json"
            e = json.loads(r.value.value)
            assert r.source.type == "ride/ride" and r.source.id == e["ride"]
            if ride is None or e["ride"] == ride:
                out.append(e)
    return out


def kinds(evs):
    return [e["event"] for e in evs]


def test_full_ride_lifecycle(ride):
    rt, cl = ride
    for d, cell in (("d1", "c1"), ("d2", "c1"), ("d3", "c2")):
        assert call(cl, "ride/driver", d, {"cell": cell}) == {"cell": cell, "status": "available",
                                                              "ride": None}
    cl.wait_drained()
    assert state(cl, "ride/geocell", "c1", "drivers") == ["d1", "d2"]
    assert state(cl, "ride/geocell", "c2", "drivers") == ["d3"]

    # the Call is answered at the end of the chain, by the passenger
    reply = call(cl, "ride/passenger", "alice", {"op": "request", "cell": "c1"})
    assert reply == {"ride": "alice-1", "status": "driver_assigned", "driver": "d1"}
    assert state(cl, "ride/ride", "alice-1", "ride") == {
        "passenger": "alice", "cell": "c1", "status": "driver_assigned", "driver": "d1", "attempts": 1}
    assert state(cl, "ride/driver", "d1", "driver") == {"cell": "c1", "status": "busy", "ride": "alice-1"}
    assert state(cl, "ride/geocell", "c1", "drivers") == ["d2"]
    assert state(cl, "ride/passenger", "alice", "passenger")["status"] == "assigned"

    call(cl, "ride/driver", "d1", {"op": "pickup"})
    wait_until(lambda: state(cl, "ride/passenger", "alice", "passenger")["status"] == "riding")
    assert state(cl, "ride/ride", "alice-1", "ride")["status"] == "started"

    call(cl, "ride/driver", "d1", {"op": "dropoff"})
    cl.wait_drained()
    assert state(cl, "ride/ride", "alice-1", "ride")["status"] == "completed"
    assert state(cl, "ride/passenger", "alice", "passenger") == {
        "status": "idle", "ride": "alice-1", "driver": None, "rides": 1}
    assert state(cl, "ride/driver", "d1", "driver") == {"cell": "c1", "status": "available", "ride": None}
    assert state(cl, "ride/geocell", "c1", "drivers") == ["d2", "d1"]     # back in line

    evs = events(cl, "alice-1")
    assert kinds(evs) == ["requested", "driver_assigned", "started", "completed"]
    assert evs[0] == {"event": "requested", "ride": "alice-1", "passenger": "alice", "cell": "c1"}
    assert all(e["driver"] == "d1" for e in evs[1:])


def test_no_driver_available_and_request_again(ride):
    rt, cl = ride
    reply = call(cl, "ride/passenger", "bob", {"op": "request", "cell": "empty"})
    assert reply == {"ride": "bob-1", "status": "no_driver_available"}
    assert kinds(events(cl, "bob-1")) == ["requested", "no_driver_available"]
    assert state(cl, "ride/passenger", "bob", "passenger")["status"] == "idle"
    call(cl, "ride/driver", "d9", {"cell": "empty"})
    reply = call(cl, "ride/passenger", "bob", {"op": "request", "cell": "empty"})
    assert reply == {"ride": "bob-2", "status": "driver_assigned", "driver": "d9"}


def test_one_active_ride_per_passenger(ride):
    rt, cl = ride
    call(cl, "ride/driver", "d1", {"cell": "c1"})
    call(cl, "ride/driver", "d2", {"cell": "c1"})
    assert call(cl, "ride/passenger", "p", {"op": "request", "cell": "c1"})["driver"] == "d1"
    reply = call(cl, "ride/passenger", "p", {"op": "request", "cell": "c1"})
    assert reply == {"error": "passenger p already has ride p-1 (assigned)"}
    cl.wait_drained()
    assert state(cl, "ride/geocell", "c1", "drivers") == ["d2"]        # nobody else was taken
    assert state(cl, "ride/ride", "p-2", "ride") is None


def test_driver_moves_and_leaves(ride):
    rt, cl = ride
    call(cl, "ride/driver", "d1", {"cell": "c1"})
    call(cl, "ride/driver", "d1", {"op": "join", "cell": "c2"})
    cl.wait_drained()
    assert state(cl, "ride/geocell", "c1", "drivers") == []
    assert state(cl, "ride/geocell", "c2", "drivers") == ["d1"]
    assert call(cl, "ride/passenger", "x", {"op": "request", "cell": "c1"})["status"] == \
        "no_driver_available"
    assert call(cl, "ride/driver", "d1", {"op": "leave"}) == {"cell": None, "status": "off", "ride": None}
    cl.wait_drained()
    assert state(cl, "ride/geocell", "c2", "drivers") == []


def test_bad_input_is_answered_and_changes_nothing(ride):
    rt, cl = ride
    call(cl, "ride/driver", "d1", {"cell": "c1"})
    assert "error" in cl.call("ride/driver", "d1", "not json")
    assert "error" in call(cl, "ride/driver", "d1", {"op": "fly"})
    assert "error" in call(cl, "ride/driver", "d1", {"op": "pickup"})       # no ride yet
    assert "error" in call(cl, "ride/passenger", "p", {"op": "request"})    # no cell
    assert "error" in call(cl, "ride/passenger", "p", [1, 2])
    cl.wait_drained()
    assert state(cl, "ride/driver", "d1", "driver") == {"cell": "c1", "status": "available", "ride": None}
    assert state(cl, "ride/passenger", "p", "passenger") is None
    assert events(cl) == []


def test_many_concurrent_requests_never_share_a_driver(ride):
    rt, cl = ride
    drivers = {"c1": ["a%d" % i for i in range(8)], "c2": ["b%d" % i for i in range(5)]}
    for cell, ds in drivers.items():
        for d in ds:
            call(cl, "ride/driver", d, {"cell": cell})
    cl.wait_drained()
    passengers = [("p%d" % i, "c1" if i % 2 else "c2") for i in range(24)]   # 12 per cell
    with futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda pc: call(cl, "ride/passenger", pc[0],
                                                {"op": "request", "cell": pc[1]}), passengers))
    assigned = [r["driver"] for r in replies if r["status"] == "driver_assigned"]
    assert len(assigned) == 8 + 5 and len(set(assigned)) == len(assigned)
    for (p, cell), r in zip(passengers, replies):
        if r["status"] == "driver_assigned":
            assert r["driver"] in drivers[cell]
    assert sum(r["status"] == "no_driver_available" for r in replies) == 24 - 13
    cl.wait_drained()
    assert state(cl, "ride/geocell", "c1", "drivers") == []
    evs = events(cl)
    assert sorted(kinds(evs)).count("requested") == 24
    assert kinds(evs).count("driver_assigned") == 13
    assert kinds(evs).count("no_driver_available") == 11


def test_pickup_timeout_cancels_the_ride(sandbox):
    rt, cl = start(sandbox, pickup_timeout_ms=1000)
    call(cl, "ride/driver", "d1", {"cell": "c1"})
    call(cl, "ride/driver", "d2", {"cell": "c1"})
    assert call(cl, "ride/passenger", "slow", {"op": "request", "cell": "c1"})["driver"] == "d1"
    assert call(cl, "ride/passenger", "fast", {"op": "request", "cell": "c1"})["driver"] == "d2"
    call(cl, "ride/driver", "d2", {"op": "pickup"})      # in time: its timeout is cancelled
    wait_until(lambda: kinds(events(cl, "slow-1"))[-1:] == ["cancelled"], timeout=15)
    evs = events(cl, "slow-1")
    assert kinds(evs) == ["requested", "driver_assigned", "cancelled"]
    assert evs[-1]["reason"] == "pickup timeout"
    cl.wait_drained()
    assert state(cl, "ride/driver", "d1", "driver") == {"cell": "c1", "status": "available", "ride": None}
    assert state(cl, "ride/geocell", "c1", "drivers") == ["d1"]
    assert state(cl, "ride/passenger", "slow", "passenger")["status"] == "idle"
    time.sleep(scaled(1.5))                               # past fast-1's timeout too
    assert kinds(events(cl, "fast-1")) == ["requested", "driver_assigned", "started"]
    assert state(cl, "ride/ride", "fast-1", "ride")["status"] == "started"


def test_events_exactly_once_across_runtime_kill9(ride):
    rt, cl = ride
    call(cl, "ride/driver", "d1", {"cell": "c1"})
    assert call(cl, "ride/passenger", "k", {"op": "request", "cell": "c1"})["driver"] == "d1"
    cl.send("ride/driver", "d1", json_value({"op": "pickup"}))
    rt.kill9()
    rt.start()
    wait_until(lambda: state(cl, "ride/ride", "k-1", "ride")["status"] == "started")
    call(cl, "ride/driver", "d1", {"op": "dropoff"})
    cl.wait_drained()
    assert kinds(events(cl, "k-1")) == ["requested", "driver_assigned", "started", "completed"]
    assert [e["ride"] for e in events(cl)] == ["k-1"] * 4
