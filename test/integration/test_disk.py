"""
Disk full, I/O errors and a corrupt store (issue 14; docs/operations-disk.md).

  - disk full: the data dir sits on a size-limited tmpfs mounted by the test
    (root only; skipped with the reason otherwise), filled by filler files
    and then by the runtime under load;
  - I/O error: build/test/libiofail.so (test/fault/iofail.c) preloaded makes
    fsync/fdatasync or write on the store's files fail after N calls;
  - corruption: bytes flipped in a table, the MANIFEST or a log file: the
    start is refused naming the file (exit 3), `statemeshd --repair` then
    lets it start (what survives is LevelDB's business).

Load: one client thread per address of test/order. Thread t sends the strings
"t.0", "t.1", ... in order, each with idempotency key "key-t.k", and never
retries while the runtime runs. test/order appends every message it consumes
to its state `seen`, so each message's fate is visible, not just a count.
After the runtime stopped and was started again (with the disk freed):

    acked <= applied <= sent      every acknowledged message is applied
    no message applied twice      (exactly once)
    applied in send order         (per-sender order)

then every message that was not acknowledged is sent again with its key, and
every message sent is applied exactly once: the ones that committed before the
failure (their ack was lost) are recognised by their key, the rest applied now.
"""

import collections
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest

from harness import (Client, Runtime, binary, endpoint, ingress_pb2, scaled, string,
                     wait_until)

ORDER = "test/order"
EXIT_STORAGE = 3            # statemeshd's exit code for a storage failure (runtime/main.c)
FS_BYTES = 24 << 20         # the small filesystem
LEAVE_BYTES = 1 << 20       # what the filler leaves for the runtime to fill

pytestmark = pytest.mark.fault


# ---- load with per-message accounting -------------------------------------------------


class OrderLoad:
    """Threads sending numbered, keyed strings to one test/order address each."""

    def __init__(self, ingress: str, threads: int = 4, prefix: str = "d"):
        self.ingress = ingress
        self.ids = ["%s%d" % (prefix, t) for t in range(threads)]
        self.sent = [[] for _ in range(threads)]
        self.acked = [[] for _ in range(threads)]
        self.failed = [[] for _ in range(threads)]
        self.codes = collections.Counter()
        self.errors = []
        self._stop = threading.Event()
        self._threads = []

    def request(self, t: int, msg: str):
        req = ingress_pb2.SendRequest(idempotency_key="key-" + msg)
        req.target.type = ORDER
        req.target.id = self.ids[t]
        req.argument.CopyFrom(string(msg))
        return req

    def _run(self, t: int) -> None:
        cl = Client(self.ingress, timeout=5, wait_for_ready=False)
        try:
            k = 0
            while not self._stop.is_set():
                msg = "%d.%d" % (t, k)
                k += 1
                self.sent[t].append(msg)
                try:
                    cl.ingress.Send(self.request(t, msg), timeout=scaled(5), wait_for_ready=False)
                    self.acked[t].append(msg)
                except grpc.RpcError as e:
                    self.failed[t].append(msg)
                    self.codes[str(e.code())] += 1
                    self._stop.wait(0.05)
        except Exception as e:  # noqa: BLE001
            self.errors.append(e)
        finally:
            cl.close()

    def start(self) -> "OrderLoad":
        for t in range(len(self.ids)):
            th = threading.Thread(target=self._run, args=(t,), daemon=True)
            self._threads.append(th)
            th.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(scaled(20))
        assert not any(th.is_alive() for th in self._threads), "load threads did not stop"
        assert not self.errors, self.errors

    def total_acked(self) -> int:
        return sum(len(a) for a in self.acked)

    def resend_unacked(self, cl: Client) -> int:
        n = 0
        for t in range(len(self.ids)):
            for msg in self.failed[t]:
                cl.ingress.Send(self.request(t, msg), timeout=scaled(10), wait_for_ready=True)
                n += 1
        return n


def applied(cl: Client, id_: str) -> list:
    seen = cl.state(ORDER, id_).get("seen", "")
    return [m for m in seen.split(",") if m]


def check_applied(load: OrderLoad, cl: Client, final: bool) -> int:
    """Checks the properties above for every address; returns the messages applied."""
    cl.wait_drained(timeout=30)
    problems, total = [], 0
    for t, id_ in enumerate(load.ids):
        seen = applied(cl, id_)
        total += len(seen)
        count = collections.Counter(seen)
        sent = set(load.sent[t])
        dup = sorted(m for m, c in count.items() if c > 1)
        lost = [m for m in load.acked[t] if m not in count]
        alien = [m for m in count if m not in sent]
        if dup:
            problems.append("%s: applied twice: %s" % (id_, dup[:10]))
        if lost:
            problems.append("%s: %d acknowledged messages not applied: %s" % (id_, len(lost), lost[:10]))
        if alien:
            problems.append("%s: applied but never sent: %s" % (id_, alien[:10]))
        if final:
            missing = [m for m in load.sent[t] if m not in count]
            if missing:
                problems.append("%s: never applied after the re-send: %s" % (id_, missing[:10]))
        elif seen != [m for m in load.sent[t] if m in count]:
            problems.append("%s: applied out of send order: %s" % (id_, seen[:20]))
    assert not problems, "\n".join(problems)
    return total


def recover_and_check(load: OrderLoad, cl: Client) -> None:
    before = check_applied(load, cl, final=False)
    acked = load.total_acked()
    assert before >= acked
    print("acked %d, applied %d (%d committed without their ack), re-sending %d unacked"
          % (acked, before, before - acked, sum(len(f) for f in load.failed)))
    load.resend_unacked(cl)
    check_applied(load, cl, final=True)


def storage_stop_lines(rt: Runtime) -> list:
    return rt.log_lines("event=store.write_failed", run_only=True)


def assert_clean_storage_stop(rt: Runtime, rc: int, needle: str) -> None:
    log = rt.log()
    assert rc == EXIT_STORAGE, "exit %s, expected %d; log:\n%s" % (rc, EXIT_STORAGE, log[-4000:])
    failed = storage_stop_lines(rt)
    assert failed and needle in failed[0], "no store.write_failed naming %r:\n%s" % (needle, log[-4000:])
    stop = rt.log_lines("event=runtime.storage_failed", run_only=True)
    assert stop and "exit_code=3" in stop[0], log[-4000:]
    for bad in ("event=panic", "AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert bad not in log, log[-4000:]


# ---- a small filesystem -------------------------------------------------------------


@pytest.fixture
def small_fs(sandbox):
    """A FS_BYTES tmpfs mounted in the sandbox; unmounted (lazily) afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a size-limited tmpfs")
    mnt = sandbox.path("disk")
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0755" % FS_BYTES, "tmpfs",
                        str(mnt)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % p.stdout.strip())
    try:
        yield mnt
    finally:
        # Lazy: a runtime still running on it (a failed test) keeps it alive
        # until the sandbox stops that runtime.
        subprocess.run(["umount", "-l", str(mnt)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def free_bytes(path: Path) -> int:
    st = os.statvfs(str(path))
    return st.f_bavail * st.f_frsize


def fill(mnt: Path, leave: int) -> list:
    """Writes filler files until about `leave` bytes are free; returns their paths."""
    files, chunk = [], b"\xa5" * (1 << 20)
    i = 0
    while free_bytes(mnt) > leave:
        f = mnt / ("filler%d" % i)
        i += 1
        with open(f, "wb") as out:
            while free_bytes(mnt) > leave:
                try:
                    out.write(chunk[:max(4096, min(len(chunk), free_bytes(mnt) - leave))])
                    out.flush()
                except OSError:
                    break
        files.append(f)
    return files


@pytest.mark.time_limit(90)
def test_disk_full_stops_cleanly_refuses_to_start_then_recovers_exactly(sandbox, small_fs, require):
    require("statemeshd", "test/fn/testfn")
    fn = sandbox.testfn()
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)], data_dir=small_fs / "data")
    cl = rt.client(timeout=10)
    filler = fill(small_fs, LEAVE_BYTES)
    load = OrderLoad(rt.ingress, threads=6).start()
    try:
        rc = rt.wait_exit(timeout=45)
    finally:
        load.stop()
    print("filled: %d acked, %d failed, codes %s, %d bytes free"
          % (load.total_acked(), sum(map(len, load.failed)), dict(load.codes), free_bytes(small_fs)))
    assert load.total_acked() > 0
    assert_clean_storage_stop(rt, rc, "No space left on device")

    # Still full: refused, with a message that says so.
    rt.start(wait=False)
    rc = rt.wait_exit(timeout=20)
    log = rt.log()
    assert rc == EXIT_STORAGE, "exit %s on a full disk; log:\n%s" % (rc, log)
    assert Runtime.READY not in log
    refusal = [ln for ln in log.splitlines() if "event=store.open_failed" in ln]
    assert refusal and "free" in refusal[0] and str(small_fs / "data") in refusal[0], log

    for f in filler:
        f.unlink()
    rt.start()
    recover_and_check(load, cl)


# ---- injected I/O errors ------------------------------------------------------------


def iofail_env(data_dir: Path, ops: str, after: int) -> dict:
    env = dict(os.environ, LD_PRELOAD=str(binary("test/libiofail.so")), IOFAIL_PATH=str(data_dir),
               IOFAIL_OPS=ops, IOFAIL_AFTER=str(after))
    # An ASan build wants its runtime first in the library list; the shim
    # only wraps libc calls and goes through whatever comes next.
    asan = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "verify_asan_link_order=0"
    return env


@pytest.mark.time_limit(90)
@pytest.mark.parametrize("ops,needle", [("fsync", "Input/output error"),
                                        ("write", "Input/output error")])
def test_injected_io_error_stops_cleanly_then_recovers_exactly(sandbox, require, ops, needle):
    require("statemeshd", "test/fn/testfn", "test/libiofail.so")
    fn = sandbox.testfn()
    data = sandbox.path("data")
    rt = sandbox.runtime(endpoints=[endpoint("test/*", fn)], data_dir=data,
                         env=iofail_env(data, ops, 300))
    cl = rt.client(timeout=10)
    load = OrderLoad(rt.ingress, threads=4).start()
    try:
        rc = rt.wait_exit(timeout=45)
    finally:
        load.stop()
    print("%s fails: %d acked, %d failed, codes %s"
          % (ops, load.total_acked(), sum(map(len, load.failed)), dict(load.codes)))
    assert "iofail: failing" in rt.log(), rt.log()[-3000:]
    assert load.total_acked() > 0
    assert_clean_storage_stop(rt, rc, needle)
    rt.env = None
    rt.start()
    recover_and_check(load, cl)


# ---- corruption and --repair ----------------------------------------------------------


def flip(path: Path, offset: int) -> None:
    b = bytearray(path.read_bytes())
    b[offset] ^= 0xFF
    path.write_bytes(bytes(b))


def store_with_queued_messages(sandbox, n: int = 40):
    """A runtime whose store holds n queued test/counter messages (no function
    server runs) in a table file; stopped. Returns (runtime, store dir)."""
    rt = sandbox.runtime(endpoints=[endpoint("test/*", "unix:" + str(sandbox.path("absent.sock")))])
    cl = rt.client(timeout=10)
    for i in range(n):
        cl.send("test/counter", "c%d" % (i % 5), i + 1)
    rt.stop()
    rt.start()          # LevelDB turns the log it replays into a table
    rt.stop()
    store = rt.data_dir / "store"
    return rt, store


def start_refused(rt: Runtime) -> str:
    rt.start(wait=False)
    rc = rt.wait_exit(timeout=20)
    log = rt.log()
    assert rc == EXIT_STORAGE, "exit %s on a corrupt store; log:\n%s" % (rc, log)
    assert Runtime.READY not in log
    print("refused:", [ln for ln in log.splitlines() if ln.startswith("statemeshd:")])
    return log


def repair(rt: Runtime) -> subprocess.CompletedProcess:
    p = subprocess.run([str(binary("statemeshd")), "--repair", "-c", str(rt.config_path)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=scaled(30))
    assert p.returncode == 0, "--repair exit %d:\n%s" % (p.returncode, p.stdout)
    assert "event=store.repaired" in p.stdout, p.stdout
    return p


@pytest.mark.time_limit(60)
def test_corrupt_table_refused_naming_the_file_then_repair(sandbox, require):
    require("statemeshd")
    rt, store = store_with_queued_messages(sandbox)
    tables = sorted(store.glob("*.ldb"))
    assert tables, sorted(p.name for p in store.iterdir())
    flip(tables[-1], 20)                    # inside the first data block
    log = start_refused(rt)
    assert "corrupt" in log and tables[-1].name in log, log
    assert "--repair" in log, log
    repair(rt)
    rt.start()
    cl = rt.client()
    assert cl.healthy()
    # What survives is LevelDB's business (docs/operations-disk.md): here the
    # one data block held everything, so the store restarts empty.
    print("after repair: %d queued of 40" % cl.queued())


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("which", ["MANIFEST", "log"])
def test_corrupt_manifest_or_log_refused_then_repair(sandbox, require, which):
    require("statemeshd")
    rt = sandbox.runtime(endpoints=[endpoint("test/*", "unix:" + str(sandbox.path("absent.sock")))])
    cl = rt.client(timeout=10)
    for i in range(40):
        cl.send("test/counter", "c%d" % (i % 5), i + 1)
    rt.kill9()              # the log still holds the writes
    store = rt.data_dir / "store"
    if which == "MANIFEST":
        victim = sorted(store.glob("MANIFEST-*"))[-1]
        flip(victim, 10)
    else:
        victim = max(store.glob("*.log"), key=lambda p: p.stat().st_size)
        assert victim.stat().st_size > 200
        flip(victim, victim.stat().st_size // 2)
    log = start_refused(rt)
    assert "corrupt" in log and victim.name in log, log
    # LevelDB 1.23's repair reads logs without checksums: the damaged record
    # may come back with its flipped byte (docs/operations-disk.md).
    repair(rt)
    rt.start()
    cl = rt.client()
    assert cl.healthy()
    print("after repair: %d queued of 40" % cl.queued())
