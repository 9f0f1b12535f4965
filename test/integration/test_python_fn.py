#!/usr/bin/python3
"""
A Python function server (statemesh SDK) for test_python_sdk.py. Not a test
module: it only holds the functions and runs them when executed:

    /usr/bin/python3 test/integration/test_python_fn.py --listen unix:/p.sock [--mode aio|sync]

Function types (namespace py/):

  py/counter   state n (int64). Message int64 k: n += k, replies n. (def)
  py/acounter  the same as an `async def` that really awaits (asyncio.sleep).
  py/forward   message string "TYPE ID": sends int64 1 to (TYPE, ID); no reply,
               so a Call is answered by the target (e.g. C test/counter).
  py/relay     sends the message unchanged (same typename and bytes) to
               (TYPE, ID) taken from the state-less convention id = "TYPE|ID";
               a Call to py/relay "test/echo|x" is answered by C test/echo.
  py/reencode  decodes a built-in typed message to a Python value and sends
               that value re-encoded with the same built-in type to C
               test/echo (id = this id): checks Python decode+encode
               reproduces the bytes that C made or echoes.
  py/trace     replies JSON {"trace_id": ctx.trace_id, "traceparent": ...}
               (None when the message is not traced; test_tracing.py).
  py/describe  replies JSON {"typename": ..., "value": <decoded>} of what it
               got (bytes as hex; user types as hex).
  py/flaky     fails (raises RuntimeError) the first --flaky-failures times it
               is invoked for each id (counted in this process), then replies
               the number of attempts (int64).
  py/types     state one of each built-in type (b, i, f, s, by, j); message
               JSON {"set": {...}} writes them (by as hex), then replies the
               JSON of all current values.
  py/greet     calls the C greeter chain: sends {"name": id, "visits": 1}
               (json) to example/greeter, whose reply answers the Call.

Delayed messages, egress records, state TTL (test_python_messaging.py):

  py/scheduler message JSON: one command or a list of them, run in order:
                 {"after": SECONDS, "to": [TYPE, ID], "value": V, "token": T}
                     ctx.send_after (token optional; V sent as JSON)
                 {"cancel": T}   ctx.cancel_delayed
                 {"egress": NAME, "value": V}   ctx.send_egress
                 {"fail": true}  raises (the batch fails: nothing is kept)
               Replies "ok". An `async def` that awaits.
  py/sink      state n (int64), got (json list). Each message: n += 1, its
               decoded value appended to got, and the record
               {"sink": ID, "value": V, "n": n} written to egress "py-events".
               Replies n.
  py/emitter   message JSON {"egress": NAME, "values": [...], "fail_first": B}:
               writes each value (typed by its Python type; {"hex": H} is
               bytes) to the egress;
               with fail_first, the first attempt for each id raises after
               writing (so the records of the failed attempt must vanish).
               Replies the number of values.
  py/ttl       state w (string, expire_after_write = --ttl seconds) and v
               (string, expire_after_invoke = 3 x --ttl). "set": w = v = "x", replies "ok";
               "get" replies {"w": w, "v": v}; anything else changes nothing.
"""

import argparse
import asyncio
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "sdk-python"))

from statemesh import (BoolType, BytesType, FloatType, IntType, JsonType,  # noqa: E402
                       StatefulFunctions, StringType, TypedValue, ValueSpec, serve)
from statemesh.types import builtin_type  # noqa: E402

functions = StatefulFunctions()
FLAKY_FAILURES = 2
_attempts = {}


@functions.bind("py/counter", specs=[ValueSpec("n", IntType)])
def counter(ctx, message):
    ctx.storage.n = (ctx.storage.n or 0) + message.as_int()
    ctx.reply(ctx.storage.n)


@functions.bind("py/acounter", specs=[ValueSpec("n", IntType)])
async def acounter(ctx, message):
    k = message.as_int()
    await asyncio.sleep(0.001)
    ctx.storage.n = (ctx.storage.n or 0) + k
    ctx.reply(ctx.storage.n)


@functions.bind("py/forward")
def forward(ctx, message):
    target_type, target_id = message.as_string().split(" ", 1)
    ctx.send(target_type, target_id, 1)


@functions.bind("py/relay")
def relay(ctx, message):
    target_type, target_id = ctx.address.id.split("|", 1)
    ctx.send(target_type, target_id, message.typed_value)


@functions.bind("py/reencode")
def reencode(ctx, message):
    t = builtin_type(message.typename)
    if t is None:
        raise TypeError("py/reencode wants a built-in type, got %s" % message.typename)
    ctx.send("test/echo", ctx.address.id, message.as_type(t), type=t)


@functions.bind("py/trace")
def trace(ctx, message):
    ctx.reply({"trace_id": ctx.trace_id, "traceparent": ctx.traceparent})


@functions.bind("py/describe")
def describe(ctx, message):
    v = message.value
    if isinstance(v, bytes):
        v = v.hex()
    elif isinstance(v, TypedValue):
        v = v.value.hex()
    ctx.reply({"typename": message.typename, "value": v,
               "caller": list(ctx.caller) if ctx.caller else None})


@functions.bind("py/flaky")
def flaky(ctx, message):
    key = ctx.address.id
    _attempts[key] = _attempts.get(key, 0) + 1
    if _attempts[key] <= FLAKY_FAILURES:
        raise RuntimeError("py/flaky planned failure %d for %s" % (_attempts[key], key))
    ctx.reply(_attempts[key])


TYPES = {"b": BoolType, "i": IntType, "f": FloatType, "s": StringType, "by": BytesType,
         "j": JsonType}


@functions.bind("py/types", specs=[ValueSpec(k, t) for k, t in TYPES.items()])
def types(ctx, message):
    for k, v in message.as_json().get("set", {}).items():
        setattr(ctx.storage, k, bytes.fromhex(v) if k == "by" and v is not None else v)
    out = {k: getattr(ctx.storage, k) for k in TYPES}
    if out["by"] is not None:
        out["by"] = out["by"].hex()
    ctx.reply(out)


@functions.bind("py/greet")
def greet(ctx, message):
    ctx.send("example/greeter", ctx.address.id, {"name": ctx.address.id, "visits": 1})


@functions.bind("py/scheduler")
async def scheduler(ctx, message):
    await asyncio.sleep(0)
    cmds = message.as_json()
    for c in cmds if isinstance(cmds, list) else [cmds]:
        if "after" in c:
            ctx.send_after(c["after"], c["to"][0], c["to"][1], c["value"],
                           cancellation_token=c.get("token"), type=JsonType)
        elif "cancel" in c:
            ctx.cancel_delayed(c["cancel"])
        elif "egress" in c:
            ctx.send_egress(c["egress"], c["value"], type=JsonType)
        elif c.get("fail"):
            raise RuntimeError("py/scheduler: planned failure")
    ctx.reply("ok")


@functions.bind("py/sink", specs=[ValueSpec("n", IntType), ValueSpec("got", JsonType)])
def sink(ctx, message):
    n = (ctx.storage.n or 0) + 1
    ctx.storage.n = n
    v = message.value
    if isinstance(v, (bytes, TypedValue)):
        v = repr(v)
    ctx.storage.got = (ctx.storage.got or []) + [v]
    ctx.send_egress("py-events", {"sink": ctx.address.id, "value": v, "n": n})
    ctx.reply(n)


@functions.bind("py/emitter")
def emitter(ctx, message):
    m = message.as_json()
    for v in m["values"]:
        if isinstance(v, dict) and list(v) == ["hex"]:
            v = bytes.fromhex(v["hex"])              # JSON cannot carry bytes
        ctx.send_egress(m["egress"], v)
    key = "emitter:" + ctx.address.id
    _attempts[key] = _attempts.get(key, 0) + 1
    if m.get("fail_first") and _attempts[key] == 1:
        raise RuntimeError("py/emitter: planned failure after writing %d records"
                           % len(m["values"]))
    ctx.reply(len(m["values"]))


def ttl(ctx, message):
    cmd = message.as_string()
    if cmd == "set":
        ctx.storage.w = ctx.storage.v = "x"
        ctx.reply("ok")
    elif cmd == "get":
        ctx.reply({"w": ctx.storage.w, "v": ctx.storage.v})


def main():
    global FLAKY_FAILURES
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--mode", default="auto", choices=("auto", "aio", "sync"))
    ap.add_argument("--flaky-failures", type=int, default=2)
    ap.add_argument("--ttl", type=float, default=1.0, help="py/ttl: seconds")
    args = ap.parse_args()
    FLAKY_FAILURES = args.flaky_failures
    functions.register("py/ttl", ttl, specs=[
        ValueSpec("w", StringType, expire_after_write=args.ttl),
        ValueSpec("v", StringType, expire_after_invoke=3 * args.ttl)])
    serve(functions, args.listen, mode=args.mode, grace=2)


if __name__ == "__main__":
    main()
