"""
Dead letters from the CLI and the Python client, against the real runtime:

    statemesh deadletters list [--type T] [--after ID] [--limit N] [--json]
    statemesh deadletters replay (ID... | --all) [--type T]
    statemesh deadletters drop (ID... | --all) [--type T]

msg_fn.py's msg/flaky fails while a file exists and test/fail (testfn)
always fails; both endpoints retry 3 times (20 ms backoff), then the
batch's messages go to dead letters. The tests list them in every form,
drop some, "fix" msg/flaky (delete the file), replay, and check that the
replayed messages were applied exactly once and the store is empty.
"""

import datetime
import json
import re
import sys
import time

import pytest

from harness import REPO, endpoint, free_port, run_cli, wait_until

sys.path.insert(0, str(REPO / "sdk-python"))
import statemesh  # noqa: E402
from statemesh import Address, Client  # noqa: E402

pytestmark = pytest.mark.needs("statemesh", "statemeshd", "test/fn/testfn")

RETRY = {"initial_backoff_ms": 20, "max_attempts": 3}
FLAKY = "function failed: flaky is failing"          # the runtime names the kind of failure
FAIL = "function failed: test/fail always fails"
TEXT_LINE = re.compile(r'^(\d+) (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) (.+?) (\d+) (.*) '
                       r'("(?:[^"\\]|\\.)*")$')


class Env:
    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.fail = sandbox.path("flaky-fails")
        self.fail.write_text("x")
        fn = sandbox.python_server("msg_fn.py", ["--fail-file", self.fail], name="msgfn",
                                   listen_flag="--listen")
        self.msg_ep = endpoint("msg/*", fn, max_batch=1, retry=RETRY)
        self.test_ep = endpoint("test/*", sandbox.testfn(), retry=RETRY)
        self.rt = sandbox.runtime([self.msg_ep, self.test_ep])
        self.client = self.rt.client()

    def cli(self, *args, timeout=30):
        return run_cli([str(a) for a in args], address=self.rt.ingress, timeout=timeout)

    def ok(self, *args):
        p = self.cli(*args)
        assert p.returncode == 0, "exit %d\nstdout: %s\nstderr: %s" % (p.returncode, p.stdout,
                                                                       p.stderr)
        return p

    def wait_dead_letters(self, n):
        wait_until(lambda: self.client.stats()["dead_letters"] == n, timeout=30,
                   message="%d dead letters" % n)


@pytest.fixture
def env(sandbox):
    return Env(sandbox)


@pytest.fixture
def nowhere():
    """An address where nothing listens."""
    return "127.0.0.1:%d" % free_port()


def parse_text(stdout):
    """'deadletters list' text -> ([(id, time, type, id, attempts, value, error)], total)."""
    lines = stdout.splitlines()
    assert lines and lines[-1].startswith("# total="), stdout
    rows = []
    for line in lines[:-1]:
        m = TEXT_LINE.match(line)
        assert m, "malformed line: %r" % line
        rows.append((int(m[1]), m[2], m[3], m[4], int(m[5]), m[6], json.loads(m[7])))
    return rows, int(lines[-1][len("# total="):])


def parse_json(stdout):
    objs = [json.loads(line) for line in stdout.splitlines()]
    assert objs and set(objs[-1]) == {"total"}, stdout
    return objs[:-1], objs[-1]["total"]


def iso(ms):
    t = datetime.datetime.fromtimestamp(ms // 1000, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def test_list_drop_fix_replay(env):
    t0 = int(time.time() * 1000)
    env.ok("send", "msg/flaky", "a", "m0")
    env.ok("send", "msg/flaky", "a", '{"k": [1, 2]}', "--type", "json")
    env.ok("send", "msg/flaky", "b c", 5, "--type", "int64")
    env.ok("send", "msg/flaky", "a", "0102ff", "--type", "geo/pt")
    env.ok("send", "test/forward", "f", "msg/flaky fwd")   # msg/flaky fwd gets int64 1 from test/forward f
    env.ok("send", "test/fail", "x", "hi")
    env.wait_dead_letters(6)
    assert env.client.stats()["queued_messages"] == 0
    t1 = int(time.time() * 1000)

    # ---- text
    rows, total = parse_text(env.ok("deadletters", "list").stdout)
    assert total == 6 and len(rows) == 6
    ids = [r[0] for r in rows]
    assert ids == sorted(ids) and len(set(ids)) == 6
    for _, when, _, _, attempts, _, _ in rows:
        assert attempts == 3
        assert iso(t0 - 1000) <= when <= iso(t1 + 1000)
    got = sorted(r[2:4] + r[5:] for r in rows)
    assert got == sorted([
        ("msg/flaky", "a", '"m0"', FLAKY),
        ("msg/flaky", "a", '{"k": [1, 2]}', FLAKY),
        ("msg/flaky", '"b c"', "5", FLAKY),
        ("msg/flaky", "a", "geo/pt 0102ff", FLAKY),
        ("msg/flaky", "fwd", "1", FLAKY),
        ("test/fail", "x", '"hi"', FAIL),
    ]), rows
    # messages to one address keep their order
    assert [r[5] for r in rows if r[3] == "a"] == ['"m0"', '{"k": [1, 2]}', "geo/pt 0102ff"]
    by_target = {(r[2], r[3], r[5]): r[0] for r in rows}

    # ---- json: the same dead letters, every field
    objs, jtotal = parse_json(env.ok("deadletters", "list", "--json").stdout)
    assert jtotal == 6 and [o["id"] for o in objs] == ids
    for o, r in zip(objs, rows):
        assert o["attempts"] == 3 and o["time"] == r[1] == iso(o["failed_at_ms"])
        assert o["error"] == r[6]
        assert t0 - 1000 <= o["failed_at_ms"] <= t1 + 1000
    j = {(o["target"]["type"], o["target"]["id"], o["typename"]): o for o in objs}
    assert j[("msg/flaky", "a", "statemesh/string")]["value"] == "m0"
    assert j[("msg/flaky", "a", "statemesh/json")]["value"] == {"k": [1, 2]}
    assert j[("msg/flaky", "b c", "statemesh/int64")]["value"] == 5
    user = j[("msg/flaky", "a", "geo/pt")]
    assert user["hex"] == "0102ff" and "value" not in user
    fwd = j[("msg/flaky", "fwd", "statemesh/int64")]
    assert fwd["value"] == 1 and fwd["caller"] == {"type": "test/forward", "id": "f"}
    assert all(o["caller"] is None for o in objs if o is not fwd)
    assert j[("test/fail", "x", "statemesh/string")]["error"] == FAIL

    # ---- --type, --after, --limit (total counts every type)
    rows_t, total_t = parse_text(env.ok("deadletters", "list", "--type", "test/fail").stdout)
    assert [(r[2], r[3]) for r in rows_t] == [("test/fail", "x")] and total_t == 6
    objs_t, _ = parse_json(env.ok("deadletters", "list", "--type", "msg/flaky", "--json").stdout)
    assert len(objs_t) == 5 and {o["target"]["type"] for o in objs_t} == {"msg/flaky"}
    assert parse_text(env.ok("deadletters", "list", "--type", "no/such").stdout) == ([], 6)
    page = parse_text(env.ok("deadletters", "list", "--after", ids[1], "--limit", 2).stdout)[0]
    assert [r[0] for r in page] == ids[2:4]
    assert [r[0] for r in parse_text(env.ok("deadletters", "list", "--limit", 1).stdout)[0]] == ids[:1]
    assert parse_text(env.ok("deadletters", "list", "--after", ids[-1]).stdout) == ([], 6)
    paged, after = [], 0
    while True:
        page = parse_text(env.ok("deadletters", "list", "--after", after, "--limit", 4).stdout)[0]
        if not page:
            break
        paged += [r[0] for r in page]
        after = page[-1][0]
    assert paged == ids

    # ---- drop one (the message for "b c"); a second drop finds nothing
    bc = by_target[("msg/flaky", '"b c"', "5")]
    p = env.ok("deadletters", "drop", bc)
    assert p.stdout == "dropped 1\n" and p.stderr == ""
    p = env.ok("deadletters", "drop", bc, "--json")
    assert json.loads(p.stdout) == {"dropped": 0}
    assert "1 of the 1 ids named was not dropped: no such dead letter" in p.stderr
    rows, total = parse_text(env.ok("deadletters", "list").stdout)
    assert total == 5 and bc not in [r[0] for r in rows]

    # ---- fix msg/flaky and replay its dead letters (not test/fail's)
    env.fail.unlink()
    p = env.ok("deadletters", "replay", "--all", "--type", "msg/flaky")
    assert p.stdout == "replayed 4\n"
    c = env.client
    wait_until(lambda: c.int_state("msg/flaky", "a") == 3 and c.int_state("msg/flaky", "fwd") == 1,
               timeout=30, message="replayed messages applied")
    c.wait_drained()
    time.sleep(0.2)           # nothing applied twice
    assert c.int_state("msg/flaky", "a") == 3 and c.int_state("msg/flaky", "fwd") == 1
    assert c.int_state("msg/flaky", "b c") == 0              # dropped, never applied
    rows, total = parse_text(env.ok("deadletters", "list").stdout)
    assert total == 1 and [(r[2], r[3]) for r in rows] == [("test/fail", "x")]
    (fail_id,) = [r[0] for r in rows]

    # ---- a dead letter whose type no endpoint serves any more is not replayed
    env.rt.stop()
    env.rt.endpoints = [env.msg_ep]
    env.rt.start()
    p = env.ok("deadletters", "replay", fail_id)
    assert p.stdout == "replayed 0\n"
    assert "no endpoint serves its type" in p.stderr
    assert parse_text(env.ok("deadletters", "list").stdout)[1] == 1

    # ---- drop the rest: the store is empty
    assert env.ok("deadletters", "drop", "--all").stdout == "dropped 1\n"
    assert env.ok("deadletters", "list").stdout == "# total=0\n"
    assert env.ok("deadletters", "list", "--json").stdout == '{"total":0}\n'
    assert env.ok("deadletters", "replay", "--all").stdout == "replayed 0\n"
    assert c.stats()["dead_letters"] == 0


def test_python_client(env):
    with Client(env.rt.ingress, timeout=10) as c:
        for i in range(3):
            c.send("msg/flaky", "p", "v%d" % i)
        c.send("msg/flaky", "q", {"x": 1})
        c.send("test/fail", "y", 7)
        env.wait_dead_letters(5)
        page = c.dead_letters()
        assert isinstance(page, statemesh.DeadLetters) and page.total == 5 and len(page) == 5
        ids = [d.id for d in page]
        assert ids == sorted(ids)
        assert [d.argument.value for d in page if d.target == Address("msg/flaky", "p")] == \
            ["v0", "v1", "v2"]
        assert all(d.attempts == 3 and d.caller is None for d in page)
        q = [d for d in page if d.target.id == "q"][0]
        assert q.argument.as_json() == {"x": 1} and q.error == FLAKY
        assert abs(q.failed_at.timestamp() - time.time()) < 60
        flaky = c.dead_letters(type="msg/flaky", limit=2)
        assert [d.id for d in flaky] == [d.id for d in page if d.target.type == "msg/flaky"][:2]
        rest = c.dead_letters(type="msg/flaky", after_id=flaky.last_id)
        assert len(rest) == 2 and rest.total == 5
        assert [d.argument.value for d in c.dead_letters(type="test/fail")] == [7]

        with pytest.raises(ValueError):
            c.replay_dead_letters()
        assert c.drop_dead_letters(q.id) == 1
        assert c.drop_dead_letters([q.id]) == 0
        env.fail.unlink()
        assert c.replay_dead_letters(all=True, type="msg/flaky") == 3
        wait_until(lambda: c.state("msg/flaky", "p").get("n") == 3, timeout=30,
                   message="replayed")
        assert c.state("msg/flaky", "q") == {}
        left = c.dead_letters()
        assert [d.target for d in left] == [Address("test/fail", "y")] and left.total == 1
        assert c.drop_dead_letters(all=True) == 1
        assert c.dead_letters().total == 0


@pytest.mark.parametrize("args,needle", [
    (["deadletters"], "deadletters needs a subcommand: list, replay or drop"),
    (["deadletters", "show"], "deadletters needs a subcommand"),
    (["deadletters", "replay"], "deadletters replay needs dead letter IDs (see deadletters list) or --all"),
    (["deadletters", "drop"], "deadletters drop needs dead letter IDs"),
    (["deadletters", "drop", "--type", "msg/flaky"], "deadletters drop needs dead letter IDs"),
    (["deadletters", "replay", "3", "--all"], "give IDs or --all, not both"),
    (["deadletters", "drop", "3", "x7"], "'x7' is not a dead letter id"),
    (["deadletters", "drop", "3", "-1"], "'-1' is not a dead letter id"),
    (["deadletters", "replay", "18446744073709551616"], "is not a dead letter id"),
    (["deadletters", "replay", "--all", "--type", "flaky"], "function type 'flaky' is not namespace/name"),
    (["deadletters", "replay", "--all", "--limit", "3"], "--after and --limit only apply to deadletters list"),
    (["deadletters", "list", "5"], "deadletters list takes no arguments"),
    (["deadletters", "list", "--all"], "--all only applies to deadletters replay and drop"),
    (["deadletters", "list", "--limit", "0"], "--limit wants 1..10000"),
    (["deadletters", "list", "--limit", "10001"], "--limit wants 1..10000"),
    (["deadletters", "list", "--after", "-3"], "--after wants a dead letter id"),
    (["deadletters", "list", "--type", "a/b/c"], "is not namespace/name"),
    (["deadletters", "drop", "--all", "--type", ""], "--type wants a function type NS/NAME, got ''"),
    (["stats", "--all"], "--all only applies to deadletters"),
    (["stats", "--after", "3"], "--after only applies to deadletters list and state list"),
    (["state", "get", "a/b", "x", "--limit", "2"], "--prefix, --after and --limit only apply to state list"),
    (["stats", "--limit", "2"], "--limit only applies to deadletters list, stuck and state list"),
])
def test_usage_errors(nowhere, args, needle):
    # nothing listens at the address: a request that got through would exit 1
    p = run_cli(args, address=nowhere, timeout=30)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert needle in p.stderr and p.stdout == ""
    # two lines: what is wrong, then where the usage is (not the whole help)
    lines = p.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("statemesh: "), p.stderr
    assert lines[1] == "run 'statemesh help %s' (or 'statemesh --help') for usage" % args[0], p.stderr


def test_usage_mentions_deadletters():
    p = run_cli(["--help"])
    assert p.returncode == 0
    for s in ("deadletters list [--type T] [--after ID] [--limit N]",
              "deadletters replay (ID... | --all) [--type T]",
              "deadletters drop (ID... | --all) [--type T]"):
        assert s in p.stdout


def test_runtime_errors_exit_1(nowhere):
    for args in (["deadletters", "list"], ["deadletters", "replay", "--all"],
                 ["deadletters", "drop", "1", "2"]):
        p = run_cli(args, address=nowhere, timeout=30)
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
        assert "statemesh: deadletters %s: UNAVAILABLE" % args[1] in p.stderr
        assert "is statemeshd running" in p.stderr and p.stdout == ""
