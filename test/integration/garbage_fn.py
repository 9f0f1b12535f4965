#!/usr/bin/python3
"""
garbage_fn — a misbehaving function server for the bad-input tests.

    garbage_fn.py --listen unix:/path.sock --mode MODE

Describe is answered correctly: it serves `test/counter` with state
`n: statemesh/int64` (like build/test/fn/testfn). Invoke answers every batch
wrongly, according to MODE:

  bytes             each stream message is answered with bytes that do not
                    decode as FromFunction
  unknown_batch     a valid Result (n := 999) for batch_id + 1000000, a batch
                    the runtime never sent; the real batch is never answered
  undeclared_state  Result with MODIFY n := 999 (valid) and MODIFY bogus (not
                    declared): the whole result must be rejected
  wrong_typename    Result with MODIFY n := "999" typed statemesh/string
  no_outcome        BatchResponse with the right batch_id but no outcome set
  bad_index         Result with n := 999 and a Reply for invocation_index 1000
  nul_target        Result with n := 999 and a message to test/counter "vic\0tim"
                    (a NUL inside the id: must not reach "vic")

Each answer is logged to stderr as `event=answer mode=M batch_id=B messages=K`
so tests can wait for it. Served with generic handlers (raw bytes), so no
protoc-generated service code is needed beyond the message classes.
"""

import argparse
import os
import struct
import sys

from fnserve import log, serve
from statemesh.v1 import function_pb2, types_pb2

MODES = ("bytes", "unknown_batch", "undeclared_state", "wrong_typename", "no_outcome", "bad_index",
         "nul_target")

# Field 1 (responses), length-delimited, with a length far beyond the message: never decodes.
GARBAGE_PREFIX = b"\x0a\xff\xff\xff\x7f"

def int64(k: int) -> types_pb2.TypedValue:
    return types_pb2.TypedValue(typename="statemesh/int64", value=struct.pack("<q", k))


def describe(request: bytes, context) -> bytes:
    resp = function_pb2.DescribeResponse(sdk="garbage_fn/1")
    spec = resp.functions.add(type="test/counter")
    spec.states.add(name="n", typename="statemesh/int64")
    log("event=describe")
    return resp.SerializeToString()


def answer(mode: str, batch) -> function_pb2.BatchResponse:
    r = function_pb2.BatchResponse(batch_id=batch.batch_id)
    M = function_pb2.StateMutation
    if mode == "unknown_batch":
        r.batch_id = batch.batch_id + 1000000
        r.result.state_mutations.add(kind=M.MODIFY, name="n", value=int64(999))
    elif mode == "undeclared_state":
        r.result.state_mutations.add(kind=M.MODIFY, name="n", value=int64(999))
        r.result.state_mutations.add(kind=M.MODIFY, name="bogus", value=int64(1))
    elif mode == "wrong_typename":
        r.result.state_mutations.add(
            kind=M.MODIFY, name="n",
            value=types_pb2.TypedValue(typename="statemesh/string", value=b"999"))
    elif mode == "no_outcome":
        pass
    elif mode == "nul_target":
        r.result.state_mutations.add(kind=M.MODIFY, name="n", value=int64(999))
        o = r.result.outgoing_messages.add(argument=int64(1))
        o.target.type, o.target.id = "test/counter", "vic\0tim"
    elif mode == "bad_index":
        r.result.state_mutations.add(kind=M.MODIFY, name="n", value=int64(999))
        r.result.replies.add(invocation_index=1000, value=int64(999))
    else:
        raise ValueError(mode)
    return r


def make_invoke(mode: str):
    def invoke(request_iterator, context):
        n = 0
        for raw in request_iterator:
            n += 1
            if mode == "bytes":
                log("event=answer mode=bytes stream_message=%d len=%d" % (n, len(raw)))
                yield GARBAGE_PREFIX + os.urandom(64)
                continue
            try:
                msg = function_pb2.ToFunction.FromString(raw)
            except Exception as e:  # noqa: BLE001
                log("event=bad_request error=%r" % (e,))
                continue
            out = function_pb2.FromFunction()
            for b in msg.batches:
                out.responses.append(answer(mode, b))
                log("event=answer mode=%s batch_id=%d target=%s/%s messages=%d"
                    % (mode, b.batch_id, b.target.type, b.target.id, len(b.invocations)))
            yield out.SerializeToString()
        log("event=stream_end messages=%d" % n)
    return invoke


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True, help="unix:/path.sock or host:port")
    ap.add_argument("--mode", required=True, choices=MODES)
    a = ap.parse_args()
    return serve(a.listen, describe, make_invoke(a.mode), workers=16,
                 ready="event=ready addr=%s mode=%s" % (a.listen, a.mode), grace=0)


if __name__ == "__main__":
    sys.exit(main())
