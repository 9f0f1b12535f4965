#!/usr/bin/python3
"""bench_fn — the benchmark's Python function server (the "py-sidecar" mode
of make bench), written with the Python SDK.

    PYTHONPATH=sdk-python /usr/bin/python3 test/bench/bench_fn.py unix:/tmp/fn.sock [aio|sync]

Serves the same two types, with the same behaviour, as the C handlers in
test/bench/bench_functions.c (see bench_functions.h):

  bench/counter  state n (int64, absent = 0); message int64 k; n += k; no reply.
  bench/greeter  state n (int64, absent = 0); any message: n += 1, replies
                 "Hello <id> #<n>" (string).

Runs until SIGTERM/SIGINT.
"""

import sys

from statemesh import IntType, StatefulFunctions, ValueSpec, serve

functions = StatefulFunctions()


@functions.bind("bench/counter", specs=[ValueSpec("n", IntType)])
def counter(ctx, message):
    ctx.storage.n = (ctx.storage.n or 0) + message.as_int()


@functions.bind("bench/greeter", specs=[ValueSpec("n", IntType)])
def greeter(ctx, message):
    n = (ctx.storage.n or 0) + 1
    ctx.storage.n = n
    ctx.reply("Hello %s #%d" % (ctx.address.id, n))


def main():
    if len(sys.argv) not in (2, 3) or sys.argv[1] in ("-h", "--help"):
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    serve(functions, sys.argv[1], mode=sys.argv[2] if len(sys.argv) == 3 else "auto")
    return 0


if __name__ == "__main__":
    sys.exit(main())
