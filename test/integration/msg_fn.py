#!/usr/bin/python3
"""
msg_fn — a function server for the runtime's messaging tests, written against
the raw protocol (generated message classes only), so the runtime's delayed
messages, cancellations, egress records, state TTL and idempotent replies are
tested independently of either SDK.

    msg_fn.py --listen unix:/path.sock [--egress events] [--ttl-ms 1000]

Functions (every value is JSON unless said otherwise):

  msg/logger  state n (int64). Each invocation: n += 1, then appends
              {"id": ID, "seq": n} to the egress. A message of type
              statemesh/int64 k instead adds k and appends k records.
  msg/timer   {"op": "schedule", "delay_ms": D, "token": T, "to": ID, "value": V}
              sends V after D ms to msg/sink ID (token optional);
              {"op": "cancel", "token": T} cancels it. Several ops may come in a
              list. Replies "ok" when called.
  msg/sink    state n (int64), last (json). Counts deliveries, remembers the
              last value, appends {"sink": ID, "value": V, "n": n} to the egress.
  msg/ttl     state w (string, expire after write --ttl-ms), v (string, expire
              after invoke --ttl-ms * 1.5). "set": w = v = "x"; "get": replies
              {"w": w or null, "v": v or null}; anything else: no change
              (replies "ok").
  msg/echo    state n (int64) counts invocations; replies the argument as is.
  msg/v2only  (only with --version 2) no state; replies the argument: a "new
              version" of the server.
  msg/flaky   state n (int64). Fails while the file --fail-file exists;
              otherwise n += 1 and replies n.

Each processed batch is logged to stderr as `event=batch type=T id=I messages=K`.
"""

import argparse
import json
import os
import struct
import sys

from fnserve import log, serve
from statemesh.v1 import function_pb2, types_pb2

ARGS = None


def tv(typename, value):
    return types_pb2.TypedValue(typename=typename, value=value)


def jv(obj):
    return tv("statemesh/json", json.dumps(obj, sort_keys=True).encode())


def i64(k):
    return tv("statemesh/int64", struct.pack("<q", k))


def get_int(state, name):
    v = state.get(name)
    return struct.unpack("<q", v.value)[0] if v is not None else 0


def describe(request, context):
    resp = function_pb2.DescribeResponse(sdk="msg_fn/1")
    f = resp.functions.add(type="msg/logger")
    f.states.add(name="n", typename="statemesh/int64")
    f = resp.functions.add(type="msg/timer")
    f = resp.functions.add(type="msg/sink")
    f.states.add(name="n", typename="statemesh/int64")
    f.states.add(name="last", typename="statemesh/json")
    f = resp.functions.add(type="msg/ttl")
    f.states.add(name="w", typename="statemesh/string", expire_after_write_ms=ARGS.ttl_ms)
    f.states.add(name="v", typename="statemesh/string", expire_after_invoke_ms=ARGS.ttl_ms * 3 // 2)
    f = resp.functions.add(type="msg/echo")
    f.states.add(name="n", typename="statemesh/int64")
    f = resp.functions.add(type="msg/flaky")
    f.states.add(name="n", typename="statemesh/int64")
    if ARGS.version >= 2:
        resp.functions.add(type="msg/v2only")
    return resp.SerializeToString()


def run_batch(b):
    """Returns a BatchResponse for one BatchRequest."""
    t, id_ = b.target.type, b.target.id
    state = {s.name: s.value for s in b.state if s.HasField("value")}
    res = function_pb2.Result()
    changed = {}
    for idx, inv in enumerate(b.invocations):
        arg = inv.argument
        if t == "msg/logger":
            k = struct.unpack("<q", arg.value)[0] if arg.typename == "statemesh/int64" else 1
            for _ in range(k):
                n = get_int(state, "n") + 1
                state["n"] = i64(n)
                changed["n"] = state["n"]
                res.egress_records.add(egress=ARGS.egress, value=jv({"id": id_, "seq": n}))
        elif t == "msg/timer":
            ops = json.loads(arg.value)
            for op in ops if isinstance(ops, list) else [ops]:
                if op["op"] == "schedule":
                    d = res.delayed_messages.add(delay_ms=op["delay_ms"],
                                                 cancellation_token=op.get("token", ""))
                    d.target.type = "msg/sink"
                    d.target.id = op["to"]
                    d.argument.CopyFrom(jv(op["value"]))
                elif op["op"] == "cancel":
                    res.cancellations.add(token=op["token"])
            res.replies.add(invocation_index=idx, value=jv("ok"))
        elif t == "msg/sink":
            n = get_int(state, "n") + 1
            state["n"] = i64(n)
            changed["n"] = state["n"]
            changed["last"] = state["last"] = arg
            value = json.loads(arg.value) if arg.typename == "statemesh/json" else arg.value.hex()
            res.egress_records.add(egress=ARGS.egress, value=jv({"sink": id_, "value": value, "n": n}))
        elif t == "msg/ttl":
            cmd = arg.value.decode("utf-8", "replace")
            if cmd == "set":
                for name in ("w", "v"):
                    changed[name] = state[name] = tv("statemesh/string", b"x")
            if cmd == "get":
                res.replies.add(invocation_index=idx, value=jv(
                    {name: state[name].value.decode() if name in state else None for name in ("w", "v")}))
            else:
                res.replies.add(invocation_index=idx, value=jv("ok"))
        elif t == "msg/flaky":
            if ARGS.fail_file and os.path.exists(ARGS.fail_file):
                return function_pb2.BatchResponse(batch_id=b.batch_id,
                                                  failure=function_pb2.Failure(message="flaky is failing"))
            n = get_int(state, "n") + 1
            changed["n"] = state["n"] = i64(n)
            res.replies.add(invocation_index=idx, value=i64(n))
        elif t == "msg/v2only":
            res.replies.add(invocation_index=idx, value=arg)
        elif t == "msg/echo":
            n = get_int(state, "n") + 1
            changed["n"] = state["n"] = i64(n)
            res.replies.add(invocation_index=idx, value=arg)
        else:
            return function_pb2.BatchResponse(batch_id=b.batch_id,
                                              failure=function_pb2.Failure(message="unknown type " + t))
    for name, v in changed.items():
        res.state_mutations.add(kind=function_pb2.StateMutation.MODIFY, name=name, value=v)
    log("event=batch type=%s id=%s messages=%d" % (t, id_, len(b.invocations)))
    return function_pb2.BatchResponse(batch_id=b.batch_id, result=res)


def invoke(request_iterator, context):
    for raw in request_iterator:
        msg = function_pb2.ToFunction.FromString(raw)
        out = function_pb2.FromFunction()
        for b in msg.batches:
            out.responses.append(run_batch(b))
        yield out.SerializeToString()


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--egress", default="events")
    p.add_argument("--ttl-ms", type=int, default=1000)
    p.add_argument("--fail-file", default="")
    p.add_argument("--version", type=int, default=1)
    ARGS = p.parse_args()
    return serve(ARGS.listen, describe, invoke, workers=8)


if __name__ == "__main__":
    sys.exit(main())
