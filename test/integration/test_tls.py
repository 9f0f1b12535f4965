"""
TLS and mTLS (docs/security.md, "TLS and mTLS"): the ingress with the Python
client and the CLI, client certificates, the runtime's TLS channels to a C
and a Python function server, certificate rotation on SIGHUP under traffic,
and the configuration errors.

Certificates are made here with openssl (Debian's `openssl`): a CA, a second
CA ("other"), server certificates for 127.0.0.1/localhost from each, client
certificates from each, an expired client certificate, and a key that
belongs to no certificate.
"""

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest

from harness import binary, endpoint, free_port, scaled, wait_until

import statemesh
from statemesh import errors as sm_errors

SAN_LOOPBACK = "IP:127.0.0.1,DNS:localhost"


def _openssl(cwd, *args):
    r = subprocess.run(["openssl"] + list(args), cwd=str(cwd), capture_output=True, text=True)
    assert r.returncode == 0, "openssl %s: %s" % (" ".join(args), r.stderr)


def _key(cwd, name):
    _openssl(cwd, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-out", name + ".key")


def _ca(cwd, name):
    _key(cwd, name)
    _openssl(cwd, "req", "-x509", "-new", "-key", name + ".key", "-out", name + ".crt",
             "-days", "2", "-subj", "/CN=%s" % name)


def _leaf(cwd, name, ca, san, days=2, usage="serverAuth,clientAuth"):
    _key(cwd, name)
    _openssl(cwd, "req", "-new", "-key", name + ".key", "-out", name + ".csr",
             "-subj", "/O=statemesh-test/CN=%s" % name)
    (Path(cwd) / (name + ".ext")).write_text(
        "basicConstraints=CA:FALSE\nsubjectAltName=%s\nextendedKeyUsage=%s\n" % (san, usage))
    _openssl(cwd, "x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
             "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-out", name + ".crt",
             "-days", str(days), "-extfile", name + ".ext")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    _ca(d, "ca")
    _ca(d, "other")
    _leaf(d, "server", "ca", SAN_LOOPBACK)
    _leaf(d, "server2", "other", SAN_LOOPBACK)          # the rotation's new certificate
    _leaf(d, "elsewhere", "ca", "DNS:elsewhere.example")  # right CA, names another host
    _leaf(d, "client", "ca", "DNS:client-1.example,URI:spiffe://statemesh/client-1")
    _leaf(d, "rogue", "other", "DNS:rogue.example")     # a client of the wrong CA
    _leaf(d, "expired", "ca", "DNS:expired.example", days=0)
    _key(d, "stray")                                     # belongs to no certificate
    (d / "notpem.crt").write_text("this is not a certificate\n")
    return d


def _p(certs, name):
    return str(certs / name)


def _server_tls(certs, mtls=False):
    t = {"cert": _p(certs, "server.crt"), "key": _p(certs, "server.key")}
    if mtls:
        t.update(ca=_p(certs, "ca.crt"), require_client_cert=True)
    return t


def _client(rt, certs, ca="ca.crt", cert=None, key=None, **kw):
    c = statemesh.Client(rt.ingress, timeout=scaled(10), tls_ca=_p(certs, ca),
                         tls_cert=cert and _p(certs, cert), tls_key=key and _p(certs, key), **kw)
    return c


def _refused(fn):
    """fn() fails the way a failed TLS handshake fails: UNAVAILABLE."""
    with pytest.raises(sm_errors.StatemeshError) as e:
        fn()
    assert e.value.code == grpc.StatusCode.UNAVAILABLE, e.value
    return e.value


def _cli(rt, *args, env=None):
    full_env = dict(os.environ)
    for k in ("STATEMESH_TLS_CA", "STATEMESH_TLS_CERT", "STATEMESH_TLS_KEY", "STATEMESH_ADDRESS"):
        full_env.pop(k, None)
    full_env.update(env or {})
    return subprocess.run([str(binary("statemesh")), "--address", rt.ingress, "--timeout", "5000"]
                          + list(args), capture_output=True, text=True, env=full_env,
                          timeout=scaled(30))


# ---- the ingress -------------------------------------------------------------------


def test_tls_ingress_python_client_and_cli(sandbox, certs):
    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)], log_level="debug",
                         runtime_settings={"tls": _server_tls(certs)})
    with _client(rt, certs) as c:
        assert c.call("test/counter", "a", 2) == 2
        c.send("test/counter", "a", 3)
        assert c.call("test/counter", "a", 0) == 5
    # TLS without a client certificate: nobody in particular.
    peers = rt.log_lines("event=ingress.peer")
    assert len(peers) == 3 and all('identity="" subject=""' in l for l in peers), peers
    # A plaintext client gets nowhere (and nothing is applied).
    with statemesh.Client(rt.ingress, timeout=scaled(5)) as plain:
        _refused(lambda: plain.call("test/counter", "a", 100))
    # A client that trusts another CA refuses the runtime's certificate.
    with _client(rt, certs, ca="other.crt") as wrong:
        _refused(lambda: wrong.call("test/counter", "a", 100))
    # The CLI: --tls-ca, and the same from the environment.
    r = _cli(rt, "--tls-ca", _p(certs, "ca.crt"), "call", "test/counter", "a", "1", "--type", "int64")
    assert r.returncode == 0 and r.stdout.strip() == "6", r.stderr
    r = _cli(rt, "call", "test/counter", "a", "1", "--type", "int64",
             env={"STATEMESH_TLS_CA": _p(certs, "ca.crt")})
    assert r.returncode == 0 and r.stdout.strip() == "7", r.stderr
    r = _cli(rt, "--tls-ca", _p(certs, "other.crt"), "call", "test/counter", "a", "1", "--type", "int64")
    assert r.returncode == 1 and "TLS handshake failed" in r.stderr, r.stderr
    r = _cli(rt, "call", "test/counter", "a", "1", "--type", "int64")      # plaintext
    assert r.returncode == 1 and "UNAVAILABLE" in r.stderr, (r.stdout, r.stderr)
    with _client(rt, certs) as c:
        assert c.call("test/counter", "a", 0) == 7                          # refused ones: nothing


def test_cli_tls_option_errors(sandbox, certs):
    rt = sandbox.runtime(runtime_settings={"tls": _server_tls(certs)})
    r = _cli(rt, "--tls-ca", _p(certs, "missing.crt"), "stats")
    assert r.returncode == 2 and "missing.crt" in r.stderr and "cannot read" in r.stderr, r.stderr
    r = _cli(rt, "--tls-ca", _p(certs, "notpem.crt"), "stats")
    assert r.returncode == 2 and "notpem.crt" in r.stderr and "no PEM" in r.stderr, r.stderr
    r = _cli(rt, "--tls-cert", _p(certs, "client.crt"), "--tls-key", _p(certs, "client.key"), "stats")
    assert r.returncode == 2 and "--tls-ca" in r.stderr, r.stderr
    r = _cli(rt, "--tls-ca", _p(certs, "ca.crt"), "--tls-cert", _p(certs, "client.crt"), "stats")
    assert r.returncode == 2 and "go together" in r.stderr, r.stderr
    # Python: the same mistakes are ValueErrors naming the file.
    with pytest.raises(ValueError, match="missing.crt"):
        statemesh.Client(rt.ingress, tls_ca=_p(certs, "missing.crt"))
    with pytest.raises(ValueError, match="does not match"):
        statemesh.Client(rt.ingress, tls_ca=_p(certs, "ca.crt"), tls_cert=_p(certs, "client.crt"),
                         tls_key=_p(certs, "stray.key"))


def test_mtls_ingress_client_certificates(sandbox, certs):
    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)], log_level="debug",
                         runtime_settings={"tls": _server_tls(certs, mtls=True)})
    # No certificate, a certificate of another CA, an expired one: refused.
    with _client(rt, certs) as nocert:
        _refused(lambda: nocert.call("test/counter", "m", 1))
    with _client(rt, certs, cert="rogue.crt", key="rogue.key") as rogue:
        _refused(lambda: rogue.call("test/counter", "m", 1))
    wait_until(lambda: time.time() > os.stat(certs / "expired.crt").st_mtime + 1.5, timeout=5)
    with _client(rt, certs, cert="expired.crt", key="expired.key") as expired:
        _refused(lambda: expired.call("test/counter", "m", 1))
    r = _cli(rt, "--tls-ca", _p(certs, "ca.crt"), "call", "test/counter", "m", "1", "--type", "int64")
    assert r.returncode == 1 and "UNAVAILABLE" in r.stderr, r.stderr
    # The right certificate: in, and its identity is what the server sees.
    with _client(rt, certs, cert="client.crt", key="client.key") as good:
        assert good.call("test/counter", "m", 1) == 1
        assert good.send_stream([("test/counter", "s", 1)] * 10).acked == 10
        good.send("test/counter", "s", 1)
        assert good.call("test/counter", "s", 0) == 11
    r = _cli(rt, "call", "test/counter", "m", "1", "--type", "int64",
             env={"STATEMESH_TLS_CA": _p(certs, "ca.crt"),
                  "STATEMESH_TLS_CERT": _p(certs, "client.crt"),
                  "STATEMESH_TLS_KEY": _p(certs, "client.key")})
    assert r.returncode == 0 and r.stdout.strip() == "2", r.stderr
    peers = rt.log_lines("event=ingress.peer")
    assert [l.split("method=")[1].split()[0] for l in peers] == \
        ["Call", "SendStream", "Send", "Call", "Call"], peers
    for line in peers:
        assert "client-1.example" in line and "spiffe://statemesh/client-1" in line, peers
        assert "CN=client" in line and "O=statemesh-test" in line, peers


# ---- runtime -> function servers ------------------------------------------------------


def _tls_testfn(sandbox, certs, mtls=True, name="testfn", cert="server"):
    args = ["--tls-cert", _p(certs, cert + ".crt"), "--tls-key", _p(certs, cert + ".key")]
    if mtls:
        args += ["--tls-ca", _p(certs, "ca.crt"), "--require-client-cert"]
    return sandbox.testfn(name=name, listen="127.0.0.1:%d" % free_port(), extra_args=args)


def _tls_pyfn(sandbox, certs, mtls=True):
    args = ["--tls-cert", _p(certs, "server.crt"), "--tls-key", _p(certs, "server.key")]
    if mtls:
        args += ["--tls-ca", _p(certs, "ca.crt"), "--require-client-cert"]
    return sandbox.python_server("tls_fn.py", args=args, listen="127.0.0.1:%d" % free_port())


def _ep_tls(certs, ca="ca.crt", cert="client.crt", key="client.key"):
    t = {"ca": _p(certs, ca)}
    if cert:
        t.update(cert=_p(certs, cert), key=_p(certs, key))
    return t


@pytest.mark.parametrize("mode", ["sidecar", "remote"])
def test_runtime_to_c_and_python_function_servers_over_mtls(sandbox, certs, mode):
    cfn = _tls_testfn(sandbox, certs)
    pyfn = _tls_pyfn(sandbox, certs)
    eps = [endpoint("test/*", cfn, mode=mode, tls=_ep_tls(certs)),
           endpoint("py/*", pyfn, mode=mode, tls=_ep_tls(certs))]
    if mode == "remote":
        for e in eps:
            e["target"] = "ipv4:" + e["target"]
    rt = sandbox.runtime(eps)
    cl = rt.client()
    for i in range(1, 21):
        cl.send("test/counter", "c", 1)
        cl.send("py/counter", "p", 2)
    assert cl.call("test/counter", "c", 0) == 20
    assert cl.call("py/counter", "p", 0) == 40
    # test/forward crosses to test/counter over the same TLS stream.
    assert cl.call("test/forward", "f", "test/counter c") == 21


def test_endpoint_wrong_ca_or_no_client_cert_fails_batches_with_the_reason(sandbox, certs):
    good = _tls_testfn(sandbox, certs, name="fn_a")
    other = _tls_testfn(sandbox, certs, name="fn_b")
    misnamed = _tls_testfn(sandbox, certs, name="fn_c", cert="elsewhere")
    rt = sandbox.runtime([endpoint("test/*", good, tls=_ep_tls(certs, ca="other.crt")),
                          endpoint("x/*", other, tls=_ep_tls(certs, cert=None)),
                          endpoint("y/*", misnamed, tls=_ep_tls(certs))])
    cl = rt.client()
    cl.send("test/counter", "w", 1)          # durable: the ingress is fine
    cl.send("x/counter", "w", 1)
    cl.send("y/counter", "w", 1)
    wait_until(lambda: rt.log_lines("endpoint.unreachable target=%s" % good.target), timeout=20)
    lines = rt.log_lines("endpoint.unreachable target=%s" % good.target)
    assert any("CERTIFICATE_VERIFY_FAILED" in l or "certificate verify failed" in l.lower()
               or "Handshake failed" in l for l in lines), lines
    # Without a client certificate the mTLS function server hangs up during
    # the handshake; the runtime says so and keeps the message.
    wait_until(lambda: rt.log_lines("endpoint.unreachable target=%s" % other.target), timeout=20)
    line = rt.log_lines("endpoint.unreachable target=%s" % other.target)[0]
    assert "tls=on" in line and "client certificate" in line, line
    # The right CA but a certificate for another name: refused too.
    wait_until(lambda: rt.log_lines("endpoint.unreachable target=%s" % misnamed.target), timeout=20)
    line = rt.log_lines("endpoint.unreachable target=%s" % misnamed.target)[0]
    assert "Peer name 127.0.0.1 is not in peer certificate" in line and "tls=on" in line, line
    for type_ in ("test/counter", "x/counter", "y/counter"):
        assert cl.get_state(type_, "w").queued_messages == 1
        assert cl.int_state(type_, "w") == 0


# ---- rotation -------------------------------------------------------------------------


def test_certificate_rotation_on_sighup_under_traffic(sandbox, certs):
    fn = sandbox.testfn()
    live = sandbox.path("live")
    live.mkdir()
    for n in ("server.crt", "server.key"):
        shutil.copy(certs / n, live / n)
    rt = sandbox.runtime([endpoint("test/*", fn)], runtime_settings={"tls": {
        "cert": str(live / "server.crt"), "key": str(live / "server.key")}})
    acked, failures, stop = [0], [], threading.Event()

    def traffic():
        with _client(rt, certs) as c:     # one connection, made before the rotation
            while not stop.is_set():
                try:
                    c.send("test/counter", "rot", 1)
                    acked[0] += 1
                except Exception as e:  # noqa: BLE001 - any failure fails the test
                    failures.append(e)
                    return

    t = threading.Thread(target=traffic)
    t.start()
    try:
        wait_until(lambda: acked[0] >= 20 or failures, timeout=20)
        # A bad key first: refused, the old certificate stays.
        shutil.copy(certs / "stray.key", live / "server.key.new")
        os.replace(live / "server.key.new", live / "server.key")
        os.kill(rt.pid, signal.SIGHUP)
        wait_until(lambda: rt.log_lines("event=tls.reload_failed"), timeout=10)
        assert "does not match" in rt.log_lines("event=tls.reload_failed")[0]
        with _client(rt, certs) as c:
            assert c.call("test/counter", "probe", 1) == 1
        # The new pair (another CA): new connections see it, the old one goes on.
        for n in ("crt", "key"):
            shutil.copy(certs / ("server2." + n), live / ("server.%s.new" % n))
            os.replace(live / ("server.%s.new" % n), live / ("server." + n))
        os.kill(rt.pid, signal.SIGHUP)
        wait_until(lambda: rt.log_lines("event=tls.reloaded"), timeout=10)
        with _client(rt, certs, ca="other.crt") as c:
            assert c.call("test/counter", "probe", 1) == 2
        with _client(rt, certs) as c:
            _refused(lambda: c.call("test/counter", "probe", 1))
        before = acked[0]
        wait_until(lambda: acked[0] >= before + 20 or failures, timeout=20)
    finally:
        stop.set()
        t.join(scaled(30))
    assert not failures, failures
    with _client(rt, certs, ca="other.crt") as c:
        assert c.call("test/counter", "rot", 0) == acked[0]
        assert c.call("test/counter", "probe", 0) == 2


def test_endpoint_client_certificate_reloaded_on_sighup(sandbox, certs):
    """SIGHUP re-reads an endpoint's tls files: running streams go on, new
    connections use the new client certificate (seen here by the function
    server refusing one from another CA, then accepting a good one again)."""
    fn = _tls_testfn(sandbox, certs)                      # wants a client cert from ca
    live = sandbox.path("ep")
    live.mkdir()

    def put(name):
        for ext in ("crt", "key"):
            shutil.copy(certs / ("%s.%s" % (name, ext)), live / ("client.%s.new" % ext))
            os.replace(live / ("client.%s.new" % ext), live / ("client." + ext))

    put("client")
    rt = sandbox.runtime([endpoint("test/*", fn, tls={
        "ca": _p(certs, "ca.crt"), "cert": str(live / "client.crt"), "key": str(live / "client.key")})])
    cl = rt.client()
    assert cl.call("test/counter", "e", 1) == 1
    # A client certificate of another CA: the open stream keeps working...
    put("rogue")
    os.kill(rt.pid, signal.SIGHUP)
    wait_until(lambda: rt.log_lines("event=tls.reloaded endpoint=" + fn.target), timeout=10)
    assert cl.call("test/counter", "e", 1) == 2
    # ...but once the function server restarts, the new connection presents it and is refused.
    fn.restart()
    cl.send("test/counter", "e", 1)
    refused = "endpoint.unreachable target=%s" % fn.target
    wait_until(lambda: [l for l in rt.log_lines(refused) if "Socket closed" in l], timeout=20)
    assert cl.int_state("test/counter", "e") == 2
    # A bad pair is refused at reload; then the good one brings the endpoint back, nothing lost.
    shutil.copy(certs / "stray.key", live / "client.key")
    os.kill(rt.pid, signal.SIGHUP)
    wait_until(lambda: rt.log_lines("event=tls.reload_failed endpoint="), timeout=10)
    assert "does not match" in rt.log_lines("event=tls.reload_failed endpoint=")[0]
    put("client")
    os.kill(rt.pid, signal.SIGHUP)
    wait_until(lambda: len(rt.log_lines("event=tls.reloaded endpoint=")) == 2, timeout=10)
    assert cl.call("test/counter", "e", 1, timeout=30) == 4


def _health(target, ca):
    """grpc.health.v1 Check over TLS trusting `ca`: True if it answers."""
    ch = grpc.secure_channel(target, grpc.ssl_channel_credentials(Path(ca).read_bytes()))
    try:
        ch.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=scaled(5))
        return True
    except grpc.RpcError:
        return False
    finally:
        ch.close()


def test_python_function_server_reloads_its_certificate_on_sighup(sandbox, certs):
    live = sandbox.path("pylive")
    live.mkdir()

    def put(name, key=None):
        for ext, src in (("crt", name), ("key", key or name)):
            shutil.copy(certs / ("%s.%s" % (src, ext)), live / ("fn.%s.new" % ext))
            os.replace(live / ("fn.%s.new" % ext), live / ("fn." + ext))

    put("server")
    port = free_port()
    fn = sandbox.python_server("tls_fn.py", args=["--tls-cert", live / "fn.crt",
                                                  "--tls-key", live / "fn.key"],
                               listen="127.0.0.1:%d" % port)
    rt = sandbox.runtime([endpoint("py/*", fn, tls=_ep_tls(certs, cert=None))])
    cl = rt.client()
    assert cl.call("py/counter", "r", 1) == 1
    target = "127.0.0.1:%d" % port
    assert _health(target, _p(certs, "ca.crt")) and not _health(target, _p(certs, "other.crt"))
    # A key of another certificate: refused, the old one stays.
    put("server", key="client")
    fn.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "TLS reload failed" in fn.log(), timeout=10)
    assert "does not match" in fn.log()
    assert _health(target, _p(certs, "ca.crt"))
    # The other CA's certificate: new connections see it, the runtime's stream goes on.
    put("server2")
    fn.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "TLS certificate reloaded" in fn.log(), timeout=10)
    assert _health(target, _p(certs, "other.crt")) and not _health(target, _p(certs, "ca.crt"))
    assert cl.call("py/counter", "r", 1) == 2
    assert fn.alive


# ---- configuration errors ----------------------------------------------------------------


def _check(sandbox, text):
    conf = sandbox.path("tls.conf")
    conf.write_text(text)
    r = subprocess.run([str(binary("statemeshd")), "--check-config", str(conf)],
                       capture_output=True, text=True, timeout=scaled(30))
    return r.returncode, r.stderr + r.stdout


def _rt_tls(items):
    return "runtime = { tls = { %s }; };\n" % " ".join('%s = %s;' % (k, v) for k, v in items)


def test_config_errors(sandbox, certs):
    crt, key, ca = (_p(certs, "server.crt"), _p(certs, "server.key"), _p(certs, "ca.crt"))
    q = lambda s: '"%s"' % s  # noqa: E731
    cases = [
        (_rt_tls([("cert", q(crt))]), "runtime.tls.key: missing"),
        (_rt_tls([("cert", q(_p(certs, "nope.crt"))), ("key", q(key))]),
         "runtime.tls.cert: %s: cannot read: No such file or directory" % _p(certs, "nope.crt")),
        (_rt_tls([("cert", q(crt)), ("key", q(_p(certs, "stray.key")))]),
         "runtime.tls.key: %s: does not match the certificate in %s" % (_p(certs, "stray.key"), crt)),
        (_rt_tls([("cert", q(_p(certs, "notpem.crt"))), ("key", q(key))]),
         "runtime.tls.cert: %s: no PEM certificate" % _p(certs, "notpem.crt")),
        (_rt_tls([("cert", q(_p(certs, "expired.crt"))), ("key", q(_p(certs, "expired.key")))]),
         "the certificate has expired"),
        (_rt_tls([("cert", q(crt)), ("key", q(key)), ("require_client_cert", "true")]),
         "runtime.tls.require_client_cert: needs ca"),
        (_rt_tls([("cert", q(crt)), ("key", q(key)), ("ca", q(str(certs))),]),
         "runtime.tls.ca: %s: not a regular file" % certs),
        (_rt_tls([("cert", q(crt)), ("key", q(key)), ("verify", "true")]),
         "runtime.tls.verify: unknown setting"),
        ("runtime = { tls = true; };\n", "runtime.tls: expected a group"),
        ('endpoints = ( { functions = "a/*"; target = "unix:/tmp/x.sock"; tls = { ca = %s; }; } );\n'
         % q(ca), "endpoints[0].tls: TLS is for TCP targets"),
        ('endpoints = ( { functions = "a/*"; target = "127.0.0.1:9"; tls = { cert = %s; key = %s; }; } );\n'
         % (q(crt), q(key)), "endpoints[0].tls.ca: missing"),
        ('endpoints = ( { functions = "a/*"; target = "127.0.0.1:9"; tls = { ca = %s; cert = %s; }; } );\n'
         % (q(ca), q(crt)), "endpoints[0].tls.key: cert and key go together"),
        ('endpoints = ( { functions = "a/*"; target = "127.0.0.1:9"; tls = { ca = %s; '
         'require_client_cert = true; }; } );\n' % q(ca),
         "endpoints[0].tls.require_client_cert: unknown setting"),
    ]
    for text, want in cases:
        rc, out = _check(sandbox, text)
        assert rc == 2 and want in out, (text, out)
    # Relative paths start at the config file's directory; a good group passes.
    for n in ("server.crt", "server.key", "ca.crt"):
        shutil.copy(certs / n, sandbox.path(n))
    rc, out = _check(sandbox, 'runtime = { tls = { cert = "server.crt"; key = "server.key"; '
                              'ca = "ca.crt"; require_client_cert = true; }; };\n'
                              'endpoints = ( { functions = "a/*"; target = "127.0.0.1:9"; '
                              'tls = { ca = "ca.crt"; }; } );\n')
    assert rc == 0, out


def test_runtime_refuses_to_start_on_a_bad_tls_file(sandbox, certs):
    rt = sandbox.runtime(start=False, runtime_settings={"tls": {
        "cert": _p(certs, "server.crt"), "key": _p(certs, "client.key")}})
    with pytest.raises(RuntimeError) as e:
        rt.start()
    assert "runtime.tls.key" in str(e.value) and "does not match" in str(e.value)
    assert rt.returncode == 2


def test_sdk_function_server_tls_errors(sandbox, certs):
    # C: a key of another certificate cannot listen; TLS on a unix socket is refused.
    bad = sandbox.testfn(name="badkey", start=False, listen="127.0.0.1:%d" % free_port(),
                         extra_args=["--tls-cert", _p(certs, "server.crt"),
                                     "--tls-key", _p(certs, "client.key")])
    bad.start(wait=False)
    assert bad.wait_exit(scaled(15)) == 1
    assert "does not match" in bad.log() and "fn.listen.failed" in bad.log()
    unix = sandbox.testfn(name="unixtls", start=False,
                          extra_args=["--tls-cert", _p(certs, "server.crt"),
                                      "--tls-key", _p(certs, "server.key")])
    unix.start(wait=False)
    assert unix.wait_exit(scaled(15)) == 1
    assert "unix socket stays plain" in unix.log()
    missing = sandbox.testfn(name="nokey", start=False, listen="127.0.0.1:%d" % free_port(),
                             extra_args=["--tls-cert", _p(certs, "server.crt"),
                                         "--tls-key", _p(certs, "nope.key")])
    missing.start(wait=False)
    assert missing.wait_exit(scaled(15)) == 1
    assert "event=fn.tls.failed" in missing.log() and "nope.key" in missing.log()
    # Python: ValueErrors before anything listens.
    fns = statemesh.StatefulFunctions()
    fns.bind("py/x")(lambda ctx, m: None)
    with pytest.raises(ValueError, match="does not match"):
        statemesh.FunctionServer(fns, "127.0.0.1:0", tls_cert=_p(certs, "server.crt"),
                                 tls_key=_p(certs, "client.key"))
    with pytest.raises(ValueError, match="unix socket"):
        statemesh.FunctionServer(fns, "unix:/tmp/x.sock", tls_cert=_p(certs, "server.crt"),
                                 tls_key=_p(certs, "server.key"))
    with pytest.raises(ValueError, match="require_client_cert needs tls_ca"):
        statemesh.FunctionServer(fns, "127.0.0.1:0", tls_cert=_p(certs, "server.crt"),
                                 tls_key=_p(certs, "server.key"), require_client_cert=True)


# ---- runtime/etcd.c over TLS (the cluster's control plane) -----------------------------


def _etcdtool(endpoints, *args, tls=None):
    env = dict(os.environ)
    for k, v in (tls or {}).items():
        env["ETCDTOOL_TLS_" + k.upper()] = v
    return subprocess.run([str(binary("test/fn/etcdtool")), endpoints] + list(args),
                          capture_output=True, text=True, env=env, timeout=scaled(60))


def _mtls_etcd(sandbox, certs):
    """A one-member etcd on https that demands client certificates of the CA:
    (its URL, the etcdtool TLS settings that get in)."""
    if not shutil.which("etcd"):
        if os.environ.get("STATEMESH_REQUIRE_ETCD"):
            pytest.fail("etcd not installed and STATEMESH_REQUIRE_ETCD is set")
        pytest.skip("etcd not installed (Debian: etcd-server)")
    port, peer = free_port(), free_port()
    url, peer_url = "https://127.0.0.1:%d" % port, "http://127.0.0.1:%d" % peer
    sandbox.server(["etcd", "--name", "m0", "--data-dir", str(sandbox.path("etcd")),
                    "--listen-client-urls", "https://{listen}", "--advertise-client-urls", url,
                    "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                    "--initial-cluster", "m0=" + peer_url, "--cert-file", _p(certs, "server.crt"),
                    "--key-file", _p(certs, "server.key"), "--trusted-ca-file", _p(certs, "ca.crt"),
                    "--client-cert-auth", "--logger", "zap", "--log-level", "warn"],
                   name="etcd", listen="127.0.0.1:%d" % port)
    good = {"ca": _p(certs, "ca.crt"), "cert": _p(certs, "client.crt"), "key": _p(certs, "client.key")}
    return url, good


def test_etcd_client_over_mtls(sandbox, certs):
    url, good = _mtls_etcd(sandbox, certs)
    wait_until(lambda: _etcdtool(url, "put", "tls/k", "v1", tls=good).returncode == 0, timeout=30)
    r = _etcdtool(url, "get", "tls/k", tls=good)
    assert r.returncode == 0 and "kv tls/k v1" in r.stdout, r.stdout + r.stderr
    # No client certificate, or etcd's certificate from a CA we do not trust: refused.
    r = _etcdtool(url, "get", "tls/k", tls={"ca": _p(certs, "ca.crt")})
    assert r.returncode == 1 and "UNAVAILABLE" in r.stderr, r.stdout + r.stderr
    r = _etcdtool(url, "get", "tls/k", tls=dict(good, ca=_p(certs, "other.crt")))
    assert r.returncode == 1 and "certificate verify failed" in r.stderr.lower(), r.stderr
    # Endpoint lists that do not fit the TLS settings.
    r = _etcdtool(url.replace("https", "http"), "get", "tls/k", tls=good)
    assert r.returncode == 2 and "every endpoint is https://" in r.stderr, r.stderr
    r = _etcdtool(url, "get", "tls/k")
    assert r.returncode == 2 and "https needs a tls group" in r.stderr, r.stderr
    r = _etcdtool(url, "get", "tls/k", tls=dict(good, key=_p(certs, "stray.key")))
    assert r.returncode == 2 and "does not match" in r.stderr, r.stderr


# ---- the admin listener and the greeter example over TLS ------------------------------


def test_admin_listener_takes_the_ingress_tls(sandbox, certs):
    """runtime.admin serves with the same TLS settings as the ingress: a
    plaintext or certificate-less client is refused there too."""
    fn = sandbox.testfn()
    admin = "127.0.0.1:%d" % free_port()
    rt = sandbox.runtime([endpoint("test/*", fn)],
                         runtime_settings={"tls": _server_tls(certs, mtls=True), "admin": admin})
    with _client(rt, certs, cert="client.crt", key="client.key") as c:
        assert c.call("test/counter", "adm", 4) == 4
    with statemesh.Client(admin, timeout=scaled(5), tls_ca=_p(certs, "ca.crt"),
                          tls_cert=_p(certs, "client.crt"), tls_key=_p(certs, "client.key")) as a:
        assert a.state("test/counter", "adm")      # the admin listener answers over mTLS
    with statemesh.Client(admin, timeout=scaled(5)) as plain:
        _refused(lambda: plain.state("test/counter", "adm"))
    with statemesh.Client(admin, timeout=scaled(5), tls_ca=_p(certs, "ca.crt")) as nocert:
        _refused(lambda: nocert.state("test/counter", "adm"))
    tls = ["--tls-ca", _p(certs, "ca.crt"), "--tls-cert", _p(certs, "client.crt"),
           "--tls-key", _p(certs, "client.key")]
    r = _cli(rt, *tls, "--admin", admin, "state", "get", "test/counter", "adm")
    assert r.returncode == 0 and "4" in r.stdout, (r.stdout, r.stderr)
    r = _cli(rt, "--admin", admin, "state", "get", "test/counter", "adm")     # plaintext
    assert r.returncode == 1, (r.stdout, r.stderr)


def test_greeter_example_serves_mtls(sandbox, certs):
    """examples/greeter's --tls-* options, as examples/kubernetes/remote.yaml runs it."""
    greeter = binary("examples/greeter/greeter")
    for bad in (["--tls-cert", _p(certs, "server.crt")],
                ["--tls-ca", _p(certs, "ca.crt")],
                ["--tls-cert", _p(certs, "server.crt"), "--tls-key", _p(certs, "server.key"),
                 "--require-client-cert"]):
        r = subprocess.run([str(greeter)] + bad, capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "greeter:" in r.stderr, (bad, r.stderr)
    g = sandbox.server([str(greeter), "--tls-cert", _p(certs, "server.crt"),
                        "--tls-key", _p(certs, "server.key"), "--tls-ca", _p(certs, "ca.crt"),
                        "--require-client-cert"],
                       name="greeter", listen="127.0.0.1:%d" % free_port())
    ok = endpoint("example/*", g, tls=_ep_tls(certs))
    rt = sandbox.runtime([ok])
    with rt.client() as c:
        assert c.call("example/user", "ada", "hi") == "Hello ada, you are visitor #1"
    rt.stop()
    # Without a client certificate the greeter refuses the runtime: nothing is applied.
    rt2 = sandbox.runtime([endpoint("example/*", g, tls=_ep_tls(certs, cert=None))], name="rt2")
    with rt2.client() as c:
        c.send("example/user", "bob", "hi")
        wait_until(lambda: rt2.log_lines("endpoint.unreachable target=%s" % g.target), timeout=20)
        line = rt2.log_lines("endpoint.unreachable target=%s" % g.target)[0]
        assert "tls=on" in line and "client certificate" in line, line
        assert c.get_state("example/user", "bob").queued_messages == 1


# ---- certificates mapped to roles (runtime.auth.certificates) ---------------------------


def test_client_certificates_mapped_to_roles(sandbox, certs):
    """A verified client certificate whose SAN is listed stands for a token of
    that role; a call with a token is judged by the token alone."""
    import secrets as pysecrets
    admin_token = pysecrets.token_hex(16)
    tok = sandbox.path("admin.token")
    tok.write_text(admin_token + "\n")
    os.chmod(tok, 0o600)
    tls = _server_tls(certs, mtls=True)
    tls["require_client_cert"] = False              # certificates optional: tokens still work
    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)], runtime_settings={
        "tls": tls,
        "auth": {"tokens": [{"file": str(tok), "role": "admin"}],
                 "certificates": [{"identity": "spiffe://statemesh/client-1", "role": "client"}]}})
    assert "auth=tokens+certificates" in rt.log_lines("event=runtime.ready")[0]
    mapped = dict(cert="client.crt", key="client.key")          # SAN spiffe://statemesh/client-1
    unmapped = dict(cert="elsewhere.crt", key="elsewhere.key")  # right CA, SAN not listed

    def code(fn_):
        try:
            fn_()
        except sm_errors.StatemeshError as e:
            return e.code
        return grpc.StatusCode.OK

    with _client(rt, certs, **mapped) as c:
        assert c.call("test/counter", "m", 3) == 3                     # client role, no token
        assert code(lambda: c.state("test/counter", "m")) == grpc.StatusCode.PERMISSION_DENIED
    with _client(rt, certs, **mapped, token="not-the-token-0123456789") as c:
        assert code(lambda: c.call("test/counter", "m", 1)) == grpc.StatusCode.UNAUTHENTICATED
    with _client(rt, certs, **mapped, token=admin_token) as c:
        assert c.state("test/counter", "m")                           # the token's role
    with _client(rt, certs, **unmapped) as c:
        assert code(lambda: c.call("test/counter", "m", 1)) == grpc.StatusCode.UNAUTHENTICATED
    with _client(rt, certs) as c:                                      # no certificate at all
        assert code(lambda: c.call("test/counter", "m", 1)) == grpc.StatusCode.UNAUTHENTICATED
        with statemesh.Client(rt.ingress, timeout=scaled(10), tls_ca=_p(certs, "ca.crt"),
                              token=admin_token) as a:
            assert a.call("test/counter", "m", 0) == 3                 # refused ones: nothing


def test_certificate_mapping_config_errors(sandbox, certs):
    crt, key, ca = (_p(certs, "server.crt"), _p(certs, "server.key"), _p(certs, "ca.crt"))
    tls = 'tls = { cert = "%s"; key = "%s"; ca = "%s"; };' % (crt, key, ca)
    no_ca = 'tls = { cert = "%s"; key = "%s"; };' % (crt, key)

    def conf(tls_, certs_):
        return "runtime = { %s auth = { certificates = ( %s ); }; };\n" % (tls_, certs_)
    one = '{ identity = "spiffe://x/a"; role = "client"; }'
    cases = [
        (conf(no_ca, one), "runtime.auth.certificates: needs runtime.tls with a ca"),
        (conf("", one), "runtime.auth.certificates: needs runtime.tls with a ca"),
        (conf(tls, one + ", " + one.replace("client", "admin")),
         'runtime.auth.certificates[1].identity: "spiffe://x/a" is also certificates[0]'),
        (conf(tls, '{ identity = "a.example,b.example"; role = "client"; }'),
         "is not a certificate identity"),
        (conf(tls, '{ identity = ""; role = "client"; }'), "is not a certificate identity"),
        (conf(tls, '{ identity = "a.example"; role = "root"; }'),
         'runtime.auth.certificates[0].role: unknown role "root"'),
        (conf(tls, '{ identity = "a.example"; }'), "runtime.auth.certificates[0].role: missing"),
        (conf(tls, '{ role = "admin"; }'), "runtime.auth.certificates[0].identity: missing"),
        (conf(tls, '{ identity = "a.example"; role = "admin"; san = "x"; }'),
         "runtime.auth.certificates[0].san: unknown setting"),
        (conf(tls, ""), "runtime.auth.certificates: is empty"),
        ("runtime = { %s auth = { }; };\n" % tls, "runtime.auth.tokens: missing"),
    ]
    for text, want in cases:
        rc, out = _check(sandbox, text)
        assert rc == 2 and want in out, (text, out)
    rc, out = _check(sandbox, conf(tls, one))        # certificates alone are enough
    assert rc == 0, out


def test_cluster_node_joins_etcd_over_mtls(sandbox, certs):
    """cluster.etcd_tls: a node registers, takes every key group and serves,
    with etcd demanding client certificates; mismatched groups are refused."""
    url, good = _mtls_etcd(sandbox, certs)
    wait_until(lambda: _etcdtool(url, "put", "tls/up", "1", tls=good).returncode == 0, timeout=30)
    etcd_tls = 'etcd_tls = { ca = "%s"; cert = "%s"; key = "%s"; };' % (
        good["ca"], good["cert"], good["key"])
    group = ('cluster = { name = "tlsc"; node_id = "n-0"; etcd = ["%s"]; initial_nodes = 1; '
             'lease_ttl_ms = 5000; %s };\n' % (url, etcd_tls))
    fn = sandbox.testfn()
    rt = sandbox.runtime([endpoint("test/*", fn)], extra_config=group)
    with rt.client() as c:
        wait_until(lambda: c.call("test/counter", "e", 0) == 0, timeout=30,
                   message="the node serves once it owns the key groups")
        assert c.call("test/counter", "e", 5) == 5
    r = _etcdtool(url, "get", "/statemesh/tlsc/nodes/n-0", tls=good)
    assert r.returncode == 0 and "advertise=" in r.stdout, r.stdout + r.stderr
    rt.stop()
    # Without a client certificate etcd refuses the node: it never joins, and says why.
    no_cert = group.replace(etcd_tls, 'etcd_tls = { ca = "%s"; };' % good["ca"])
    rt2 = sandbox.runtime([endpoint("test/*", fn)], extra_config=no_cert, name="rt2",
                          start=False)
    rt2.start(wait=False)
    wait_until(lambda: "cluster" in rt2.log() and "UNAVAILABLE" in rt2.log(), timeout=30,
               message="the refused etcd connection logged")
    assert "runtime.ready" not in rt2.log()
