"""
tls_fn — a Python SDK function server over TLS, for test_tls.py.

    tls_fn.py --listen 127.0.0.1:PORT --tls-cert F --tls-key F [--tls-ca F]
              [--require-client-cert]

py/counter: state n (int64); adds the int64 message to n and replies n.
"""

import argparse

from statemesh import IntType, StatefulFunctions, ValueSpec, serve

functions = StatefulFunctions()


@functions.bind("py/counter", specs=[ValueSpec("n", IntType)])
def counter(ctx, message):
    ctx.storage.n = (ctx.storage.n or 0) + message.as_int()
    ctx.reply(ctx.storage.n)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--tls-ca")
    p.add_argument("--require-client-cert", action="store_true")
    a = p.parse_args()
    serve(functions, a.listen, tls_cert=a.tls_cert, tls_key=a.tls_key, tls_ca=a.tls_ca,
          require_client_cert=a.require_client_cert)


if __name__ == "__main__":
    main()
