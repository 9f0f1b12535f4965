#!/usr/bin/python3
"""bootstrap.py — throughput of `statemesh bootstrap` (docs/savepoints.md#bootstrap).

    /usr/bin/python3 test/bench/bootstrap.py [--lines N] [--batch B] [--messages] [--keep]

Generates N JSON lines (default 1,000,000), one address of test/counter each
with a simple state (n = an int64; --messages: also one queued message),
starts a fresh statemeshd (checkpoint.sync = true, defaults otherwise) with
build/test/fn/testfn as its function server, loads the file with
build/statemesh bootstrap and prints one JSON object: lines, seconds,
lines_per_s, the CPU seconds the runtime and the CLI used (the machine may be
shared: lines per runtime CPU second is the steadier figure), peak RSS of the
runtime and of the CLI (VmHWM / sampled VmRSS), then the same file again
(every line ALREADY_LOADED) and its time.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "test" / "integration"))

from harness import Sandbox, binary, endpoint  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))
from savepoint_bench import proc_kb  # noqa: E402



def generate(path, n, messages):
    with open(path, "w") as f:
        for i in range(n):
            msg = ',"messages":[{"typename":"statemesh/int64","value":1}]' if messages else ""
            f.write('{"type":"test/counter","id":"u%08d","state":{"n":{"typename":'
                    '"statemesh/int64","value":%d}}%s}\n' % (i, i, msg))


def cpu_s(pid):
    """utime + stime of a process (and its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(rt, path, batch):
    argv = [str(binary("statemesh")), "--address", rt.ingress, "--timeout", "120000",
            "bootstrap", str(path), "--json", "--batch", str(batch)]
    t0 = time.monotonic()
    rt_cpu0 = cpu_s(rt.pid)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    cli_cpu = [0.0]

    def sample():
        while p.poll() is None:
            peak[0] = max(peak[0], proc_kb(p.pid, "VmRSS"))
            try:
                cli_cpu[0] = cpu_s(p.pid)
            except (OSError, IndexError):
                pass
            time.sleep(0.05)

    t = threading.Thread(target=sample)
    t.start()
    out, err = p.communicate()
    t.join()
    secs = time.monotonic() - t0
    rt_cpu = cpu_s(rt.pid) - rt_cpu0
    if p.returncode != 0:
        raise SystemExit("bootstrap failed (%d): %s" % (p.returncode, err[-2000:]))
    return json.loads(out.strip().splitlines()[-1]), secs, peak[0], rt_cpu, cli_cpu[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1000000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--messages", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="sm-bootbench-", dir=os.environ.get("STATEMESH_BENCH_TMP")))
    data = tmp / "data.jsonl"
    generate(data, args.lines, args.messages)
    sb = Sandbox(tmp / "run")
    try:
        fn = sb.testfn()
        rt = sb.runtime([endpoint("test/*", fn)])
        first, secs, cli_peak, rt_cpu, cli_cpu = load(rt, data, args.batch)
        rt_hwm = proc_kb(rt.pid, "VmHWM")
        rt_rss_after = proc_kb(rt.pid, "VmRSS")
        st = rt.client().stats()
        again, secs2, _, rt_cpu2, _ = load(rt, data, args.batch)
        assert first["loaded"] == args.lines, first
        assert again["already_loaded"] == args.lines, again
        print(json.dumps({
            "lines": args.lines, "bytes": data.stat().st_size, "batch": args.batch,
            "messages": args.messages, "seconds": round(secs, 2),
            "lines_per_s": round(args.lines / secs),
            "runtime_cpu_s": round(rt_cpu, 2), "cli_cpu_s": round(cli_cpu, 2),
            "lines_per_runtime_cpu_s": round(args.lines / max(rt_cpu, 0.01)),
            "loadavg_1m": os.getloadavg()[0],
            "rerun_seconds": round(secs2, 2), "rerun_lines_per_s": round(args.lines / secs2),
            "rerun_runtime_cpu_s": round(rt_cpu2, 2),
            "runtime_peak_rss_mb": round(rt_hwm / 1024, 1),
            "runtime_rss_after_mb": round(rt_rss_after / 1024, 1),
            "state_cache_mb": round(st["state_cache_bytes"] / 2**20, 1),
            "active_addresses": st["active_addresses"],
            "cli_peak_rss_mb": round(cli_peak / 1024, 1)}))
    finally:
        sb.close(check=False)
        if not args.keep:
            subprocess.run(["rm", "-rf", str(tmp)])


if __name__ == "__main__":
    main()
