"""
runtime.metrics: Prometheus /metrics (text format 0.0.4) and the HTTP probes
/healthz and /readyz, served by libmicrohttpd beside the runtime
(runtime/metrics.h, docs/operations.md "Metrics").

Every scrape is parsed strictly by parse_exposition() below: each line is a
valid HELP/TYPE comment or sample, a family's TYPE comes before its samples
and its samples are contiguous, no series repeats, counters end in _total,
and each histogram's buckets are cumulative with +Inf equal to _count.
"""

import http.client
import os
import re
import signal
import socket
import subprocess
import threading

import pytest

from harness import binary, endpoint, free_port, int64, scaled, string, wait_until

COUNTER = "test/counter"
NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class ExpositionError(AssertionError):
    pass


def _labels(text, lineno):
    """'a="x",b="y"' -> (("a","x"),("b","y")), strictly."""
    out, pos = [], 0
    while pos < len(text):
        m = LABEL_RE.match(text, pos)
        if not m:
            raise ExpositionError("line %d: bad label set {%s}" % (lineno, text))
        value = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), m.group(2))
        out.append((m.group(1), value))
        pos = m.end()
        if pos < len(text):
            if text[pos] != ",":
                raise ExpositionError("line %d: expected ',' in {%s}" % (lineno, text))
            pos += 1
    names = [k for k, _ in out]
    if len(set(names)) != len(names):
        raise ExpositionError("line %d: repeated label in {%s}" % (lineno, text))
    return tuple(out)


def _value(text, lineno):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", text):
        raise ExpositionError("line %d: bad value %r" % (lineno, text))
    return float(text)


def _family_of(name, types):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
            return name[: -len(suffix)]
    return name


def parse_exposition(body):
    """Strict parse of text format 0.0.4. Returns {family: {"type", "help",
    "samples": {(name, labels): value}}}; raises ExpositionError."""
    if not body.endswith("\n"):
        raise ExpositionError("the text does not end with a newline")
    fams, types, done, current = {}, {}, set(), None
    for lineno, line in enumerate(body[:-1].split("\n"), 1):
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[0] != "#" or parts[1] not in ("HELP", "TYPE"):
                raise ExpositionError("line %d: unexpected comment %r" % (lineno, line))
            name = parts[2]
            if not NAME_RE.match(name):
                raise ExpositionError("line %d: bad metric name %r" % (lineno, name))
            fam = fams.setdefault(name, {"type": None, "help": None, "samples": {}})
            if name in done:
                raise ExpositionError("line %d: %s comes back after other families" % (lineno, name))
            if parts[1] == "TYPE":
                if fam["type"] is not None or fam["samples"]:
                    raise ExpositionError("line %d: TYPE of %s repeated or after samples" % (lineno, name))
                if len(parts) != 4 or parts[3] not in TYPES:
                    raise ExpositionError("line %d: bad TYPE line %r" % (lineno, line))
                fam["type"] = types[name] = parts[3]
            else:
                if fam["help"] is not None or len(parts) != 4 or not parts[3]:
                    raise ExpositionError("line %d: bad or repeated HELP %r" % (lineno, line))
                fam["help"] = parts[3]
            if current is not None and current != name:
                done.add(current)
            current = name
            continue
        m = re.fullmatch(r"([^{} ]+)(?:\{([^}]*)\})? (\S+)(?: (-?\d+))?", line)
        if not m:
            raise ExpositionError("line %d: not a sample: %r" % (lineno, line))
        name = m.group(1)
        if not NAME_RE.match(name):
            raise ExpositionError("line %d: bad metric name %r" % (lineno, name))
        family = _family_of(name, types)
        if family not in types:
            raise ExpositionError("line %d: sample of %s before its TYPE" % (lineno, family))
        if family in done or (current is not None and current != family):
            raise ExpositionError("line %d: samples of %s are not contiguous" % (lineno, family))
        current = family
        labels = _labels(m.group(2) or "", lineno)
        value = _value(m.group(3), lineno)
        key = (name, labels)
        samples = fams[family]["samples"]
        if key in samples:
            raise ExpositionError("line %d: series repeated: %r" % (lineno, key))
        samples[key] = value
    for name, fam in fams.items():
        if fam["type"] == "counter":
            if not name.endswith("_total"):
                raise ExpositionError("counter %s does not end in _total" % name)
            if any(v < 0 for v in fam["samples"].values()):
                raise ExpositionError("counter %s is negative" % name)
        if fam["type"] == "histogram":
            _check_histogram(name, fam["samples"])
    return fams


def _check_histogram(name, samples):
    series = {}
    for (sname, labels), v in samples.items():
        base = tuple(kv for kv in labels if kv[0] != "le")
        s = series.setdefault(base, {"buckets": [], "sum": None, "count": None})
        if sname == name + "_bucket":
            le = dict(labels).get("le")
            if le is None:
                raise ExpositionError("%s bucket without le" % name)
            s["buckets"].append((float(le.replace("+Inf", "inf")), v))
        elif sname == name + "_sum":
            s["sum"] = v
        elif sname == name + "_count":
            s["count"] = v
        else:
            raise ExpositionError("%s: unexpected series %s" % (name, sname))
    for base, s in series.items():
        b = sorted(s["buckets"])
        if not b or b[-1][0] != float("inf") or s["count"] is None or s["sum"] is None:
            raise ExpositionError("%s%r lacks +Inf, _sum or _count" % (name, base))
        counts = [c for _, c in b]
        if counts != sorted(counts):
            raise ExpositionError("%s%r buckets are not cumulative: %r" % (name, base, b))
        if b[-1][1] != s["count"]:
            raise ExpositionError("%s%r +Inf %s != _count %s" % (name, base, b[-1][1], s["count"]))
        if s["sum"] < 0:
            raise ExpositionError("%s%r negative _sum" % (name, base))


# ---------------------------------------------------------------------------


def fetch(port, method="GET", path="/metrics", body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(10))
    try:
        c.request(method, path, body=body)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def scrape(port):
    status, headers, body = fetch(port)
    assert status == 200, (status, body[:200])
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers
    return parse_exposition(body.decode("utf-8"))


def value(fams, family, sample=None, **labels):
    """One sample's value (0 if the family has no such series)."""
    want = tuple(sorted(labels.items()))
    for (name, ls), v in fams[family]["samples"].items():
        if name == (sample or family) and tuple(sorted(ls)) == want:
            return v
    return 0


def rpc_count(fams, method, code="OK"):
    return value(fams, "statemesh_ingress_request_duration_seconds",
                 "statemesh_ingress_request_duration_seconds_count",
                 service="statemesh.v1.Ingress", method=method, code=code)


def start(sandbox, fn, **kw):
    port = free_port()
    settings = {"metrics": "127.0.0.1:%d" % port}
    settings.update(kw.pop("runtime_settings", {}))
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn, **kw.pop("ep", {}))],
                         runtime_settings=settings, **kw)
    return rt, port


# ---------------------------------------------------------------------------


def test_counters_move_exactly_and_agree_with_stats(sandbox, require):
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn()
    rt, port = start(sandbox, fn, extra_config='egresses = ( { name = "events"; } );')
    cl = rt.client()
    before = scrape(port)
    assert value(before, "statemesh_build_info", version=open(
        str(sandbox_repo() / "VERSION")).read().strip()) == 1
    ep = {"endpoint": fn.target, "functions": "test/*"}
    wait_until(lambda: value(scrape(port), "statemesh_endpoint_up", **ep) == 1, message="up")

    n = 25
    for i in range(n):
        cl.send(COUNTER, "m%d" % (i % 5), int64(1))
    cl.call("test/effects", "e", string("egress events hello"))
    wait_until(lambda: cl.int_state(COUNTER, "m0") == 5, message="messages applied")

    def settled():
        f = scrape(port)
        return f if value(f, "statemesh_messages_delivered_total") - value(
            before, "statemesh_messages_delivered_total") == n + 1 else None
    after = wait_until(settled, message="delivered == n + 1")

    def delta(family, **labels):
        return value(after, family, **labels) - value(before, family, **labels)

    assert delta("statemesh_messages_received_total") == n + 1        # n Sends + 1 Call
    assert rpc_count(after, "Send") - rpc_count(before, "Send") == n
    assert rpc_count(after, "Call") - rpc_count(before, "Call") == 1
    assert delta("statemesh_egress_records_total", egress="events") == 1
    assert delta("statemesh_batches_sent_total") >= 1
    assert delta("statemesh_checkpoints_total") >= 1
    assert value(after, "statemesh_checkpoint_duration_seconds",
                 "statemesh_checkpoint_duration_seconds_count") >= 1
    rtt = value(after, "statemesh_batch_round_trip_seconds",
                "statemesh_batch_round_trip_seconds_count", **ep)
    assert rtt == delta("statemesh_batches_sent_total") > 0
    assert value(after, "statemesh_state_cache_hits_total") + value(
        after, "statemesh_state_cache_misses_total") >= 6
    assert value(after, "statemesh_queued_messages") == 0
    assert value(after, "statemesh_endpoint_in_flight_batches", **ep) == 0

    # the same numbers as the Stats RPC (nothing moves in between)
    stats = cl.stats()
    for metric, stat in [("statemesh_messages_received_total", "messages_received"),
                         ("statemesh_messages_delivered_total", "messages_delivered"),
                         ("statemesh_batches_sent_total", "batches_sent"),
                         ("statemesh_checkpoints_total", "checkpoints")]:
        wait_until(lambda: value(scrape(port), metric) == stats[stat],
                   message="%s == Stats %s (%s)" % (metric, stat, stats[stat]))


def sandbox_repo():
    from harness import REPO
    return REPO


def test_failing_batches_are_counted(sandbox, require):
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn()
    rt, port = start(sandbox, fn, ep={"retry": {"initial_backoff_ms": 20, "max_backoff_ms": 40,
                                                 "max_attempts": 3}})
    cl = rt.client()
    cl.send("test/fail", "x", int64(1))
    f = wait_until(lambda: (lambda f: f if value(f, "statemesh_messages_dead_lettered_total") == 1
                            else None)(scrape(port)), message="dead-lettered")
    assert value(f, "statemesh_batches_failed_total") == 3
    assert value(f, "statemesh_batches_retried_total") == 2 == cl.stats()["batches_retried"]
    assert value(f, "statemesh_dead_letters") == 1
    assert value(f, "statemesh_addresses_retrying") == 0


def test_endpoint_up_follows_its_function_server(sandbox, require):
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn()
    rt, port = start(sandbox, fn)
    ep = {"endpoint": fn.target, "functions": "test/*"}
    wait_until(lambda: value(scrape(port), "statemesh_endpoint_up", **ep) == 1, message="up")
    fn.kill9()
    wait_until(lambda: value(scrape(port), "statemesh_endpoint_up", **ep) == 0, message="down")
    fn.start()
    wait_until(lambda: value(scrape(port), "statemesh_endpoint_up", **ep) == 1, message="up again")


def test_probes_and_http_errors(sandbox, require):
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn()
    rt, port = start(sandbox, fn)
    assert fetch(port, path="/healthz")[0] == 200
    assert fetch(port, path="/readyz")[:3:2] == (200, b"ready\n")
    status, headers, body = fetch(port, "HEAD", "/metrics")
    assert status == 200 and body == b""
    assert fetch(port, path="/nope")[0] == 404
    assert fetch(port, path="/metrics/x")[0] == 404
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        status, headers, _ = fetch(port, method, "/metrics", body=b"x" * 1000)
        assert status == 405 and headers.get("Allow") == "GET, HEAD", (method, status, headers)
    # garbage on the socket: the connection is dropped, the server stays up
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(5)) as s:
        s.sendall(b"\x00\xff garbage \r\n\r\n")
        try:
            s.recv(4096)
        except OSError:
            pass
    scrape(port)


def test_readyz_is_503_while_stopping(sandbox, require):
    """A batch in flight keeps the runtime draining after SIGTERM; meanwhile
    /readyz says 503 and /healthz still 200."""
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn(slow_ms=3000)
    rt, port = start(sandbox, fn)
    cl = rt.client()
    cl.send("test/slow", "s", int64(1))
    wait_until(lambda: value(scrape(port), "statemesh_endpoint_in_flight_batches",
                             endpoint=fn.target, functions="test/*") == 1, message="in flight")
    rt.proc.send_signal(signal.SIGTERM)
    status, _, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(
        fetch(port, path="/readyz")), message="readyz 503")
    assert body == b"not ready: stopping\n"
    assert fetch(port, path="/healthz")[0] == 200
    assert rt.wait_exit(timeout=30) == 0


def test_port_in_use_is_a_clear_startup_error(sandbox, require):
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)], start=False,
                             runtime_settings={"metrics": "127.0.0.1:%d" % port})
        rt.start(wait=False)
        assert rt.wait_exit(timeout=20) == 1
    assert ("statemeshd: cannot listen on 127.0.0.1:%d for runtime.metrics: Address already "
            "in use; not starting" % port) in rt.log(), rt.log()
    assert "runtime.ready" not in rt.log()


@pytest.mark.parametrize("setting, why", [
    ('"127.0.0.1"', 'expected host:port'),
    ('"127.0.0.1:0"', 'the port must be a number 1..65535'),
    ('"127.0.0.1:65536"', 'the port must be a number 1..65535'),
    ('"127.0.0.1:http"', 'the port must be a number 1..65535'),
    ('"metrics.example:9464"', 'the host must be an IPv4 address, [IPv6] or localhost'),
    ('"[::1:9464"', 'an IPv6 host goes in brackets'),
    ('"[nope]:9464"', 'the host in brackets must be an IPv6 address'),
    ('9464', 'expected a string'),
])
def test_bad_metrics_settings_are_refused(sandbox, require, setting, why):
    require("statemeshd")
    conf = sandbox.path("m.conf")
    conf.write_text('runtime = { data_dir = "%s"; metrics = %s; };\n' % (sandbox.path("d"), setting))
    p = subprocess.run([str(binary("statemeshd")), "--check-config", str(conf)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=scaled(15))
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "runtime.metrics" in p.stderr and why in p.stderr, p.stderr


def test_metrics_off_by_default(sandbox, require):
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn()
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)])
    assert "metrics.listening" not in rt.log()


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_concurrent_scrapes_during_load(sandbox, require):
    """8 scrapers against a runtime under Send load: every scrape parses, the
    counters never go back, and 400 more scrapes leave the memory where it was."""
    require("statemeshd", "test/fn/testfn")
    from harness import SendLoad
    fn = sandbox.testfn()
    rt, port = start(sandbox, fn)
    errors = []

    def scraper():
        last = 0
        try:
            for _ in range(25):
                f = scrape(port)
                v = value(f, "statemesh_messages_received_total")
                if v < last:
                    errors.append("received went back: %s < %s" % (v, last))
                last = v
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    with SendLoad(rt.ingress, [(COUNTER, "L%d" % i, int64(1)) for i in range(8)], threads=3) as load:
        load.wait_acks(50)
        threads = [threading.Thread(target=scraper) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(scaled(60))
        assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:5]
    assert load.total_acked() > 0

    # Memory: under AddressSanitizer freed blocks sit in its quarantine (RSS
    # grows by design) and LeakSanitizer checks the exit instead.
    if b"__asan_init" in binary("statemeshd").read_bytes():
        return
    for _ in range(50):
        fetch(port)
    rss = _rss_kb(rt.pid)
    for _ in range(400):
        fetch(port)
    grown = _rss_kb(rt.pid) - rss
    assert grown < 2048, "RSS grew %d KiB over 400 scrapes" % grown


def test_grafana_dashboard_uses_only_real_metrics(sandbox, require):
    """examples/grafana-dashboard.json: valid JSON with a Prometheus input,
    and every statemesh_* name in its queries is served by a real runtime."""
    require("statemeshd", "test/fn/testfn")
    import json
    from harness import REPO
    dash = json.loads((REPO / "examples" / "grafana-dashboard.json").read_text())
    assert dash["__inputs"][0]["pluginId"] == "prometheus" and dash["panels"]
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = set(re.findall(r"statemesh_[a-z_]+", " ".join(exprs)))
    assert len(used) >= 15, used
    fn = sandbox.testfn()
    rt, port = start(sandbox, fn, extra_config='egresses = ( { name = "events"; } );')
    rt.client().send(COUNTER, "g", int64(1))
    f = wait_until(lambda: (lambda f: f if rpc_count(f, "Send") == 1 else None)(scrape(port)),
                   message="one Send seen")
    served = {name for fam in f.values() for (name, _) in fam["samples"]}
    assert not used - served, sorted(used - served)


@pytest.mark.skipif(not os.environ.get("STATEMESH_HELGRIND"),
                    reason="opt-in (about a minute): STATEMESH_HELGRIND=1")
@pytest.mark.time_limit(600)
def test_no_data_race_under_helgrind(sandbox, require):
    """statemeshd under valgrind --tool=helgrind while 3 threads scrape and
    messages flow: no race report names metrics.c or histo.c. What helgrind
    cannot follow in gRPC, absl, LevelDB and libmicrohttpd's own shutdown
    flag is suppressed (ci/helgrind.supp)."""
    require("statemeshd", "test/fn/testfn")
    from harness import REPO
    fn = sandbox.testfn()
    port = free_port()
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)], start=False,
                         runtime_settings={"metrics": "127.0.0.1:%d" % port})
    rt.write_config()
    log = sandbox.path("helgrind.log")
    with open(log, "w") as out:
        p = subprocess.Popen(["valgrind", "--tool=helgrind", "--error-limit=no",
                              "--suppressions=%s" % (REPO / "ci" / "valgrind.supp"),
                              "--suppressions=%s" % (REPO / "ci" / "helgrind.supp"),
                              str(rt.binary_path), "-c", str(rt.config_path)],
                             stdout=out, stderr=out, cwd=str(sandbox.workdir))
    try:
        wait_until(lambda: fetch(port, path="/readyz")[0] == 200, timeout=240, message="ready")
        cl = rt.client()
        for i in range(20):
            cl.send(COUNTER, "h%d" % (i % 4), int64(1))

        def scrapes():
            for _ in range(10):
                scrape(port)
        threads = [threading.Thread(target=scrapes) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(scaled(300))
        wait_until(lambda: value(scrape(port), "statemesh_messages_delivered_total") == 20,
                   timeout=120, message="delivered")
        cl.close()
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=300) == 0
    text = log.read_text()
    assert "ERROR SUMMARY" in text
    reports = text.split("Possible data race")[1:]
    ours = [r[:3000] for r in reports if re.search(r"\((metrics|histo)\.c:\d+\)", r.split("-----")[0])]
    assert not ours, ours[0]
