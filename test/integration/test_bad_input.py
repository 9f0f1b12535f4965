"""
Guarantee 6: bad input gets a clear error and changes nothing; the runtime
never crashes on input. After each case the runtime must still be alive and
healthy, a reference counter unchanged, and nothing left queued.
"""

import subprocess
import time

import grpc
import pytest

from harness import (Runtime, binary, endpoint, free_port, int64, port_open, raw_bytes,
                     scaled, status_of, wait_until)

COUNTER = "test/counter"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
OK = grpc.StatusCode.OK


def make_reference(cl):
    """Counter test/counter 'ref' = 5, committed; nothing queued."""
    cl.send(COUNTER, "ref", int64(5))
    wait_until(lambda: cl.int_state(COUNTER, "ref") == 5, message="ref == 5")
    cl.wait_drained()


def assert_unharmed(rt, cl):
    assert rt.alive, "runtime died:\n%s" % rt.log()[-3000:]
    assert cl.healthy()
    assert cl.int_state(COUNTER, "ref") == 5
    assert cl.queued() == 0
    assert "event=panic" not in rt.full_log()
    # and it still works
    assert cl.call(COUNTER, "after", int64(1)) == 1


# ---------------------------------------------------------------------------
# addresses and arguments
# ---------------------------------------------------------------------------

def test_unknown_function_type_not_found(rt_env):
    rt, fn, cl = rt_env
    make_reference(cl)
    for t in ("nosuch/thing", "tests/counter", "test2/counter"):
        assert status_of(cl.send, t, "x", int64(1)) == NOT_FOUND, t
        assert status_of(cl.call, t, "x", int64(1), timeout=5) == NOT_FOUND, t
    assert_unharmed(rt, cl)


BAD_ADDRESSES = [
    ("counter", "x"),                      # no namespace
    ("test/", "x"),                        # empty name
    ("/counter", "x"),                     # empty namespace
    ("test/co unter", "x"),                # space in name
    ("test/counter/x", "x"),               # two slashes
    ("test/count\u00e9r", "x"),            # non-ASCII in type
    ("", "x"),                             # empty type
    ("test/" + "x" * 252, "x"),            # type of 257 bytes (would match test/*)
    (COUNTER, ""),                         # empty id
    (COUNTER, "x" * 1025),                 # id of 1025 bytes
    (COUNTER, "\u00e9" * 512 + "x"),       # id of 1025 bytes, multi-byte
    (COUNTER, "a\x00b"),                   # NUL in id
]


@pytest.mark.parametrize("type_,id_", BAD_ADDRESSES,
                         ids=["no-ns", "empty-name", "empty-ns", "space", "two-slashes",
                              "non-ascii-type", "empty-type", "type-257", "empty-id",
                              "id-1025", "id-1025-utf8", "nul-in-id"])
def test_malformed_address_invalid_argument(rt_env, type_, id_):
    rt, fn, cl = rt_env
    make_reference(cl)
    assert status_of(cl.send, type_, id_, int64(1)) == INVALID
    assert status_of(cl.call, type_, id_, int64(1), timeout=5) == INVALID
    assert_unharmed(rt, cl)


def test_missing_target_invalid_argument(rt_env):
    rt, fn, cl = rt_env
    make_reference(cl)
    assert status_of(cl.send, None, None, int64(1)) == INVALID
    assert status_of(cl.call, None, None, int64(1), timeout=5) == INVALID
    assert_unharmed(rt, cl)


def test_missing_argument_invalid_argument(rt_env):
    rt, fn, cl = rt_env
    make_reference(cl)
    assert status_of(cl.send, COUNTER, "ref", None) == INVALID
    assert status_of(cl.call, COUNTER, "ref", None, timeout=5) == INVALID
    assert_unharmed(rt, cl)


def test_address_limits_accepted(rt_env):
    """The edges of valid: 1024-byte ids (ASCII and multi-byte), odd characters."""
    rt, fn, cl = rt_env
    make_reference(cl)
    ids = ["x" * 1024, "\u00e9" * 512, "a b/c:d?e#f", "\U0001F600", "-", "\t"]
    for i in ids:
        assert cl.call(COUNTER, i, int64(3)) == 3, repr(i)
        assert cl.int_state(COUNTER, i) == 3
    # distinct ids are distinct addresses
    assert cl.int_state(COUNTER, "x" * 1023) == 0
    assert_unharmed(rt, cl)


def test_oversized_message_resource_exhausted(sandbox, require):
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn()
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)], max_message_bytes=65536)
    cl = rt.client()
    make_reference(cl)
    # below the limit: fine
    big_ok = bytes(range(256)) * 128                  # 32 KiB
    tv = cl.call_raw("test/echo", "big", big_ok)
    assert tv.value == big_ok
    # above the limit: refused, nothing stored
    for size in (2 * 65536, 5 << 20):
        assert status_of(cl.send, COUNTER, "ref", raw_bytes(b"\x01" * size)) == RESOURCE_EXHAUSTED, size
        assert status_of(cl.call, "test/echo", "big", raw_bytes(b"\x01" * size),
                         timeout=10) == RESOURCE_EXHAUSTED, size
    assert_unharmed(rt, cl)


# ---------------------------------------------------------------------------
# function servers: absent, answering garbage
# ---------------------------------------------------------------------------

def test_unreachable_endpoint_messages_wait(sandbox, require):
    """No function server: Sends are accepted durably and delivered once it appears."""
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn(start=False)
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)])
    cl = rt.client()
    t0 = time.monotonic()
    for _ in range(10):
        cl.send(COUNTER, "u", int64(1), timeout=5)
    assert time.monotonic() - t0 < scaled(5), "Send must not wait for the function server"
    # a Call waits for its reply until the deadline; its message is still durable
    assert status_of(cl.call, COUNTER, "u", int64(100), timeout=1) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert cl.queued() == 11
    assert cl.get_state(COUNTER, "u").queued_messages == 11
    assert cl.state(COUNTER, "u") == {}
    wait_until(lambda: any("level=warn" in ln or "level=error" in ln for ln in rt.log().splitlines()),
               timeout=15, message="a warning about the unreachable endpoint")
    assert rt.alive and cl.healthy()
    fn.start()
    assert wait_until(lambda: cl.int_state(COUNTER, "u") == 110, timeout=45,
                      message="delivered once the function server is up")
    cl.wait_drained()
    time.sleep(0.5)
    assert cl.int_state(COUNTER, "u") == 110
    assert "event=panic" not in rt.full_log()


GARBAGE_MODES = ["bytes", "unknown_batch", "undeclared_state", "wrong_typename", "no_outcome",
                 "nul_target"]


@pytest.mark.parametrize("mode", GARBAGE_MODES)
def test_garbage_function_server(sandbox, require, mode):
    """A function server answering garbage: nothing applied, runtime up, retried;
    after switching back to the real testfn every message is applied exactly once."""
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn(name="fn")
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)])
    cl = rt.client()
    for _ in range(3):
        cl.send(COUNTER, "g", int64(1))
    wait_until(lambda: cl.int_state(COUNTER, "g") == 3, message="g == 3 via the real testfn")
    cl.wait_drained()

    # swap in the garbage server on the same socket
    fn.kill9()
    bad = sandbox.python_server("garbage_fn.py", ["--mode", mode], name="garbage",
                                listen=fn.listen)
    for _ in range(5):
        cl.send(COUNTER, "g", int64(1))
    cl.send(COUNTER, "g2", int64(2))
    answers = lambda: len(bad.log_lines("event=answer"))  # noqa: E731
    wait_until(lambda: answers() >= 1, timeout=45, message="the garbage server got a batch")
    if mode != "unknown_batch":          # the real batch is never answered there: nothing to retry
        wait_until(lambda: answers() >= 2, timeout=45, message="the runtime retried the batch")
    time.sleep(0.5)
    assert rt.alive, rt.log()[-3000:]
    assert cl.healthy()
    assert cl.int_state(COUNTER, "g") == 3, "garbage was applied"
    assert cl.state(COUNTER, "g2") == {}, "garbage was applied"
    assert "bogus" not in cl.state(COUNTER, "g")
    assert cl.state(COUNTER, "vic") == {}, "a NUL-truncated target id was addressed"
    assert cl.queued() == 6, "the 6 messages must still be pending"

    # back to the real function server
    bad.kill9()
    fn.start()
    wait_until(lambda: cl.int_state(COUNTER, "g") == 8 and cl.int_state(COUNTER, "g2") == 2,
               timeout=45, message="applied after the real testfn is back")
    cl.wait_drained()
    time.sleep(0.5)
    assert cl.state(COUNTER, "g") == {"n": 8}
    assert cl.state(COUNTER, "g2") == {"n": 2}
    assert any("level=warn" in ln or "level=error" in ln for ln in rt.log().splitlines())
    assert "event=panic" not in rt.full_log()


# ---------------------------------------------------------------------------
# configuration and data dir
# ---------------------------------------------------------------------------

def _config(data_dir, port, runtime_line='log_level = "info";', endpoint_line="max_batch = 10;",
            extra=""):
    # line numbers matter: runtime_line is line 4, endpoint_line is line 8
    return (
        "runtime = {\n"                                           # 1
        '  data_dir = "%s";\n' % data_dir +                       # 2
        '  ingress = "127.0.0.1:%d";\n' % port +                  # 3
        "  %s\n" % runtime_line +                                 # 4
        "};\n"                                                    # 5
        "endpoints = (\n"                                         # 6
        '  { functions = "test/*"; target = "unix:/tmp/nonexistent-sm.sock";\n'  # 7
        "    %s }%s\n" % (endpoint_line, extra) +                 # 8
        ");\n")                                                   # 9


BAD_CONFIGS = [
    # id, runtime line 4, endpoint line 8, extra after endpoint 1, expected line, setting
    ("max_message_bytes-range", "max_message_bytes = 10;", None, "", 4, "max_message_bytes"),
    ("unknown-setting", "bogus_setting = 1;", None, "", 4, "bogus_setting"),
    ("log_level-value", 'log_level = "loud";', None, "", 4, "log_level"),
    ("log_level-type", "log_level = 5;", None, "", 4, "log_level"),
    ("unset-env-var", 'log_level = "${STATEMESH_TEST_SURELY_UNSET_VAR}";', None, "", 4, "log_level"),
    ("interval-range", "checkpoint = { interval_ms = 99999999; };", None, "", 4, "interval_ms"),
    ("syntax-error", "max_message_bytes = ;", None, "", 4, None),
    ("max_batch-zero", None, "max_batch = 0;", "", 8, "max_batch"),
    ("max_in_flight-negative", None, "max_in_flight = -1;", "", 8, "max_in_flight"),
    ("mode-unknown", None, 'mode = "telepathic";', "", 8, "mode"),
    ("endpoint-unknown-setting", None, "colour = 3;", "", 8, "colour"),
    ("duplicate-pattern", None, None,
     ',\n  { functions = "test/*"; target = "unix:/tmp/other-sm.sock"; }', 9, "functions"),
]


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_invalid_config_refused(sandbox, require, case):
    require("statemeshd")
    _, rline, eline, extra, line, setting = case
    port = free_port()
    kw = {}
    if rline:
        kw["runtime_line"] = rline
    if eline:
        kw["endpoint_line"] = eline
    text = _config(sandbox.path("data"), port, extra=extra, **kw)
    if extra:       # the duplicate endpoint goes on lines 8-9: recompute the expected line
        line = [i + 1 for i, ln in enumerate(text.splitlines()) if "other-sm.sock" in ln][0]
    rt = sandbox.runtime(config_text=text, port=port, start=False)
    rt.start(wait=False)
    rc = rt.wait_exit(timeout=15)
    log = rt.log()
    assert rc == 2, "exit %s, log:\n%s\nconfig:\n%s" % (rc, log, text)
    prefix = "%s:%d:" % (rt.config_path, line)
    hits = [ln for ln in log.splitlines() if prefix in ln]
    assert hits, "no '%s' in stderr:\n%s\nconfig:\n%s" % (prefix, log, text)
    if setting:
        assert any(setting in ln for ln in hits), "setting %s not named in %s" % (setting, hits)
    assert Runtime.READY not in log
    assert not port_open("127.0.0.1", port), "refused config must not open the ingress"


def test_missing_config_file(sandbox, require):
    require("statemeshd")
    missing = sandbox.path("does-not-exist.conf")
    p = subprocess.run([str(binary("statemeshd")), "-c", str(missing)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=scaled(15))
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert str(missing) in p.stderr
    assert Runtime.READY not in p.stderr


def test_valid_minimal_config_starts(sandbox, require):
    """The template of the invalid-config cases is itself valid (guards the test)."""
    require("statemeshd")
    port = free_port()
    rt = sandbox.runtime(config_text=_config(sandbox.path("data"), port), port=port)
    cl = rt.client()
    assert cl.healthy()


def test_second_runtime_same_data_dir_refused(rt_env, sandbox):
    rt, fn, cl = rt_env
    make_reference(cl)
    rt2 = sandbox.runtime(endpoints=rt.endpoints, data_dir=rt.data_dir, name="second", start=False)
    rt2.start(wait=False)
    rc = rt2.wait_exit(timeout=20)
    assert rc != 0
    assert "locked" in rt2.log(), rt2.log()
    assert Runtime.READY not in rt2.log()
    assert not port_open("127.0.0.1", rt2.port)
    # the first one is unaffected
    assert_unharmed(rt, cl)
    assert cl.call(COUNTER, "ref", int64(1)) == 6
