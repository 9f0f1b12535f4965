#!/usr/bin/python3
"""
poison_fn — a function server for the failure-handling tests, written against
the raw protocol like a server in another language would be: its answers are
encoded by hand, with explicit default values on the wire (StateMutation.kind
= MODIFY = 0, Reply.invocation_index = 0), as protobufjs and other encoders
write them. Proto3 allows that; the runtime must accept it.

    poison_fn.py --listen unix:/path.sock [--fix-file PATH]

Functions:

  raw/counter  state n (statemesh/int64, absent = 0). Message statemesh/int64
               k: n += k, replies n. Any other typename fails the whole batch
               ("raw/counter wants statemesh/int64, got T") — unless the file
               --fix-file exists (the "fix is deployed"): then it counts as 0.
  raw/badutf8  no state. Replies a value whose typename is not valid UTF-8
               (bytes 0xff 0xfe): an answer no conforming decoder accepts.

Each batch is logged to stderr as `event=batch type=T id=I messages=K ok=0|1`.
"""

import argparse
import os
import struct
import sys

from fnserve import log, serve
from statemesh.v1 import function_pb2

ARGS = None


def varint(v):
    out = bytearray()
    while True:
        if v < 0x80:
            out.append(v)
            return bytes(out)
        out.append((v & 0x7F) | 0x80)
        v >>= 7


def ld(field, body):
    """A length-delimited field."""
    return varint(field << 3 | 2) + varint(len(body)) + body


def vi(field, v):
    """A varint field, written even when it is 0 (an explicit default)."""
    return varint(field << 3) + varint(v)


def typed(typename, value):
    return ld(1, typename) + ld(2, value)


def i64(k):
    return typed(b"statemesh/int64", struct.pack("<q", k))


def describe(request, context):
    resp = function_pb2.DescribeResponse(sdk="poison_fn/1")
    f = resp.functions.add(type="raw/counter")
    f.states.add(name="n", typename="statemesh/int64")
    resp.functions.add(type="raw/badutf8")
    return resp.SerializeToString()


def run_batch(b):
    """The encoded BatchResponse for one BatchRequest."""
    t, id_ = b.target.type, b.target.id
    head = vi(1, b.batch_id)
    if t == "raw/badutf8":
        log("event=batch type=%s id=%s messages=%d ok=1" % (t, id_, len(b.invocations)))
        reply = vi(1, 0) + ld(2, typed(b"\xff\xfe", b"x"))
        return head + ld(2, ld(3, reply))
    state = {s.name: s.value for s in b.state if s.HasField("value")}
    n = struct.unpack("<q", state["n"].value)[0] if "n" in state else 0
    replies = b""
    for idx, inv in enumerate(b.invocations):
        arg = inv.argument
        if arg.typename == "statemesh/int64":
            n += struct.unpack("<q", arg.value)[0]
        elif not (ARGS.fix_file and os.path.exists(ARGS.fix_file)):
            log("event=batch type=%s id=%s messages=%d ok=0" % (t, id_, len(b.invocations)))
            msg = "raw/counter wants statemesh/int64, got %s" % arg.typename
            return head + ld(4, ld(1, msg.encode()))
        replies += ld(3, vi(1, idx) + ld(2, i64(n)))
    mutation = vi(1, 0) + ld(2, b"n") + ld(3, i64(n))      # kind = MODIFY written out
    log("event=batch type=%s id=%s messages=%d ok=1" % (t, id_, len(b.invocations)))
    return head + ld(2, ld(1, mutation) + replies)


def invoke(request_iterator, context):
    for raw in request_iterator:
        msg = function_pb2.ToFunction.FromString(raw)
        yield b"".join(ld(1, run_batch(b)) for b in msg.batches)


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--fix-file", default="")
    ARGS = p.parse_args()
    return serve(ARGS.listen, describe, invoke, workers=4)


if __name__ == "__main__":
    sys.exit(main())
