"""
The statemesh CLI against a live runtime, and the greeter example end to end.

    statemesh [--address A] send|call TYPE ID VALUE [--type string|int64|json]
    statemesh [--address A] state get TYPE ID [NAME]
    statemesh [--address A] stats
    statemesh help [COMMAND], statemesh COMMAND --help
    exit 0 ok / 1 RPC error / 2 usage / 3 not found (state get)
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


# ---- usage errors, help, exit codes ---------------------------------------------

COMMANDS = ["send", "call", "state", "stats", "egress", "deadletters", "inspect", "stuck",
            "skip", "resume"]
HINT = "run 'statemesh help %s' (or 'statemesh --help') for usage"


@pytest.mark.parametrize("args,cmd", [
    ([], "COMMAND"),
    (["frobnicate"], "COMMAND"),
    (["send", "test/counter", "x"], "send"),
    (["state"], "state"),
    (["stats", "--bogus"], "stats"),
    (["--timeout", "0", "stats"], "COMMAND"),  # the command is not known yet
    (["help", "nosuch"], "COMMAND"),
    (["help", "send", "call"], "COMMAND"),
], ids=lambda a: "-".join(a) if isinstance(a, list) else a)
def test_cli_usage_error_is_two_lines(args, cmd):
    p = run_cli(args, address="127.0.0.1:%d" % free_port(), timeout=20)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 2, p.stderr
    assert lines[0].startswith("statemesh: ") and "usage:" not in p.stderr, p.stderr
    assert lines[1] == HINT % cmd, p.stderr
    assert p.stdout == ""


def test_cli_help_is_the_full_help():
    full = run_cli(["--help"])
    assert full.returncode == 0 and full.stderr == ""
    assert full.stdout.startswith("usage: statemesh")
    for cmd in COMMANDS:
        assert "\n  %s " % cmd in full.stdout or "\n  %s\n" % cmd in full.stdout, cmd
    for code in ("0  ok", "1  the runtime", "2  usage error", "3  not found"):
        assert code in full.stdout, code
    for args in (["help"], ["-h"]):
        p = run_cli(args)
        assert p.returncode == 0 and p.stdout == full.stdout, args


@pytest.mark.parametrize("cmd", COMMANDS)
def test_cli_help_command(cmd):
    p = run_cli(["help", cmd])
    assert p.returncode == 0 and p.stderr == "", p.stderr
    first = p.stdout.splitlines()[0]
    assert first.startswith("usage: statemesh [--address HOST:PORT] %s" % cmd), first
    assert "options:" in p.stdout and "exit status:" in p.stdout
    others = [c for c in COMMANDS if c != cmd and not (cmd == "state" and c == "stats")]
    for line in p.stdout.splitlines():         # usage lines of this command only
        if line.startswith(("usage:", "      statemesh")):
            assert not any(" %s " % c in line for c in others), line
    assert len(p.stdout) < len(run_cli(["--help"]).stdout) / 2
    for args in ([cmd, "--help"], [cmd, "-h"], ["--help", cmd]):
        q = run_cli(args, address="127.0.0.1:%d" % free_port(), timeout=20)
        assert q.returncode == 0 and q.stdout == p.stdout, (args, q.stdout, q.stderr)


def test_cli_help_command_notes():
    p = run_cli(["help", "deadletters"])
    for s in ("deadletters list [--type T] [--after ID] [--limit N]",
              "deadletters replay (ID... | --all) [--type T]",
              "deadletters drop (ID... | --all) [--type T]", "--after ID", "--all"):
        assert s in p.stdout, s
    assert "--follow" not in p.stdout and "--delay" not in p.stdout
    p = run_cli(["help", "state"])
    assert "3 not found" in p.stdout and "--delay" not in p.stdout


def test_cli_state_get_not_found_exit_3(rt_env):
    rt, fn, cl = rt_env
    a = rt.ingress
    p = run_cli(["state", "get", "test/counter", "nobody"], address=a)
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == "# queued_messages=0 in_flight=false\n", p.stdout
    assert p.stderr == "statemesh: test/counter nobody has no state\n", p.stderr
    p = run_cli(["state", "get", "test/counter", "nobody", "--json"], address=a)
    assert p.returncode == 3 and '"values":[]' in p.stdout, (p.stdout, p.stderr)
    _ok(run_cli(["send", "test/counter", "c3", "4", "--type", "int64"], address=a))
    assert wait_until(lambda: cl.int_state("test/counter", "c3") == 4)
    p = run_cli(["state", "get", "test/counter", "c3", "nosuch"], address=a)
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)
    assert p.stdout.startswith("# queued_messages="), p.stdout
    assert p.stderr == "statemesh: test/counter c3 has no state named 'nosuch'\n", p.stderr
    p = _ok(run_cli(["state", "get", "test/counter", "c3", "n"], address=a))
    assert p.stderr == "" and _number_in(4, p.stdout)
