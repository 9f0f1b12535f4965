"""
The statemesh CLI against a live runtime, and the greeter example end to end.

    statemesh [--address A] send|call TYPE ID VALUE [--type string|int64|json]
    statemesh [--address A] state get TYPE ID [NAME]
    statemesh [--address A] stats
    exit 0 ok / 1 RPC error / 2 usage
"""

import re

import pytest

from harness import endpoint, free_port, int64, run_cli, wait_until

pytestmark = pytest.mark.needs("statemesh")


def _ok(p):
    assert p.returncode == 0, "exit %d\nstdout: %s\nstderr: %s" % (p.returncode, p.stdout, p.stderr)
    return p


def _number_in(n, text):
    return re.search(r"(?<![\d#-])%d(?!\d)" % n, text) is not None


def test_cli_send_call_state_stats(rt_env):
    rt, fn, cl = rt_env
    a = rt.ingress
    _ok(run_cli(["send", "test/counter", "c1", "5", "--type", "int64"], address=a))
    assert wait_until(lambda: cl.int_state("test/counter", "c1") == 5)
    p = _ok(run_cli(["call", "test/counter", "c1", "2", "--type", "int64"], address=a))
    assert _number_in(7, p.stdout), p.stdout
    p = _ok(run_cli(["state", "get", "test/counter", "c1", "n"], address=a))
    assert _number_in(7, p.stdout), p.stdout
    p = _ok(run_cli(["state", "get", "test/counter", "c1"], address=a))
    assert "n" in p.stdout and _number_in(7, p.stdout), p.stdout
    p = _ok(run_cli(["stats"], address=a))
    for name in ("messages_received", "queued_messages", "checkpoints"):
        assert name in p.stdout, p.stdout


def test_cli_string_call_echo(rt_env):
    rt, fn, cl = rt_env
    p = _ok(run_cli(["call", "test/echo", "e", "hello there"], address=rt.ingress))
    assert "hello there" in p.stdout
    p = _ok(run_cli(["call", "test/echo", "e", "plain", "--type", "string"], address=rt.ingress))
    assert "plain" in p.stdout


def test_cli_json_value(rt_env):
    rt, fn, cl = rt_env
    p = _ok(run_cli(["call", "test/echo", "j", '{"a": [1, 2]}', "--type", "json"], address=rt.ingress))
    assert '"a"' in p.stdout, p.stdout


def test_cli_greeter(sandbox, require):
    require("statemeshd", "examples/greeter/greeter")
    g = sandbox.greeter()
    rt = sandbox.runtime(endpoints=[endpoint("example/*", g)])
    p = _ok(run_cli(["call", "example/user", "alice", "alice"], address=rt.ingress))
    assert "Hello alice, you are visitor #1" in p.stdout, p.stdout
    p = _ok(run_cli(["call", "example/user", "alice", "alice"], address=rt.ingress))
    assert "Hello alice, you are visitor #2" in p.stdout, p.stdout
    p = _ok(run_cli(["call", "example/user", "bob", "bob"], address=rt.ingress))
    assert "Hello bob, you are visitor #1" in p.stdout, p.stdout


def test_greeter_over_grpc_survives_restart(sandbox, require):
    require("statemeshd", "examples/greeter/greeter")
    g = sandbox.greeter()
    rt = sandbox.runtime(endpoints=[endpoint("example/*", g)])
    cl = rt.client()
    assert cl.call("example/user", "carol", "carol") == "Hello carol, you are visitor #1"
    rt.stop()
    rt.start()
    assert cl.call("example/user", "carol", "carol") == "Hello carol, you are visitor #2"


@pytest.mark.parametrize("args", [
    [],                                                     # no command
    ["frobnicate"],                                         # unknown command
    ["send"],                                               # missing TYPE ID VALUE
    ["send", "test/counter", "x"],                          # missing VALUE
    ["call", "test/counter"],                               # missing ID VALUE
    ["send", "test/counter", "x", "1", "--type", "nosuch"],  # unknown --type
    ["send", "test/counter", "x", "abc", "--type", "int64"],  # not an int64
    ["state"],                                              # missing subcommand
    ["state", "get", "test/counter"],                       # missing ID
], ids=lambda a: "-".join(a) or "empty")
def test_cli_usage_errors_exit_2(args):
    # No runtime needed: usage errors are detected before any RPC; point the
    # CLI at a closed port so an accidental RPC fails instead of hanging.
    p = run_cli(args, address="127.0.0.1:%d" % free_port(), timeout=20)
    assert p.returncode == 2, "exit %d for %r\nstdout: %s\nstderr: %s" % (
        p.returncode, args, p.stdout, p.stderr)
    assert p.stderr.strip(), "usage errors should explain themselves on stderr"


def test_cli_rpc_error_exit_1(rt_env):
    rt, fn, cl = rt_env
    p = run_cli(["call", "nosuch/thing", "x", "hi"], address=rt.ingress)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.strip()
    p = run_cli(["send", "test/counter", "", "1", "--type", "int64"], address=rt.ingress)
    assert p.returncode in (1, 2), (p.returncode, p.stdout, p.stderr)   # empty id
    assert cl.healthy()


def test_cli_unreachable_runtime_exit_1():
    p = run_cli(["send", "test/counter", "x", "1", "--type", "int64"],
                address="127.0.0.1:%d" % free_port(), timeout=60)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.strip()


def test_cli_call_int64_matches_grpc(rt_env):
    rt, fn, cl = rt_env
    cl.send("test/counter", "mix", int64(100))
    p = _ok(run_cli(["call", "test/counter", "mix", "50", "--type", "int64"], address=rt.ingress))
    assert _number_in(150, p.stdout), p.stdout
    assert cl.int_state("test/counter", "mix") == 150
