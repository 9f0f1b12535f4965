"""
Fixtures for the integration and fault tests (see harness.py for the pieces).

  sandbox        a fresh short work dir; everything started through it is torn
                 down after the test: runtimes get SIGTERM and must exit 0,
                 function servers are killed. Logs are printed when a test fails
                 and the work dir is kept for inspection.
  testfn         build/test/fn/testfn started in the sandbox (unix socket)
  runtime        statemeshd with endpoint test/* -> testfn, ready
  client         harness.Client to that runtime
  rt_env         (runtime, testfn, client) in one

Binaries come from $STATEMESH_BUILD (default <repo>/build). A missing binary is
a test failure (`make test` builds everything first); set
STATEMESH_SKIP_MISSING=1 to skip those tests instead.

Every test body runs under a wall-clock limit (SIGALRM; default 150 s times the
timeout scale, `@pytest.mark.time_limit(seconds)` to change it) so a hang fails
the test instead of the whole run; all waits inside are bounded anyway.
"""

import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Sandbox, binary, endpoint, timeout_scale  # noqa: E402


class TimeLimitExceeded(Exception):
    pass


def pytest_configure(config):
    config.addinivalue_line("markers", "time_limit(seconds): wall-clock limit of the test body")
    config.addinivalue_line("markers", "fault: kills processes (kill -9) under load")
    config.addinivalue_line("markers", "needs(*binaries): binaries under STATEMESH_BUILD the test runs")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    use_alarm = not os.environ.get("STATEMESH_NO_ALARM") and hasattr(signal, "setitimer")
    if use_alarm:
        m = item.get_closest_marker("time_limit")
        limit = (m.args[0] if m else 150.0) * timeout_scale()

        def on_alarm(signum, frame):
            raise TimeLimitExceeded("test body exceeded its %.0fs limit" % limit)

        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)


def _require(*names):
    missing = [n for n in names if not binary(n).exists()]
    if missing:
        msg = "not built: %s (run make)" % ", ".join(str(binary(n)) for n in missing)
        if os.environ.get("STATEMESH_SKIP_MISSING"):
            pytest.skip(msg)
        pytest.fail(msg)


@pytest.fixture(autouse=True)
def _needs(request):
    m = request.node.get_closest_marker("needs")
    if m:
        _require(*m.args)


@pytest.fixture
def require():
    """require("statemeshd", "test/fn/testfn", ...): fail (or skip) if not built."""
    return _require


@pytest.fixture
def sandbox(request):
    sb = Sandbox()
    yield sb
    rep = getattr(request.node, "rep_call", None)
    failed = rep is None or rep.failed
    if failed:
        print("\nwork dir kept: %s\n%s" % (sb.workdir, sb.logs()))
    sb.close(check=True, remove=not failed)


@pytest.fixture
def testfn(sandbox):
    _require("test/fn/testfn")
    return sandbox.testfn()


@pytest.fixture
def runtime(sandbox, testfn):
    _require("statemeshd")
    return sandbox.runtime(endpoints=[endpoint("test/*", testfn)])


@pytest.fixture
def client(runtime):
    return runtime.client()


@pytest.fixture
def rt_env(runtime, testfn, client):
    return runtime, testfn, client
