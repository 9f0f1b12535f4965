"""
Embedded mode: statemeshd loads a module (runtime/embedded.h) and runs its
handlers in-process.

The greeter example builds its handlers twice: build/examples/greeter/greeter
(a gRPC function server, sidecar mode) and build/examples/greeter/libgreeter.so
(an embedded module). The behaviour tests run against both and must give the
same answers; the start-up tests check that a library that cannot be used is
a clear error and a non-zero exit, never a half-started runtime.
"""

import subprocess
import textwrap
import threading

import grpc
import pytest

from harness import REPO, binary, endpoint, int64, json_value, scaled, status_of, string, wait_until

GREETER_LIB = "examples/greeter/libgreeter.so"
pytestmark = pytest.mark.needs("statemeshd", "examples/greeter/greeter", GREETER_LIB)

MODES = ["sidecar", "embedded"]


def greeter_endpoint(sandbox, mode, functions="example/*"):
    if mode == "sidecar":
        return endpoint(functions, sandbox.greeter())
    return {"functions": functions, "mode": "embedded", "library": str(binary(GREETER_LIB))}


@pytest.fixture(params=MODES)
def greeter(request, sandbox):
    """(runtime, client, mode) with example/* served by the greeter in that mode."""
    mode = request.param
    rt = sandbox.runtime(endpoints=[greeter_endpoint(sandbox, mode)])
    return rt, rt.client(), mode


# ---------------------------------------------------------------------------
# the same behaviour in both modes
# ---------------------------------------------------------------------------


def test_greets_and_counts_visits(greeter):
    rt, cl, mode = greeter
    assert cl.call("example/user", "alice", string("hi")) == "Hello alice, you are visitor #1"
    assert cl.call("example/user", "alice", string("hi")) == "Hello alice, you are visitor #2"
    assert cl.call("example/user", "bob", string("hi")) == "Hello bob, you are visitor #1"
    assert cl.int_state("example/user", "alice", "visits") == 2
    assert cl.int_state("example/user", "bob", "visits") == 1
    if mode == "embedded":
        assert rt.log_lines("event=endpoint.up mode=embedded")
        assert "types=example/greeter,example/user" in rt.log_lines("event=endpoint.up")[0]


def test_cli_against_embedded_and_sidecar(greeter):
    rt, cl, mode = greeter
    from harness import run_cli
    p = run_cli(["call", "example/user", "zoë", "hi"], address=rt.ingress)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert "Hello zoë, you are visitor #1" in p.stdout


def test_concurrent_calls_one_batch_per_address(greeter):
    """40 concurrent Calls over 4 ids: every visit counted once, each id's
    replies numbered 1..10 (one batch in flight per address, batched)."""
    rt, cl, mode = greeter
    replies, errors = [], []
    lock = threading.Lock()

    def one(i):
        try:
            r = cl.call("example/user", "u%d" % (i % 4), string("hi"), timeout=30)
            with lock:
                replies.append(r)
        except grpc.RpcError as e:       # noqa: PERF203
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(60))
    assert not errors, errors
    for k in range(4):
        got = sorted(int(r.rsplit("#", 1)[1]) for r in replies if r.startswith("Hello u%d," % k))
        assert got == list(range(1, 11)), (k, got)
        assert cl.int_state("example/user", "u%d" % k, "visits") == 10


def test_sends_survive_restart_and_kill9(greeter):
    """Acknowledged Sends are applied exactly once across a clean restart and
    a kill -9 of the runtime."""
    rt, cl, mode = greeter
    for _ in range(5):
        cl.send("example/user", "carol", string("hi"))
    wait_until(lambda: cl.int_state("example/user", "carol", "visits") == 5,
               message="5 visits applied")
    rt.stop()
    rt.start()
    assert cl.call("example/user", "carol", string("hi")) == "Hello carol, you are visitor #6"
    for _ in range(20):
        cl.send("example/user", "carol", string("hi"))
    rt.kill9()
    rt.start()
    wait_until(lambda: cl.int_state("example/user", "carol", "visits") == 26,
               message="26 visits after kill -9")
    assert cl.call("example/user", "carol", string("hi")) == "Hello carol, you are visitor #27"


def test_unknown_type_in_served_namespace(greeter):
    rt, cl, mode = greeter
    cl.call("example/user", "dave", string("hi"))        # the endpoint has described itself
    code = status_of(cl.call, "example/nobody", "x", string("hi"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert cl.healthy()


def test_failing_handler_is_retried_not_fatal(greeter):
    """example/greeter fails on a message that is not its JSON: the batch is
    retried with backoff, the Call times out, and the runtime keeps serving
    (in embedded mode the failure happens inside statemeshd)."""
    rt, cl, mode = greeter
    code = status_of(cl.call, "example/greeter", "eve", string("not json"), timeout=1.5)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: rt.log_lines("event=message.retry"), message="a retried batch")
    assert "example/greeter wants statemesh/json" in "\n".join(rt.log_lines("event=message.retry"))
    # (example/greeter "eve" keeps retrying its poison message; other
    # addresses are not held up by it.)
    assert cl.call("example/user", "ivy", string("hi")) == "Hello ivy, you are visitor #1"
    assert cl.healthy()


def test_json_greeting_sent_directly(greeter):
    rt, cl, mode = greeter
    assert (cl.call("example/greeter", "x", json_value({"name": "Frank", "visits": 41}))
            == "Hello Frank, you are visitor #41")


# ---------------------------------------------------------------------------
# embedded next to a sidecar endpoint
# ---------------------------------------------------------------------------


@pytest.mark.needs("test/fn/testfn")
def test_sidecar_function_calls_embedded_function(sandbox):
    """test/forward (testfn, over gRPC) sends to example/user (embedded); the
    greeting made in-process answers the Call that went to the sidecar."""
    fn = sandbox.testfn()
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn), greeter_endpoint(sandbox, "embedded")])
    cl = rt.client()
    assert cl.call("test/forward", "f", string("example/user gina")) == \
        "Hello gina, you are visitor #1"
    assert cl.call("test/counter", "c", int64(2)) == 2
    assert cl.int_state("example/user", "gina", "visits") == 1


# ---------------------------------------------------------------------------
# libraries that cannot be used: a clear start-up error, a non-zero exit
# ---------------------------------------------------------------------------

MODULE_HEAD = """
#include "statemesh/function.h"
#include "statemesh/invoke.h"
__attribute__((unused)) static int hello(sm_ctx *ctx, const sm_value *msg, void *udata) {
    (void)msg; (void)udata;
    return sm_reply_string(ctx, "hello");
}
"""


def build_module(sandbox, name, body):
    """Compiles a module from C source into the sandbox; returns its path."""
    src = sandbox.path(name + ".c")
    out = sandbox.path("lib%s.so" % name)
    src.write_text(textwrap.dedent(MODULE_HEAD) + textwrap.dedent(body))
    cmd = ["cc", "-std=c11", "-shared", "-fPIC", "-Wall", "-Werror", "-I", str(REPO / "sdk-c/include"),
           "-I", str(binary("gen")), "-o", str(out), str(src)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return out


def start_failing(sandbox, library, functions="example/*"):
    """Starts a runtime with one embedded endpoint; returns (exit code, its log)."""
    rt = sandbox.runtime(endpoints=[{"functions": functions, "mode": "embedded",
                                     "library": str(library)}], start=False)
    rt.start(wait=False)
    rc = rt.wait_exit(timeout=30)
    log = rt.log()
    assert "event=runtime.ready" not in log, log
    return rc, log


def test_hello_module_built_from_scratch(sandbox):
    """The contract as documented in runtime/embedded.h, compiled here."""
    lib = build_module(sandbox, "hello", """
        const char statemesh_module_sdk_version[] = SM_SDK_VERSION;
        int statemesh_module_init(sm_functions *fns);
        int statemesh_module_init(sm_functions *fns) {
            return sm_functions_bind(fns, "demo/hello", NULL, 0, hello, NULL);
        }
    """)
    rt = sandbox.runtime(endpoints=[{"functions": "demo/*", "mode": "embedded", "library": str(lib)}])
    assert rt.client().call("demo/hello", "a", string("x")) == "hello"


def test_missing_library_is_a_config_error(sandbox):
    missing = sandbox.path("no-such-lib.so")
    rc, log = start_failing(sandbox, missing)
    assert rc == 2, log
    assert "invalid configuration, not starting" in log
    assert "statemeshd.conf:" in log and "endpoints[0].library:" in log, log
    assert '"%s": No such file or directory' % missing in log, log
    # --check-config says the same, with FILE:LINE.
    conf = sandbox.runtimes[-1].config_path
    p = subprocess.run([str(binary("statemeshd")), "--check-config", str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr.startswith("%s:" % conf) and "endpoints[0].library:" in p.stderr, p.stderr


def test_not_a_shared_library(sandbox):
    bogus = sandbox.path("libbogus.so")
    bogus.write_text("this is not an ELF file\n")
    rc, log = start_failing(sandbox, bogus)
    assert rc != 0
    assert "cannot load embedded module %s" % bogus in log, log
    assert "not starting" in log
    assert "invalid ELF header" in log or "file too short" in log, log


def test_missing_init_symbol(sandbox):
    lib = build_module(sandbox, "noinit", """
        int statemesh_module_start(sm_functions *fns);
        int statemesh_module_start(sm_functions *fns) {
            return sm_functions_bind(fns, "demo/hello", NULL, 0, hello, NULL);
        }
    """)
    rc, log = start_failing(sandbox, lib)
    assert rc != 0
    assert "embedded module %s does not export statemesh_module_init" % lib in log, log
    assert "undefined symbol: statemesh_module_init" in log, log


def test_undefined_sdk_symbol(sandbox):
    """A module needing a symbol the runtime does not have fails at load
    (RTLD_NOW), not at its first call."""
    lib = build_module(sandbox, "undef", """
        int sm_no_such_function(void);
        int statemesh_module_init(sm_functions *fns);
        int statemesh_module_init(sm_functions *fns) {
            (void)fns;
            return sm_no_such_function();
        }
    """)
    rc, log = start_failing(sandbox, lib)
    assert rc != 0
    assert "cannot load embedded module %s" % lib in log, log
    assert "undefined symbol: sm_no_such_function" in log, log


def test_init_failure_and_empty_module(sandbox):
    lib = build_module(sandbox, "initfails", """
        int statemesh_module_init(sm_functions *fns);
        int statemesh_module_init(sm_functions *fns) { (void)fns; return 3; }
    """)
    rc, log = start_failing(sandbox, lib)
    assert rc != 0
    assert "statemesh_module_init of embedded module %s failed (returned 3)" % lib in log, log

    lib = build_module(sandbox, "empty", """
        int statemesh_module_init(sm_functions *fns);
        int statemesh_module_init(sm_functions *fns) { (void)fns; return 0; }
    """)
    rc, log = start_failing(sandbox, lib)
    assert rc != 0
    assert "bound no function type" in log, log


def test_sdk_version_mismatch(sandbox):
    lib = build_module(sandbox, "oldsdk", """
        const char statemesh_module_sdk_version[] = "0.0.1-old";
        int statemesh_module_init(sm_functions *fns);
        int statemesh_module_init(sm_functions *fns) {
            return sm_functions_bind(fns, "demo/hello", NULL, 0, hello, NULL);
        }
    """)
    rc, log = start_failing(sandbox, lib)
    assert rc != 0
    assert "was built for SDK version 0.0.1-old" in log and "rebuild the module" in log, log


def test_module_types_outside_the_pattern_are_ignored(sandbox):
    """Types a module binds but the endpoint's pattern does not cover are
    logged and not served, as for a function server's Describe."""
    rt = sandbox.runtime(endpoints=[greeter_endpoint(sandbox, "embedded", "example/greeter")])
    cl = rt.client()
    ignored = "\n".join(rt.log_lines("event=endpoint.type_ignored"))
    assert "type=example/user" in ignored, rt.log()
    assert status_of(cl.call, "example/user", "hal", string("hi")) == grpc.StatusCode.NOT_FOUND
    assert (cl.call("example/greeter", "x", json_value({"name": "Hal", "visits": 2}))
            == "Hello Hal, you are visitor #2")


def test_example_embedded_conf_checks(sandbox):
    conf = REPO / "examples" / "greeter" / "embedded.conf"
    p = subprocess.run([str(binary("statemeshd")), "--check-config", str(conf)],
                       capture_output=True, text=True, timeout=60,
                       env={"STATEMESH_GREETER_LIB": str(binary(GREETER_LIB)),
                            "STATEMESH_DATA_DIR": str(sandbox.path("data"))})
    assert p.returncode == 0, p.stderr
    assert "ok (1 endpoints" in p.stdout
