#!/usr/bin/python3
"""greeter — the statemesh hello-world, as a Python function server.

    greeter.py [--listen unix:/path.sock | host:port] [--mode auto|aio|sync]
               (default unix:/tmp/statemesh-greeter-py.sock)

Same behaviour as the C greeter (examples/greeter/greeter.c):

  example/user     state visits (statemesh/int64). Any message (e.g. "hi")
                   counts one visit and sends {"name": "<id>", "visits": <n>}
                   (statemesh/json) to example/greeter with the same id.
  example/greeter  no state. Replies "Hello <name>, you are visitor #<n>"
                   (statemesh/string).

The reply is made by example/greeter, yet it answers the ingress Call that
reached example/user: ctx.send() records which invocation caused the message,
and the runtime routes the reply back along the chain.

    $ build/statemesh call example/user alice hi
    Hello alice, you are visitor #1

Run it all with examples/greeter-python/run.sh (or `make run EXAMPLE=greeter-python`).
"""

import argparse
import os
import sys

# Use the SDK from this checkout when it is not installed.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "sdk-python"))

from statemesh import IntType, StatefulFunctions, ValueSpec, serve  # noqa: E402

functions = StatefulFunctions()


@functions.bind("example/user", specs=[ValueSpec("visits", IntType)])
def user(ctx, message):
    visits = (ctx.storage.visits or 0) + 1
    ctx.storage.visits = visits
    name = ctx.address.id
    ctx.send("example/greeter", name, {"name": name, "visits": visits})


@functions.bind("example/greeter")
def greeter(ctx, message):
    greeting = message.as_json()
    ctx.reply("Hello %s, you are visitor #%d" % (greeting["name"], greeting["visits"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="unix:/tmp/statemesh-greeter-py.sock")
    ap.add_argument("--mode", default="auto", choices=("auto", "aio", "sync"))
    args = ap.parse_args()
    serve(functions, args.listen, mode=args.mode)


if __name__ == "__main__":
    main()
