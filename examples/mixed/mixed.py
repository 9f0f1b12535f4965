#!/usr/bin/python3
"""mixed — a Python function and a C function messaging each other.

    mixed.py [--listen unix:/path.sock | host:port]
             (default unix:/tmp/statemesh-mixed-py.sock)

  py/user          (Python, this file) state visits (statemesh/int64). Any
                   message counts one visit and sends
                       {"name": "<id>", "visits": <n>}   (statemesh/json)
                   to example/greeter with the same id.
  example/greeter  (C, build/examples/greeter/greeter) replies
                   "Hello <name>, you are visitor #<n>" (statemesh/string).

The C function's reply answers the ingress Call made to the Python function:

    $ build/statemesh call py/user alice hi
    Hello alice, you are visitor #1

Run it all with examples/mixed/run.sh.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "sdk-python"))

from statemesh import IntType, StatefulFunctions, ValueSpec, serve  # noqa: E402

functions = StatefulFunctions()


@functions.bind("py/user", specs=[ValueSpec("visits", IntType)])
def user(ctx, message):
    visits = (ctx.storage.visits or 0) + 1
    ctx.storage.visits = visits
    # Served by the C greeter: the runtime routes by function type.
    ctx.send("example/greeter", ctx.address.id, {"name": ctx.address.id, "visits": visits})


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="py/user, talking to the C example/greeter")
    ap.add_argument("--listen", default="unix:/tmp/statemesh-mixed-py.sock")
    serve(functions, ap.parse_args().listen)
