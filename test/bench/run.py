#!/usr/bin/python3
"""run.py — the driver of `make bench`: one fresh statemeshd per run, a
function server, the C load generator, /proc sampling; a table on stdout and
build/bench/results.json.

    make bench                      # the full set (see FULL below)
    make bench QUICK=1              # the short set, under a minute
    /usr/bin/python3 test/bench/run.py --quick --only embedded --only hot
    /usr/bin/python3 test/bench/run.py --list
    /usr/bin/python3 test/bench/run.py --quick --tls --only stream   # TLS on the ingress
    /usr/bin/python3 test/bench/run.py --quick --callgrind --only "embedded stream" --only "k1000 "

Each run:
  1. a work dir under $STATEMESH_BENCH_TMP (default /tmp; on the same disk as
     everything else here, so fsync is real): the runtime's data dir, the
     function server's unix socket, logs, the generated config;
  2. the function server, unless the mode is embedded:
       c-sidecar   build/test/bench/benchfn   (test/bench/bench_functions.c)
       py-sidecar  /usr/bin/python3 test/bench/bench_fn.py, PYTHONPATH=sdk-python
       embedded    no process: statemeshd loads build/test/bench/libcounter.so
  3. build/statemeshd -c <generated config>, checkpoint.sync = true unless the
     run says otherwise, every other setting at its default; waits for
     event=runtime.ready;
  4. build/test/bench/loadgen (test/bench/loadgen.c): waits for the endpoint,
     sends the messages, waits until queued_messages is 0, checks the
     counters, prints a JSON result;
  5. between the generator's "phase load-start" and "phase load-end" lines
     the driver samples the runtime's RSS (VmRSS, every 50 ms, the peak is
     reported) and the CPU time (utime + stime) of the runtime, the function
     server and the generator;
  6. everything is stopped (SIGTERM, then SIGKILL after 10 s) and the work
     dir removed (--keep keeps it).

Result fields (one object per run in results.json): workload, mode, ingress,
clients, addresses, messages, seconds, msgs_per_s, p50_ms, p99_ms,
runtime_rss_mb, runtime_anon_mb (peak RssAnon of statemeshd from
/proc/PID/status during the load, every 50 ms), peak_anon_mb (peak RssAnon
over the runtime's whole run — start-up, load, drain, the generator's
check — sampled every 10 ms; docs/limits.md bounds it: at most 64 MB with
the default settings), runtime_cpu_pct — see docs/performance.md —
plus ok, error, sync, fn_cpu_pct, loadgen_cpu_pct, loadavg_1m and the
generator's own fields (acked, ack_seconds, p999_ms, max_ms, mean_ms,
latency, batches, checkpoints, msgs_per_batch, msgs_per_checkpoint, check,
checked_addresses, checked_sum, expected_sum, failed, rejected, unknown);
with --perf perf_report, with --callgrind callgrind (true), callgrind_report
and callgrind_notes (what went wrong with the profile, if anything).
A run that fails (a process dies, a timeout, a failed check) has ok = false
and its error; its numbers are null.

The plot: after the runs, test/bench/plot.py (its own process) draws
BUILD/bench/scaling.png from results.json: counter-spread SendStream msgs/s
against addresses, greeter Call calls/s and p50/p99 latency against clients,
one line per mode, ok runs with sync = true only (a panel without data says
so). It needs matplotlib (Debian python3-matplotlib; `make bench` installs it
if missing); without it the driver prints "plot skipped: python3-matplotlib
not installed (...)" and its exit status does not change: the plot never
fails the bench. --no-plot leaves it out. Standalone:
    /usr/bin/python3 test/bench/plot.py build/bench/results.json out.png

Profiles, one per run, of the load phase only (from the generator's "phase
load-start" to "phase load-end"):
  --perf       `perf record -F 999` of the runtime and the function server;
               `perf report` to BUILD/bench/perf/NN-label.txt.
  --callgrind  statemeshd runs under `valgrind --tool=callgrind
               --instr-atstart=no`; `callgrind_control -i on PID` at load
               start and `-i off` at load end (through vgdb, ~0.2 s each, so
               the first ~0.2 s of the load are not counted); the profile is
               written when the runtime exits (SIGTERM, up to 120 s) and
               `callgrind_annotate` makes BUILD/bench/callgrind/NN-label.txt:
               instructions (Ir) by function, self cost (up to 99 % of the
               total) then the top 60 by inclusive cost. All the runtime's
               threads, the embedded module included; not the function
               server. Callgrind is ~50x slower and runs one thread at a
               time, so every run sends 1/20 of its messages (at least 2000,
               never more than it had: --list --callgrind shows the counts),
               timeouts are 5x and the waits for the runtime to come up
               300 s; its msgs/s, latencies and CPU are callgrind's, and the
               plot says so. Not together with --perf.

Only the Python standard library is used (plot.py: matplotlib). Every child
process runs in its own session and is killed when the driver exits, however
it exits (SIGTERM and SIGINT are caught; PR_SET_PDEATHSIG covers SIGKILL).
"""

import argparse
import atexit
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# --callgrind: messages / CALLGRIND_DIVIDE (at least CALLGRIND_MIN_MESSAGES, never
# more than the run had), timeouts x CALLGRIND_TIMEOUT_FACTOR, and the waits
# for the runtime to come up (driver and generator) READY_WAIT_CALLGRIND s.
CALLGRIND_DIVIDE = 20
CALLGRIND_MIN_MESSAGES = 2000
CALLGRIND_TIMEOUT_FACTOR = 5
READY_WAIT_CALLGRIND = 300
CALLGRIND_INCLUSIVE_TOP = 60
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# ---------------------------------------------------------------------------
# the runs
# ---------------------------------------------------------------------------

def run(workload, mode, ingress, clients=1, addresses=1000, messages=10000, sync=True,
        batch=None, window=None, timeout=120, inflight=1):
    """clients = concurrent requests: clients / inflight generator threads,
    each with `inflight` unary requests outstanding (loadgen --inflight)."""
    assert clients % inflight == 0 and (inflight == 1 or ingress in ("send", "call"))
    return dict(workload=workload, mode=mode, ingress=ingress, clients=clients,
                addresses=1 if workload == "counter-hot" else addresses, messages=messages,
                sync=sync, batch=batch, window=window, timeout=timeout, inflight=inflight)


def callgrind_scaled(r):
    """--callgrind: the run with 1/CALLGRIND_DIVIDE of its messages (at least
    CALLGRIND_MIN_MESSAGES, never more than it had) and longer timeouts."""
    r = dict(r)
    r["messages"] = min(r["messages"], max(CALLGRIND_MIN_MESSAGES, r["messages"] // CALLGRIND_DIVIDE))
    r["timeout"] = r["timeout"] * CALLGRIND_TIMEOUT_FACTOR
    return r


def dedup_inclusive(lines):
    """callgrind_annotate --inclusive=yes lists a function of ours twice, as
    "/abs/path/x.c:fn" and as "x.c:fn [object]", with the same count: keeps
    one line per (count, function), the one that names the object."""
    out, seen = [], {}
    for ln in lines:
        parts = ln.split(None, 1)
        rest = parts[1] if len(parts) > 1 else ""
        if ")" not in rest:   # PROGRAM TOTALS, the column heading
            out.append(ln)
            continue
        where = rest.split(")", 1)[1].strip()
        fn = where.split(":", 1)[-1].split(" [", 1)[0]
        key = (parts[0], fn)
        if key not in seen:
            seen[key] = len(out)
            out.append(ln)
        elif " [" in ln and " [" not in out[seen[key]]:
            out[seen[key]] = ln
    return out


def unary_inflight(clients):
    """Unary runs with 16+ concurrent requests use one generator thread with
    all of them in flight (loadgen --inflight): the same concurrency as one
    blocking thread per request for much less of the generator's CPU (on 2
    cores, 1 x 64 gave 16-23k calls/s, 2 x 32 and 4 x 16 13-17k, 64 x 1
    10-12k)."""
    return clients if clients >= 16 else 1


def quick_runs():
    """About 40 s on the 2-core machine: one look at every path."""
    return [
        run("counter-spread", "embedded", "stream", messages=200000),
        run("counter-spread", "c-sidecar", "stream", messages=200000),
        run("counter-spread", "py-sidecar", "stream", messages=100000),
        run("counter-hot", "embedded", "stream", messages=100000),
        run("counter-hot", "c-sidecar", "stream", messages=100000),
        run("counter-spread", "embedded", "stream", addresses=100000, messages=100000),
        run("counter-spread", "c-sidecar", "send", clients=1, messages=1000),
        run("counter-spread", "c-sidecar", "send", clients=16, messages=10000,
            inflight=unary_inflight(16)),
        run("greeter", "c-sidecar", "call", clients=1, messages=1000),
        run("greeter", "c-sidecar", "call", clients=64, messages=10000,
            inflight=unary_inflight(64)),
        run("greeter", "embedded", "call", clients=1, messages=1000),
        run("greeter", "embedded", "call", clients=64, messages=10000,
            inflight=unary_inflight(64)),
        run("greeter", "py-sidecar", "call", clients=16, messages=3000,
            inflight=unary_inflight(16)),
        run("counter-spread", "c-sidecar", "call", clients=16, messages=5000,
            inflight=unary_inflight(16)),
        run("counter-hot", "embedded", "call", clients=16, messages=5000,
            inflight=unary_inflight(16)),
    ]


def full_runs():
    runs = []
    # SendStream, counter-spread: address scaling per mode. Messages >= addresses,
    # so every address ends up with state in LevelDB.
    for mode, base in (("embedded", 1000000), ("c-sidecar", 1000000), ("py-sidecar", 200000)):
        for k in (1000, 10000, 100000, 1000000):
            runs.append(run("counter-spread", mode, "stream", addresses=k,
                            messages=max(base, k), timeout=600))
    runs.append(run("counter-spread", "embedded", "stream", addresses=10000000,
                    messages=10000000, timeout=1800))
    # hot key
    for mode, n in (("embedded", 1000000), ("c-sidecar", 1000000), ("py-sidecar", 200000)):
        runs.append(run("counter-hot", mode, "stream", messages=n, timeout=600))
    # durability off, for comparison
    for mode in ("embedded", "c-sidecar"):
        runs.append(run("counter-spread", mode, "stream", messages=1000000, sync=False,
                        timeout=600))
    # unary Send: client scaling
    for c in (1, 4, 16, 64):
        runs.append(run("counter-spread", "c-sidecar", "send", clients=c,
                        messages=2000 if c == 1 else 20000, inflight=unary_inflight(c)))
    # unary Call: client scaling per mode
    for mode in ("embedded", "c-sidecar", "py-sidecar"):
        for c in (1, 4, 16, 64):
            runs.append(run("greeter", mode, "call", clients=c,
                            messages=2000 if c == 1 else 20000, inflight=unary_inflight(c)))
    # unary Call of the counters (they reply their new value; C modes only)
    for mode in ("embedded", "c-sidecar"):
        for c in (1, 16, 64):
            runs.append(run("counter-spread", mode, "call", clients=c,
                            messages=2000 if c == 1 else 20000, inflight=unary_inflight(c)))
        runs.append(run("counter-hot", mode, "call", clients=16, messages=20000,
                        inflight=unary_inflight(16)))
    return runs


# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------

def _die_with_parent():
    """In the child before exec: SIGKILL when the driver dies, even by SIGKILL
    (prctl PR_SET_PDEATHSIG; every child is started from the main thread)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Children:
    """Every process the driver starts; all killed at exit."""

    def __init__(self):
        self.procs = []
        atexit.register(self.kill_all)

    def start(self, argv, **kw):
        p = subprocess.Popen(argv, start_new_session=True, preexec_fn=_die_with_parent, **kw)
        self.procs.append(p)
        return p

    def stop(self, p, grace=10.0):
        """SIGTERM, then SIGKILL after `grace` s. Returns the exit code."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill(p)
        if p in self.procs:
            self.procs.remove(p)
        return p.returncode

    def kill(self, p):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def kill_all(self):
        for p in list(self.procs):
            if p.poll() is None:
                self.kill(p)
        self.procs.clear()


class BenchError(Exception):
    pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:]).strip()
    except OSError:
        return ""


def proc_cpu_ticks(pid):
    """utime + stime of pid (all its threads), in clock ticks; None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def proc_rss_kb(pid):
    try:
        with open("/proc/%d/statm" % pid) as f:
            return int(f.read().split()[1]) * PAGE_KB
    except (OSError, IndexError, ValueError):
        return None


def proc_anon_kb(pid):
    """Anonymous resident memory (RssAnon: heap, stacks; not the mapped
    shared libraries or LevelDB's mmapped table files, which are page cache)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return None


class RssSampler(threading.Thread):
    """Peak RSS of pid, sampled every `period` s until stop()."""

    def __init__(self, pid, period=0.05):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.peak_kb = 0
        self.peak_anon_kb = 0
        self.done = threading.Event()

    def sample(self):
        kb = proc_rss_kb(self.pid)
        if kb and kb > self.peak_kb:
            self.peak_kb = kb
        kb = proc_anon_kb(self.pid)
        if kb and kb > self.peak_anon_kb:
            self.peak_anon_kb = kb

    def run(self):
        while True:
            self.sample()
            if self.done.wait(self.period):
                return

    def stop(self):
        self.done.set()
        self.join()
        self.sample()


# ---------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------

CONFIG = """# generated by test/bench/run.py
runtime = {
  data_dir = "%(data)s";
  ingress = "127.0.0.1:%(port)d";
  checkpoint = { interval_ms = 0; sync = %(sync)s; };
%(extra)s};
endpoints = (
  {
    functions = "bench/*";
    mode = "%(ep_mode)s";
%(where)s
  }
);
"""


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.children = Children()
        self.bin = {
            "statemeshd": os.path.join(self.build, "statemeshd"),
            "loadgen": os.path.join(self.build, "test/bench/loadgen"),
            "benchfn": os.path.join(self.build, "test/bench/benchfn"),
            "module": os.path.join(self.build, "test/bench/libcounter.so"),
        }

    def check_binaries(self, runs):
        need = {"statemeshd", "loadgen"}
        modes = {r["mode"] for r in runs}
        if "c-sidecar" in modes:
            need.add("benchfn")
        if "embedded" in modes:
            need.add("module")
        missing = [self.bin[n] for n in sorted(need) if not os.path.exists(self.bin[n])]
        if "py-sidecar" in modes:
            if not os.path.exists(PYTHON):
                missing.append(PYTHON)
            if not os.path.exists(os.path.join(REPO, "sdk-python/statemesh/v1/function_pb2.py")):
                missing.append(os.path.join(REPO, "sdk-python/statemesh/v1/function_pb2.py"))
        if missing:
            raise SystemExit("run.py: missing %s\n(`make bench` builds everything it needs; "
                             "or point --build at another build directory)" % ", ".join(missing))

    def start_fn(self, r, work):
        if r["mode"] == "embedded":
            return None
        sock = os.path.join(work, "fn.sock")
        log = open(os.path.join(work, "fn.log"), "wb")
        env = dict(os.environ)
        if r["mode"] == "c-sidecar":
            argv = [self.bin["benchfn"], "--listen", "unix:" + sock]
        else:
            argv = [PYTHON, os.path.join(HERE, "bench_fn.py"), "unix:" + sock]
            env["PYTHONPATH"] = os.path.join(REPO, "sdk-python") + (
                ":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            p = self.children.start(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        finally:
            log.close()
        deadline = time.monotonic() + 20
        while True:
            if p.poll() is not None:
                raise BenchError("function server exited with %s: %s"
                                 % (p.returncode, tail(os.path.join(work, "fn.log"), 5)))
            if os.path.exists(sock):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(sock)
                    return p
                except OSError:
                    pass
                finally:
                    s.close()
            if time.monotonic() > deadline:
                raise BenchError("function server not listening on %s after 20 s" % sock)
            time.sleep(0.02)

    def start_runtime(self, r, work):
        port = free_port()
        if r["mode"] == "embedded":
            where = '    library = "%s";' % self.bin["module"]
        else:
            where = '    target = "unix:%s";' % os.path.join(work, "fn.sock")
        conf = os.path.join(work, "statemesh.conf")
        with open(conf, "w") as f:
            f.write(CONFIG % dict(data=os.path.join(work, "data"), port=port,
                                  sync="true" if r["sync"] else "false",
                                  ep_mode="embedded" if r["mode"] == "embedded" else "sidecar",
                                  where=where,
                                  extra="".join("  %s;\n" % kv for kv in self.args.set)))
        logpath = os.path.join(work, "statemeshd.log")
        argv = [self.bin["statemeshd"], "-c", conf]
        if self.args.callgrind:
            argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                    "--callgrind-out-file=" + os.path.join(work, "callgrind.out")] + argv
        log = open(logpath, "wb")
        try:
            p = self.children.start(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        wait = READY_WAIT_CALLGRIND if self.args.callgrind else 20
        deadline = time.monotonic() + wait
        while True:
            try:
                with open(logpath, errors="replace") as f:
                    if "event=runtime.ready" in f.read():
                        return p, port
            except OSError:
                pass
            if p.poll() is not None:
                raise BenchError("statemeshd exited with %s: %s" % (p.returncode, tail(logpath, 5)))
            if time.monotonic() > deadline:
                raise BenchError("statemeshd not ready after %d s: %s" % (wait, tail(logpath, 5)))
            time.sleep(0.02)

    def loadgen_argv(self, r, port):
        argv = [self.bin["loadgen"], "--target", "127.0.0.1:%d" % port,
                "--workload", r["workload"], "--ingress", r["ingress"],
                "--clients", str(r["clients"] // r["inflight"]), "--addresses", str(r["addresses"]),
                "--drain-timeout-ms", str(int(r["timeout"] * 1000))]
        if self.args.duration:   # the same time for every run instead of its message count
            argv += ["--duration", "%g" % self.args.duration]
        else:
            argv += ["--messages", str(r["messages"])]
        if r["batch"]:
            argv += ["--batch", str(r["batch"])]
        if r["window"]:
            argv += ["--window", str(r["window"])]
        if r["inflight"] > 1:
            argv += ["--inflight", str(r["inflight"])]
        if self.args.callgrind:   # a runtime ~50x slower: slow to come up, slow to answer
            argv += ["--ready-timeout-ms", str(READY_WAIT_CALLGRIND * 1000),
                     "--timeout-ms", str(READY_WAIT_CALLGRIND * 1000)]
        return argv

    def one(self, r):
        """Runs r; returns its result dict (never raises BenchError)."""
        res = {k: r[k] for k in ("workload", "mode", "ingress", "clients", "inflight", "addresses",
                                 "messages")}
        res["threads"] = r["clients"] // r["inflight"]
        res.update(seconds=None, msgs_per_s=None, p50_ms=None, p99_ms=None, runtime_rss_mb=None,
                   runtime_anon_mb=None, peak_anon_mb=None,
                   runtime_cpu_pct=None, ok=False, error=None, sync=r["sync"], fn_cpu_pct=None,
                   loadgen_cpu_pct=None, loadavg_1m=os.getloadavg()[0])
        if self.args.callgrind:
            res["callgrind"] = True
        work = tempfile.mkdtemp(prefix="smbench-", dir=self.args.tmp)
        fn = rt = gen = whole = None
        try:
            fn = self.start_fn(r, work)
            rt, port = self.start_runtime(r, work)
            whole = RssSampler(rt.pid, period=0.01)   # peak_anon_mb: the whole run
            whole.start()
            gen_log = open(os.path.join(work, "loadgen.log"), "wb")
            try:
                gen = self.children.start(self.loadgen_argv(r, port), stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=gen_log)
            finally:
                gen_log.close()
            result = self.watch(r, res, rt, fn, gen, work)
            if result is None:
                raise BenchError("loadgen printed no result (exit %s): %s"
                                 % (gen.returncode, tail(os.path.join(work, "loadgen.log"), 5)))
            for k, v in result.items():
                if k not in ("workload", "ingress", "clients", "inflight", "addresses", "messages"):
                    res[k] = v
            if self.args.duration:   # the count the generator managed in the time
                res["messages"] = result.get("messages")
            if rt.poll() is not None:
                raise BenchError("statemeshd died during the run (exit %s): %s"
                                 % (rt.returncode, tail(os.path.join(work, "statemeshd.log"), 5)))
            if fn is not None and fn.poll() is not None:
                raise BenchError("function server died during the run (exit %s): %s"
                                 % (fn.returncode, tail(os.path.join(work, "fn.log"), 5)))
        except BenchError as e:
            res["ok"] = False
            res["error"] = str(e) if not res.get("error") else "%s; %s" % (e, res["error"])
        finally:
            if whole is not None:
                whole.stop()
                res["peak_anon_mb"] = round(whole.peak_anon_kb / 1024.0, 1)
            for p in (gen, rt, fn):
                if p is not None:
                    # under callgrind the runtime writes its profile when it exits
                    code = self.children.stop(p, grace=120 if p is rt and self.args.callgrind
                                              else 10)
                    if p is rt and code not in (0, None) and res["ok"]:
                        res["ok"] = False
                        res["error"] = "statemeshd exited with %s at shutdown: %s" % (
                            code, tail(os.path.join(work, "statemeshd.log"), 5))
            if rt is not None and self.args.callgrind:
                try:
                    self.callgrind_report(r, res, work)
                except (OSError, subprocess.SubprocessError) as e:   # the run itself stands
                    res.setdefault("callgrind_notes", []).append("callgrind_annotate: %s" % e)
            if self.args.keep:
                res["work_dir"] = work
            else:
                shutil.rmtree(work, ignore_errors=True)
        if not res["ok"]:
            for k in ("seconds", "msgs_per_s", "p50_ms", "p99_ms"):
                res[k] = None
        return res

    def start_perf(self, pids, work):
        """--perf: `perf record` of the runtime and the function server."""
        if not self.args.perf:
            return None
        targets = ",".join(str(pids[k]) for k in ("runtime", "fn") if k in pids)
        log = open(os.path.join(work, "perf.log"), "wb")
        try:
            return self.children.start(["perf", "record", "-q", "-F", "999", "-p", targets,
                                        "-o", os.path.join(work, "perf.data")],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()

    def report_name(self, r):
        """NN-label.txt, the file name of a run's --perf or --callgrind profile."""
        return "%02d-%s-%s-%s-c%d-k%d%s.txt" % (
            self.index, r["workload"], r["mode"], r["ingress"], r["clients"], r["addresses"],
            "" if r["sync"] else "-nosync")

    def callgrind_toggle(self, rt, on, res):
        """--callgrind: instrumentation of the runtime on (load start) or off
        (load end), `callgrind_control -i on|off PID` (through vgdb, ~0.2 s)."""
        if not self.args.callgrind or rt.poll() is not None:
            return
        state = "on" if on else "off"
        try:
            p = subprocess.run(["callgrind_control", "-i", state, str(rt.pid)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            out = p.stdout.decode(errors="replace").strip()
            ok = p.returncode == 0 and "Error" not in out   # it exits 0 on errors too
        except (OSError, subprocess.TimeoutExpired) as e:
            out, ok = str(e), False
        if not ok:
            res.setdefault("callgrind_notes", []).append(
                "callgrind_control -i %s failed: %s" % (state, out.replace("\n", " ")[:300]))

    def callgrind_report(self, r, res, work):
        """--callgrind: callgrind_annotate of the runtime's profile (written
        when it exited) to BUILD/bench/callgrind/NN-label.txt."""
        data = os.path.join(work, "callgrind.out")
        notes = res.get("callgrind_notes", [])
        if not os.path.exists(data):
            notes.append("no profile: %s missing (statemeshd killed before it could write it?)"
                         % data)
            res["callgrind_notes"] = notes
            return
        os.makedirs(self.callgrind_dir, exist_ok=True)
        path = os.path.join(self.callgrind_dir, self.report_name(r))
        with open(path, "w") as f:
            f.write("# statemeshd under valgrind --tool=callgrind, %s (%d messages: the run's "
                    "count scaled down for --callgrind)\n"
                    "# instrumentation on from the generator's phase load-start to load-end "
                    "(callgrind_control -i on/off); Ir = instructions executed, all threads\n"
                    % (label(r).strip(), r["messages"]))
            for n in notes:
                f.write("# NOTE: %s\n" % n)
            f.write("\n### exclusive (self) cost, functions up to 99% of the total\n\n")
            f.flush()
            subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=99", "--auto=no",
                            data], stdout=f, stderr=subprocess.STDOUT, timeout=300)
            f.write("\n### inclusive cost (self + callees), top %d functions\n\n"
                    % CALLGRIND_INCLUSIVE_TOP)
            f.flush()
            p = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=99",
                                "--auto=no", data], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=300)
            lines = p.stdout.decode(errors="replace").splitlines()
            # skip the header callgrind_annotate already printed above: from "PROGRAM TOTALS"
            start = next((i for i, ln in enumerate(lines) if "PROGRAM TOTALS" in ln), 0)
            body = dedup_inclusive([ln for ln in lines[start:]
                                    if ln.strip() and not ln.startswith("---")])
            f.write("\n".join(body[:CALLGRIND_INCLUSIVE_TOP + 2]) + "\n")
        res["callgrind_report"] = os.path.relpath(path, REPO)

    def stop_perf(self, perf, r, res, work):
        """Stops the recording; writes the flat profile next to results.json."""
        if perf is None:
            return
        if perf.poll() is None:
            os.kill(perf.pid, signal.SIGINT)
        try:
            perf.wait(30)
        except subprocess.TimeoutExpired:
            self.children.kill(perf)
        self.children.stop(perf)
        os.makedirs(self.perf_dir, exist_ok=True)
        path = os.path.join(self.perf_dir, self.report_name(r))
        with open(path, "wb") as f:
            subprocess.run(["perf", "report", "--stdio", "--no-children", "--percent-limit", "0.5",
                            "--sort", "comm,dso,sym", "-w", "10,12,30,70", "-i", os.path.join(work, "perf.data")],
                           stdout=f, stderr=subprocess.DEVNULL, timeout=300)
        res["perf_report"] = os.path.relpath(path, REPO)

    def watch(self, r, res, rt, fn, gen, work):
        """Reads the generator's lines, samples /proc between its phases."""
        result = None
        sampler = perf = None
        t0 = None
        cpu0 = {}
        pids = {"runtime": rt.pid, "loadgen": gen.pid}
        if fn is not None:
            pids["fn"] = fn.pid
        timed_out = threading.Event()

        def expire():
            timed_out.set()
            self.children.kill(gen)

        killer = threading.Timer(r["timeout"] + 60 + (self.args.duration or 0), expire)
        killer.daemon = True
        killer.start()
        try:
            for raw in gen.stdout:
                line = raw.decode(errors="replace").strip()
                if line == "phase load-start":
                    t0 = time.monotonic()
                    cpu0 = {k: proc_cpu_ticks(p) for k, p in pids.items()}
                    perf = self.start_perf(pids, work)
                    self.callgrind_toggle(rt, True, res)
                    sampler = RssSampler(rt.pid)
                    sampler.start()
                elif line == "phase load-end" and t0 is not None:
                    wall = time.monotonic() - t0
                    self.callgrind_toggle(rt, False, res)
                    sampler.stop()
                    res["runtime_rss_mb"] = round(sampler.peak_kb / 1024.0, 1)
                    res["runtime_anon_mb"] = round(sampler.peak_anon_kb / 1024.0, 1)
                    for k, p in pids.items():
                        c1 = proc_cpu_ticks(p)
                        if c1 is not None and cpu0.get(k) is not None and wall > 0:
                            pct = round((c1 - cpu0[k]) / CLK_TCK / wall * 100.0, 1)
                            res[{"runtime": "runtime_cpu_pct", "fn": "fn_cpu_pct",
                                 "loadgen": "loadgen_cpu_pct"}[k]] = pct
                    sampler = None
                    self.stop_perf(perf, r, res, work)
                    perf = None
                elif line.startswith("result "):
                    result = json.loads(line[len("result "):])
            gen.wait(30)
        finally:
            killer.cancel()
            if sampler is not None:
                sampler.stop()
            if perf is not None:
                self.children.stop(perf)
        if timed_out.is_set():
            raise BenchError("loadgen did not finish within %d s: killed" % (r["timeout"] + 60))
        return result


# ---------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------

COLUMNS = [
    ("workload", "%-14s", "workload"), ("mode", "%-10s", "mode"), ("ingress", "%-6s", "ingress"),
    ("clients", "%4s", "cli"), ("addresses", "%9s", "addresses"), ("messages", "%9s", "messages"),
    ("seconds", "%7s", "seconds"), ("msgs_per_s", "%9s", "msgs/s"), ("p50_ms", "%8s", "p50 ms"),
    ("p99_ms", "%8s", "p99 ms"), ("runtime_rss_mb", "%6s", "rss MB"),
    ("runtime_anon_mb", "%7s", "anon MB"), ("peak_anon_mb", "%6s", "peak MB"),
    ("runtime_cpu_pct", "%6s", "rt cpu"), ("fn_cpu_pct", "%6s", "fn cpu"),
    ("loadgen_cpu_pct", "%7s", "gen cpu"), ("ok", "%s", "ok"),
]


def fmt(key, v):
    if v is None:
        return "-"
    if key == "ok":
        return "ok" if v else "FAIL"
    if key in ("p50_ms", "p99_ms"):
        return "%.3f" % v if v < 10 else "%.1f" % v
    if key == "seconds":
        return "%.2f" % v
    if key in ("msgs_per_s",):
        return "%.0f" % v
    if key in ("runtime_rss_mb", "runtime_anon_mb", "peak_anon_mb", "runtime_cpu_pct", "fn_cpu_pct", "loadgen_cpu_pct"):
        return "%.0f" % v
    if key == "sync":
        return "" if v else "(sync off)"
    return str(v)


def header():
    return "  ".join(f % h for _, f, h in COLUMNS)


def row(res):
    line = "  ".join(f % fmt(k, res.get(k)) for k, f, _ in COLUMNS)
    if not res.get("sync", True):
        line += "  sync=false"
    if not res.get("ok"):
        line += "  " + (res.get("error") or "")
    if res.get("callgrind_notes"):
        line += "  callgrind: " + "; ".join(res["callgrind_notes"])
    return line


def markdown(results):
    keys = [k for k, _, _ in COLUMNS]
    heads = [h for _, _, h in COLUMNS]
    out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for res in results:
        cells = [fmt(k, res.get(k)) for k in keys]
        if not res.get("sync", True):
            cells[1] += " (sync off)"
        if not res.get("ok"):
            cells[-1] = "FAIL: " + (res.get("error") or "")[:120]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


PLOT_SKIPPED = "plot skipped: python3-matplotlib not installed (apt-get install python3-matplotlib)"


def make_plot(results_path, png, title):
    """test/bench/plot.py in its own process: whatever happens there (no
    matplotlib, an exception, a crash), the bench does not fail. Returns the
    line to print."""
    try:
        p = subprocess.run([PYTHON, os.path.join(HERE, "plot.py"), os.path.relpath(results_path),
                            os.path.relpath(png),
                            "--title", title], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=300, preexec_fn=_die_with_parent)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "plot skipped: %s" % e
    if p.returncode == 3:
        return PLOT_SKIPPED
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        return "plot skipped: plot.py exited with %d: %s" % (p.returncode, err[-1] if err else "")
    text = p.stdout.decode(errors="replace").strip().splitlines()
    return text[-1] if text else "plot: wrote %s" % os.path.relpath(png)


def label(r):
    """What --only and --skip match: e.g. "counter-spread embedded stream c1 k1000 "."""
    return "%s %s %s c%d k%d %s" % (r["workload"], r["mode"], r["ingress"], r["clients"],
                                    r["addresses"], "" if r["sync"] else "nosync")


def tls_setup(args):
    """--tls: certificates in a temp dir (removed at exit), runtime.tls, the env for loadgen."""
    d = tempfile.mkdtemp(prefix="smbench-tls-", dir=args.tmp)
    atexit.register(shutil.rmtree, d, True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for argv in (["req", "-x509"] + ec + ["-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
                                         "-subj", "/CN=bench-ca"],
                 ["req"] + ec + ["-keyout", "s.key", "-out", "s.csr", "-subj", "/CN=bench"],
                 ["x509", "-req", "-in", "s.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                  "-set_serial", "1", "-days", "2", "-extfile", "ext", "-out", "s.crt"]):
        subprocess.run(["openssl"] + argv, cwd=d, check=True, capture_output=True)
    args.set.append('tls = { cert = "%s"; key = "%s"; }'
                    % (os.path.join(d, "s.crt"), os.path.join(d, "s.key")))
    os.environ["STATEMESH_TLS_CA"] = os.path.join(d, "ca.crt")


def main():
    ap = argparse.ArgumentParser(description="statemesh benchmark driver (make bench)")
    ap.add_argument("--build", default=os.path.join(REPO, "build"), help="build directory")
    ap.add_argument("--quick", action="store_true", help="the short set (make bench QUICK=1)")
    ap.add_argument("--only", action="append", default=[],
                    help="keep runs whose label 'WORKLOAD MODE INGRESS cCLIENTS kADDRESSES [nosync]' "
                         "contains this, e.g. 'embedded', 'c64 ', 'k1000 ' (repeatable: all must match)")
    ap.add_argument("--skip", action="append", default=[],
                    help="drop runs whose label (as for --only) contains this (repeatable)")
    ap.add_argument("--out", help="results file (default BUILD/bench/results.json)")
    ap.add_argument("--markdown", action="store_true", help="also print the table as markdown")
    ap.add_argument("--tmp", default=os.environ.get("STATEMESH_BENCH_TMP", "/tmp"),
                    help="parent of the work dirs (default $STATEMESH_BENCH_TMP or /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the work dirs (logs, data)")
    ap.add_argument("--list", action="store_true", help="list the runs and exit")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="add a setting to the generated config's runtime group, "
                         "e.g. --set max_queued_bytes=8388608 (repeatable)")
    ap.add_argument("--perf", action="store_true",
                    help="record each run's runtime and function server with `perf record` "
                         "(during the load) and write flat profiles to BUILD/bench/perf/")
    ap.add_argument("--callgrind", action="store_true",
                    help="run each run's statemeshd under `valgrind --tool=callgrind` with "
                         "instrumentation on only during the load (callgrind_control -i on/off) "
                         "and write flat callgrind_annotate profiles (self and inclusive cost) "
                         "to BUILD/bench/callgrind/NN-label.txt; callgrind is ~50x slower, so "
                         "messages are divided by %d (at least %d) and timeouts multiplied by %d; "
                         "the numbers in the table are then not representative; not with --perf"
                         % (CALLGRIND_DIVIDE, CALLGRIND_MIN_MESSAGES, CALLGRIND_TIMEOUT_FACTOR))
    ap.add_argument("--tls", action="store_true",
                    help="TLS on the ingress: a CA and a server certificate made with openssl "
                         "in a temp dir, runtime.tls set, loadgen given $STATEMESH_TLS_CA "
                         "(its --inflight channels stay plaintext: use with stream runs, "
                         "or send/call with few clients)")
    ap.add_argument("--duration", type=float, metavar="S",
                    help="every run sends for S seconds (loadgen --duration) instead of its "
                         "message count, so runs compare at equal durations; messages then "
                         "reports how many were sent")
    ap.add_argument("--no-plot", action="store_true",
                    help="do not draw BUILD/bench/scaling.png (by default test/bench/plot.py draws "
                         "it from the results after the runs; needs python3-matplotlib, and "
                         "without it the bench only says so)")
    args = ap.parse_args()

    runs = quick_runs() if args.quick else full_runs()
    for sub in args.only:
        runs = [r for r in runs if sub in label(r)]
    for sub in args.skip:
        runs = [r for r in runs if sub not in label(r)]
    if args.perf and args.callgrind:
        raise SystemExit("run.py: --perf and --callgrind do not go together")
    if args.callgrind:
        runs = [callgrind_scaled(r) for r in runs]
    if args.list:
        for r in runs:
            print("%-14s %-10s %-6s clients=%-3d inflight=%-2d addresses=%-8d messages=%-8d sync=%s"
                  % (r["workload"], r["mode"], r["ingress"], r["clients"], r["inflight"],
                     r["addresses"], r["messages"], r["sync"]))
        return 0
    if not runs:
        raise SystemExit("run.py: no run matches %s" % args.only)

    if args.tls:
        tls_setup(args)
    bench = Bench(args)
    bench.check_binaries(runs)
    if args.perf and not shutil.which("perf"):
        raise SystemExit("run.py: --perf needs perf (apt-get install linux-perf)")
    if args.callgrind:
        for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
            if not shutil.which(tool):
                raise SystemExit("run.py: --callgrind needs %s (apt-get install valgrind)" % tool)
    out = args.out or os.path.join(bench.build, "bench", "results.json")
    bench.perf_dir = os.path.join(os.path.dirname(out), "perf")
    bench.callgrind_dir = os.path.join(os.path.dirname(out), "callgrind")
    for on, d in ((args.perf, bench.perf_dir), (args.callgrind, bench.callgrind_dir)):
        if on and os.path.isdir(d):   # the profiles of this invocation only
            for name in os.listdir(d):
                if name.endswith(".txt"):
                    os.remove(os.path.join(d, name))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    plot_path = os.path.join(os.path.dirname(out), "scaling.png")
    if not args.no_plot and os.path.exists(plot_path):   # drawn from results this run replaces
        os.remove(plot_path)

    def on_signal(signum, frame):
        bench.children.kill_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    print("statemesh bench: %d runs (%s), %d CPUs, load average %.2f; results -> %s"
          % (len(runs), "quick" if args.quick else "full", os.cpu_count(), os.getloadavg()[0],
             os.path.relpath(out)))
    if args.callgrind:
        print("--callgrind: statemeshd runs under valgrind --tool=callgrind (~50x slower): "
              "messages / %d (at least %d), timeouts x %d; msgs/s, latencies and CPU below are "
              "callgrind's, not the runtime's; profiles -> %s/" % (
                  CALLGRIND_DIVIDE, CALLGRIND_MIN_MESSAGES, CALLGRIND_TIMEOUT_FACTOR,
                  os.path.relpath(bench.callgrind_dir)))
    print(header(), flush=True)
    results = []
    started = time.monotonic()
    for i, r in enumerate(runs):
        bench.index = i + 1
        res = bench.one(r)
        results.append(res)
        print(row(res), flush=True)
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
        os.replace(tmp, out)
    failed = sum(1 for res in results if not res["ok"])
    print("%d runs in %.0f s, %d failed; wrote %s" % (len(results), time.monotonic() - started,
                                                      failed, os.path.relpath(out)))
    if args.markdown:
        print()
        print(markdown(results))
    if not args.no_plot:
        print(make_plot(out, plot_path, "statemesh bench (%s set, %s), %s, %d CPUs" % (
            "quick" if args.quick else "full", "selected runs" if args.only or args.skip else "all runs",
            time.strftime("%Y-%m-%d %H:%M"), os.cpu_count())), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
