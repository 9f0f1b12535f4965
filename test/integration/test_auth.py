"""Bearer tokens and roles (runtime.auth), the separate admin listener
(runtime.admin), and the clients' token options (docs/security.md).

One runtime with auth serves most tests (module fixture); the tests that
need another configuration start their own.
"""

import os
import secrets
import signal
import subprocess

import grpc
import pytest

from harness import (Sandbox, admin_pb2, binary, endpoint, free_port, ingress_pb2, int64,
                     python_env, types_pb2, wait_until, scaled)

UNAUTH = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED
OK = grpc.StatusCode.OK


def write_token(path, token, mode=0o600):
    path.write_text(token + "\n")
    os.chmod(path, mode)
    return path


def auth_group(files):
    """runtime.auth for [(file, role), ...]."""
    return {"tokens": [{"file": str(f), "role": r} for f, r in files]}


class Tokens:
    def __init__(self, dir_):
        self.admin = secrets.token_hex(16)
        self.client = secrets.token_hex(16)
        self.metrics = secrets.token_hex(16)
        self.files = {
            "admin": write_token(dir_ / "admin.token", self.admin),
            "client": write_token(dir_ / "client.token", self.client),
            "metrics": write_token(dir_ / "metrics.token", self.metrics),
        }

    def group(self):
        return auth_group([(f, r) for r, f in self.files.items()])


@pytest.fixture(scope="module")
def env():
    sb = Sandbox(prefix="sm-auth-")
    try:
        tok = Tokens(sb.workdir)
        fn = sb.testfn()
        rt = sb.runtime(endpoints=[endpoint("test/*", fn)],
                        runtime_settings={"auth": tok.group()})
        ch = grpc.insecure_channel(rt.ingress)
        yield sb, rt, tok, ch
        ch.close()
    finally:
        sb.close()


def md(token):
    return (("authorization", "Bearer " + token),) if token is not None else None


def raw_status(ch, method, kind, body, metadata, timeout=10):
    """Calls `method` with raw request bytes; returns (code, details)."""
    try:
        if kind == "unary":
            ch.unary_unary(method)(body, metadata=metadata, timeout=scaled(timeout))
        elif kind == "server_stream":
            for _ in ch.unary_stream(method)(body, metadata=metadata, timeout=scaled(timeout)):
                pass
        else:
            for _ in ch.stream_stream(method)(iter([body] if body else []), metadata=metadata,
                                              timeout=scaled(timeout)):
                pass
        return OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def send_req(id_="a", n=1):
    return ingress_pb2.SendRequest(target=types_pb2.Address(type="test/counter", id=id_),
                                   argument=int64(n)).SerializeToString()


# Every RPC with a request that does nothing harmful when admitted (empty or
# invalid: the handler answers INVALID_ARGUMENT, NOT_FOUND or OK).
# (method, kind, class)
RPCS = [
    ("/statemesh.v1.Ingress/Send", "unary", "client"),
    ("/statemesh.v1.Ingress/Call", "unary", "client"),
    ("/statemesh.v1.Ingress/SendStream", "bidi", "client"),
    ("/statemesh.v1.Ingress/Subscribe", "server_stream", "client"),
    ("/statemesh.v1.Admin/Stats", "unary", "metrics"),
    ("/statemesh.v1.Admin/GetState", "unary", "admin"),
    ("/statemesh.v1.Admin/ListDeadLetters", "unary", "admin"),
    ("/statemesh.v1.Admin/ReplayDeadLetters", "unary", "admin"),
    ("/statemesh.v1.Admin/DropDeadLetters", "unary", "admin"),
    ("/statemesh.v1.Admin/Inspect", "unary", "admin"),
    ("/statemesh.v1.Admin/ListStuck", "unary", "admin"),
    ("/statemesh.v1.Admin/Skip", "unary", "admin"),
    ("/statemesh.v1.Admin/Resume", "unary", "admin"),
    ("/statemesh.v1.Admin/ListState", "unary", "admin"),
    ("/statemesh.v1.Admin/SetState", "unary", "admin"),
    ("/statemesh.v1.Admin/DeleteState", "unary", "admin"),
    ("/statemesh.v1.Admin/CreateSavepoint", "server_stream", "admin"),
    ("/statemesh.v1.Admin/Bootstrap", "unary", "admin"),
]

ALLOWED = {"client": {"client", "admin"}, "metrics": {"metrics", "admin"}, "admin": {"admin"}}


@pytest.mark.parametrize("method,kind,cls", RPCS, ids=[m.rsplit("/", 1)[1] for m, _, _ in RPCS])
def test_every_rpc_by_token(env, method, kind, cls):
    _, rt, tok, ch = env
    cases = {
        "none": None,
        "wrong": secrets.token_hex(16),
        "client": tok.client,
        "metrics": tok.metrics,
        "admin": tok.admin,
    }
    for who, token in cases.items():
        code, details = raw_status(ch, method, kind, b"", md(token))
        if who in ("none", "wrong"):
            assert (code, details) == (UNAUTH, "invalid or missing token"), (who, code, details)
        elif who in ALLOWED[cls]:
            assert code not in (UNAUTH, DENIED), (who, code, details)
        else:
            assert code == DENIED, (who, code, details)
            assert "token" not in details or details == \
                "this token's role does not allow this method"


def test_malformed_authorization_is_unauthenticated(env):
    _, rt, tok, ch = env
    m = "/statemesh.v1.Admin/Stats"
    for value in (tok.admin, "Basic " + tok.admin, "Bearer", "Bearer ", "Bearer  x",
                  "Bearer " + tok.admin + "x", "Bearer " + tok.admin[:-1],
                  "Bearer " + "a" * 5000):
        code, details = raw_status(ch, m, "unary", b"", (("authorization", value),))
        assert (code, details) == (UNAUTH, "invalid or missing token"), value[:40]
    # The scheme is case-insensitive, spaces between scheme and token allowed.
    for value in ("bearer " + tok.admin, "BEARER   " + tok.admin):
        assert raw_status(ch, m, "unary", b"", (("authorization", value),))[0] == OK
    # Two authorization headers: refused, whatever they hold.
    two = (("authorization", "Bearer " + tok.admin), ("authorization", "Bearer " + tok.admin))
    assert raw_status(ch, m, "unary", b"", two)[0] == UNAUTH


def test_refused_calls_change_nothing(env):
    _, rt, tok, ch = env
    stats = ch.unary_unary("/statemesh.v1.Admin/Stats")

    def received():
        resp = admin_pb2.StatsResponse.FromString(stats(b"", metadata=md(tok.metrics)))
        return {s.name: s.value for s in resp.stats}["messages_received"]

    before = received()
    for token in (None, secrets.token_hex(16), tok.metrics):
        code, _ = raw_status(ch, "/statemesh.v1.Ingress/Send", "unary", send_req("nochange"),
                             md(token))
        assert code in (UNAUTH, DENIED)
        code, _ = raw_status(ch, "/statemesh.v1.Ingress/SendStream", "bidi",
                             ingress_pb2.SendStreamRequest(messages=[ingress_pb2.StreamMessage(
                                 seq=1, target=types_pb2.Address(type="test/counter", id="nochange"),
                                 argument=int64(1))]).SerializeToString(), md(token))
        assert code in (UNAUTH, DENIED)
    setreq = admin_pb2.SetStateRequest(address=types_pb2.Address(type="test/counter", id="nochange"),
                                       name="n", value=int64(99)).SerializeToString()
    for token in (None, tok.client, tok.metrics):
        assert raw_status(ch, "/statemesh.v1.Admin/SetState", "unary", setreq, md(token))[0] \
            in (UNAUTH, DENIED)
    assert received() == before
    st = admin_pb2.GetStateResponse.FromString(ch.unary_unary("/statemesh.v1.Admin/GetState")(
        admin_pb2.GetStateRequest(address=types_pb2.Address(type="test/counter", id="nochange"))
        .SerializeToString(), metadata=md(tok.admin)))
    assert list(st.values) == [] and st.queued_messages == 0


def test_end_to_end_with_client_token(env):
    """A normal message flow works with the client token: Send, Call, SendStream,
    then state read back with the admin token."""
    sb, rt, tok, ch = env
    from statemesh import Client, PermissionDenied, Unauthenticated
    with Client(rt.ingress, token=tok.client, timeout=scaled(10)) as c:
        c.send("test/counter", "e2e", 2)
        assert c.call("test/counter", "e2e", 3) == 5
        r = c.send_stream(("test/counter", "e2e", 1) for _ in range(10))
        assert r.acked == 10 and r.errors == []
        with pytest.raises(PermissionDenied):
            c.state("test/counter", "e2e")
        with pytest.raises(PermissionDenied):
            c.stats()
    with Client(rt.ingress, token=tok.admin, timeout=scaled(10)) as c:
        assert c.state("test/counter", "e2e") == {"n": 15}
        assert c.call("test/counter", "e2e", 1) == 16       # admin implies client
    with Client(rt.ingress, token=tok.metrics, timeout=scaled(10)) as c:
        assert c.stats()["messages_received"] >= 12
        with pytest.raises(PermissionDenied):
            c.send("test/counter", "e2e", 1)
    with Client(rt.ingress, timeout=scaled(10)) as c:
        with pytest.raises(Unauthenticated):
            c.send("test/counter", "e2e", 1)
    with pytest.raises(ValueError):
        Client(rt.ingress, token="has space")


def test_async_client_token(env):
    sb, rt, tok, ch = env
    import asyncio
    from statemesh import AsyncClient, PermissionDenied

    async def main():
        c = AsyncClient(rt.ingress, token=tok.client, timeout=scaled(10))
        try:
            assert await c.call("test/counter", "async", 7) == 7
            with pytest.raises(PermissionDenied):
                await c.stats()
        finally:
            await c.close()

    asyncio.run(main())


def test_python_client_token_from_env(env):
    sb, rt, tok, ch = env
    code = ("import sys; from statemesh import Client\n"
            "c = Client(sys.argv[1], timeout=10)\n"
            "print(c.call('test/counter', 'envpy', 4))\n")
    for token, want in ((tok.client, "4"), (None, "Unauthenticated")):
        e = python_env({})
        e.pop("STATEMESH_TOKEN", None)
        if token:
            e["STATEMESH_TOKEN"] = token
        r = subprocess.run(["/usr/bin/python3", "-c", code, rt.ingress], env=e,
                           capture_output=True, text=True, timeout=scaled(30))
        assert want in (r.stdout + r.stderr), r.stdout + r.stderr


def cli(args, env_extra=None, drop=("STATEMESH_TOKEN", "STATEMESH_ADMIN", "STATEMESH_ADDRESS")):
    e = dict(os.environ)
    for k in drop:
        e.pop(k, None)
    e.update(env_extra or {})
    return subprocess.run([str(binary("statemesh"))] + args, env=e, capture_output=True,
                          text=True, timeout=scaled(30))


def test_cli_token_option_file_and_env(env):
    sb, rt, tok, ch = env
    a = ["--address", rt.ingress]
    r = cli(a + ["call", "test/counter", "cli", "1", "--type", "int64"])
    assert r.returncode == 1 and "UNAUTHENTICATED: invalid or missing token" in r.stderr
    r = cli(a + ["call", "test/counter", "cli", "1", "--type", "int64", "--token", tok.client])
    assert (r.returncode, r.stdout.strip()) == (0, "1"), r.stderr
    r = cli(a + ["call", "test/counter", "cli", "1", "--type", "int64",
                 "--token-file", str(tok.files["client"])])
    assert (r.returncode, r.stdout.strip()) == (0, "2"), r.stderr
    r = cli(a + ["call", "test/counter", "cli", "1", "--type", "int64"],
            {"STATEMESH_TOKEN": tok.client})
    assert (r.returncode, r.stdout.strip()) == (0, "3"), r.stderr
    r = cli(a + ["stats"], {"STATEMESH_TOKEN": tok.client})
    assert r.returncode == 1 and "PERMISSION_DENIED" in r.stderr
    r = cli(a + ["stats", "--token", tok.metrics])
    assert r.returncode == 0 and "messages_received" in r.stdout
    r = cli(a + ["state", "get", "test/counter", "cli", "--token", tok.admin])
    assert r.returncode == 0 and "3" in r.stdout, r.stderr
    # streams of the C SDK carry the token too: send --stdin is a SendStream
    lines = "".join('{"type":"test/counter","id":"cli","value":1,"typename":"int64"}\n'
                    for _ in range(5))
    e = dict(os.environ, STATEMESH_TOKEN=tok.client)
    r = subprocess.run([str(binary("statemesh"))] + a + ["send", "--stdin", "--quiet"],
                       input=lines, env=e, capture_output=True, text=True, timeout=scaled(30))
    assert r.returncode == 0, r.stderr
    e["STATEMESH_TOKEN"] = tok.metrics
    r = subprocess.run([str(binary("statemesh"))] + a + ["send", "--stdin", "--quiet"],
                       input=lines, env=e, capture_output=True, text=True, timeout=scaled(30))
    assert r.returncode == 1 and "PERMISSION_DENIED" in r.stderr, r.stderr
    r = cli(a + ["state", "get", "test/counter", "cli", "--token", tok.admin])
    assert r.returncode == 0 and " 8" in r.stdout, r.stdout + r.stderr
    # --token wins over $STATEMESH_TOKEN
    r = cli(a + ["state", "get", "test/counter", "cli", "--token", tok.admin],
            {"STATEMESH_TOKEN": tok.client})
    assert r.returncode == 0, r.stderr
    # usage errors
    r = cli(a + ["stats", "--token", tok.admin, "--token-file", str(tok.files["admin"])])
    assert r.returncode == 2 and "not both" in r.stderr
    r = cli(a + ["stats", "--token", "a b"])
    assert r.returncode == 2 and "printable ASCII" in r.stderr
    r = cli(a + ["stats", "--token-file", str(sb.path("nonexistent.token"))])
    assert r.returncode == 2 and "No such file" in r.stderr


# ---- configurations of their own -------------------------------------------------------------


def check_config(sb, text):
    p = sb.path("check.conf")
    p.write_text(text)
    return subprocess.run([str(binary("statemeshd")), "--check-config", str(p)],
                          capture_output=True, text=True, timeout=scaled(30))


def test_config_errors(sandbox):
    sb = sandbox
    d = sb.workdir
    good = write_token(d / "good.token", secrets.token_hex(16))
    write_token(d / "dup.token", good.read_text().strip())
    write_token(d / "empty.token", "")
    write_token(d / "short.token", "abc")
    write_token(d / "open.token", secrets.token_hex(16), mode=0o644)
    write_token(d / "hashed.token", "sha256:" + "ab" * 32, mode=0o644)
    write_token(d / "badhash.token", "sha256:xyz")
    (d / "two.token").write_text("line1-aaaaaaaaaaaaaaaa\nline2-bbbbbbbbbbbbbbb\n")
    os.chmod(d / "two.token", 0o600)
    write_token(d / "ww.token", "sha256:" + "cd" * 32, mode=0o666)

    def conf(auth):
        return 'runtime = { data_dir = "%s"; auth = %s; };\n' % (d / "data", auth)

    def tokens(*items):
        return "{ tokens = ( %s ); }" % ", ".join(
            '{ file = "%s"; role = "%s"; }' % (f, r) for f, r in items)

    ok = check_config(sb, conf(tokens(("good.token", "admin"), ("hashed.token", "client"))))
    assert ok.returncode == 0, ok.stderr
    cases = [
        (tokens(("missing.token", "admin")), "runtime.auth.tokens[0].file", "No such file"),
        (tokens(("empty.token", "admin")), "runtime.auth.tokens[0].file", "is empty"),
        (tokens(("short.token", "admin")), "runtime.auth.tokens[0].file", "at least 16"),
        (tokens(("open.token", "admin")), "runtime.auth.tokens[0].file",
         "readable by other users (mode 0644)"),
        (tokens(("ww.token", "admin")), "runtime.auth.tokens[0].file", "writable by other users"),
        (tokens(("badhash.token", "admin")), "runtime.auth.tokens[0].file", "hex digits"),
        (tokens(("two.token", "admin")), "runtime.auth.tokens[0].file", "more than one line"),
        (tokens(("good.token", "admin"), ("dup.token", "client")),
         "runtime.auth.tokens[1].file", "same token as tokens[0]"),
        (tokens(("good.token", "root")), "runtime.auth.tokens[0].role", 'unknown role "root"'),
        ("{ tokens = (); }", "runtime.auth.tokens", "is empty"),
        ("{ }", "runtime.auth.tokens", "missing"),
        ('{ tokens = ( { role = "admin"; } ); }', "runtime.auth.tokens[0].file", "missing"),
        ('{ tokens = ( { file = "good.token"; } ); }', "runtime.auth.tokens[0].role", "missing"),
        ('{ tokens = ( { file = "good.token"; role = "admin"; x = 1; } ); }',
         "runtime.auth.tokens[0].x", "unknown"),
        ('{ token = "x"; }', "runtime.auth.token", "unknown"),
        ('"secret"', "runtime.auth", "group"),
    ]
    for auth, setting, why in cases:
        r = check_config(sb, conf(auth))
        assert r.returncode == 2, (auth, r.stdout)
        assert setting in r.stderr and why in r.stderr, (auth, r.stderr)
    r = check_config(sb, 'runtime = { ingress = "127.0.0.1:7071"; admin = "127.0.0.1:7071"; };\n')
    assert r.returncode == 2 and "runtime.admin" in r.stderr and "same address" in r.stderr
    r = check_config(sb, 'runtime = { admin = "nope"; };\n')
    assert r.returncode == 2 and "runtime.admin" in r.stderr
    # The runtime itself refuses to start on them (exit 2), before binding anything.
    rt = sb.runtime(start=False, runtime_settings={"auth": auth_group([(d / "open.token", "admin")])})
    rt.start(wait=False)
    wait_until(lambda: rt.returncode is not None, 20, message="statemeshd exits")
    assert rt.returncode == 2 and "readable by other users" in rt.log()
    sb.runtimes.remove(rt)


def test_hashed_token_file(sandbox):
    sb = sandbox
    token = secrets.token_hex(20)
    import hashlib
    f = write_token(sb.path("h.token"), "sha256:" + hashlib.sha256(token.encode()).hexdigest(),
                    mode=0o644)
    rt = sb.runtime(runtime_settings={"auth": auth_group([(f, "metrics")])})
    ch = grpc.insecure_channel(rt.ingress)
    assert raw_status(ch, "/statemesh.v1.Admin/Stats", "unary", b"", md(token))[0] == OK
    assert raw_status(ch, "/statemesh.v1.Admin/Stats", "unary", b"",
                      md("sha256:" + hashlib.sha256(token.encode()).hexdigest()))[0] == UNAUTH
    ch.close()


def test_admin_listener_separate(sandbox):
    sb = sandbox
    tok = Tokens(sb.workdir)
    fn = sb.testfn()
    admin = "127.0.0.1:%d" % free_port()
    rt = sb.runtime(endpoints=[endpoint("test/*", fn)],
                    runtime_settings={"admin": admin, "auth": tok.group()})
    ing = grpc.insecure_channel(rt.ingress)
    adm = grpc.insecure_channel(admin)
    # Admin methods are not on the ingress, whatever the token.
    for method, kind, cls in RPCS:
        if cls == "client":
            assert raw_status(ing, method, kind, b"", md(tok.client))[0] != UNAUTH
            assert raw_status(adm, method, kind, b"", md(tok.admin))[0] == \
                grpc.StatusCode.UNIMPLEMENTED, method
        else:
            assert raw_status(ing, method, kind, b"", md(tok.admin))[0] == \
                grpc.StatusCode.UNIMPLEMENTED, method
            assert raw_status(ing, method, kind, b"", None)[0] == UNAUTH, method
            assert raw_status(adm, method, kind, b"", md(tok.admin))[0] not in (UNAUTH, DENIED)
            assert raw_status(adm, method, kind, b"", None)[0] == UNAUTH
    # Health needs no token, on both.
    for ch in (ing, adm):
        assert raw_status(ch, "/grpc.health.v1.Health/Check", "unary", b"", None)[0] == OK
    ing.close()
    adm.close()
    # The CLI sends admin commands to --admin / $STATEMESH_ADMIN.
    r = cli(["--address", rt.ingress, "call", "test/counter", "x", "5", "--type", "int64",
             "--token", tok.client, "--admin", admin])
    assert (r.returncode, r.stdout.strip()) == (0, "5"), r.stderr
    r = cli(["--address", rt.ingress, "state", "get", "test/counter", "x", "--token", tok.admin])
    assert r.returncode == 1 and "UNIMPLEMENTED" in r.stderr
    r = cli(["--address", rt.ingress, "state", "get", "test/counter", "x", "--token", tok.admin],
            {"STATEMESH_ADMIN": admin})
    assert r.returncode == 0 and "5" in r.stdout, r.stderr


def test_admin_listener_without_auth(sandbox):
    sb = sandbox
    fn = sb.testfn()
    admin = "127.0.0.1:%d" % free_port()
    rt = sb.runtime(endpoints=[endpoint("test/*", fn)], runtime_settings={"admin": admin})
    c = rt.client()
    c.send("test/counter", "o", int64(1))
    with pytest.raises(grpc.RpcError) as e:
        c.get_state("test/counter", "o")
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    a = sb.client(admin)
    assert a.int_state("test/counter", "o") == 1
    assert "auth.open" not in rt.log()          # loopback: no warning


def test_open_runtime_warns_when_not_loopback(sandbox):
    sb = sandbox
    rt = sb.runtime(ingress="0.0.0.0:%d" % free_port())
    assert "event=auth.open" in rt.log()
    rt2 = sb.runtime()
    assert "event=auth.open" not in rt2.log()


def test_sighup_rereads_token_files(sandbox):
    sb = sandbox
    tok = Tokens(sb.workdir)
    rt = sb.runtime(runtime_settings={"auth": tok.group()})
    ch = grpc.insecure_channel(rt.ingress)
    stats = "/statemesh.v1.Admin/Stats"
    assert raw_status(ch, stats, "unary", b"", md(tok.metrics))[0] == OK
    new = secrets.token_hex(16)
    write_token(tok.files["metrics"], new)
    rt.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "event=auth.reloaded" in rt.log(), 10, message="auth.reloaded")
    assert raw_status(ch, stats, "unary", b"", md(tok.metrics))[0] == UNAUTH
    assert raw_status(ch, stats, "unary", b"", md(new))[0] == OK
    # A bad file on reload changes nothing: the tokens in force stay.
    write_token(tok.files["metrics"], "")
    rt.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "event=auth.reload_failed" in rt.log(), 10, message="auth.reload_failed")
    assert raw_status(ch, stats, "unary", b"", md(new))[0] == OK
    assert raw_status(ch, stats, "unary", b"", md(tok.admin))[0] == OK
    ch.close()
