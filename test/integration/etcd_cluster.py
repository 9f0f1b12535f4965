"""
A real 3-member etcd cluster for tests (docs/cluster.md).

  etcd_cluster   pytest fixture (module scope): three `etcd` processes on
                 127.0.0.1 with free ports and temp data dirs, fast elections
                 (--heartbeat-interval 50 --election-timeout 500), healthy
                 before the test starts, stopped afterwards.

EtcdCluster offers endpoints (for runtime/etcd.c: "http://127.0.0.1:P,..."),
kill(i) (kill -9), restart(i) (same data dir), leader() (index of the member
that leads, by `etcdctl endpoint status`) and wait_healthy().

The fixture skips the test with a clear message when the `etcd` binary is
absent, unless STATEMESH_REQUIRE_ETCD is set (CI: ci/install-deps.sh installs
etcd-server and etcd-client), in which case the test fails instead.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import List, Optional

import pytest

from harness import _kill9, _track, _untrack, free_port, scaled


class EtcdMember:
    def __init__(self, name: str, base: Path):
        self.name = name
        self.client_port = free_port()
        self.peer_port = free_port()
        self.data_dir = base / name
        self.log_path = base / (name + ".log")
        self.proc: Optional[subprocess.Popen] = None

    @property
    def client_url(self) -> str:
        return "http://127.0.0.1:%d" % self.client_port

    @property
    def peer_url(self) -> str:
        return "http://127.0.0.1:%d" % self.peer_port


class EtcdCluster:
    def __init__(self, base: Path, n: int = 3):
        self.base = base
        self.members = [EtcdMember("m%d" % i, base) for i in range(n)]
        self.initial = ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)

    @property
    def endpoints(self) -> str:
        return ",".join(m.client_url for m in self.members)

    def start_member(self, i: int) -> None:
        m = self.members[i]
        log = open(m.log_path, "ab")
        m.proc = subprocess.Popen(
            [shutil.which("etcd") or "etcd", "--name", m.name, "--data-dir", str(m.data_dir),
             "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
             "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
             "--initial-cluster", self.initial, "--initial-cluster-state", "new",
             "--initial-cluster-token", "statemesh-test",
             "--heartbeat-interval", "50", "--election-timeout", "500",
             "--logger", "zap", "--log-level", "warn"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        _track(m.proc)

    def start(self) -> None:
        for i in range(len(self.members)):
            self.start_member(i)
        self.wait_healthy()

    def healthy(self, i: int) -> bool:
        m = self.members[i]
        if m.proc is None or m.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(m.client_url + "/health", timeout=1) as r:
                return json.loads(r.read().decode()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            if all(self.healthy(i) for i in range(len(self.members))
                   if self.members[i].proc is not None):
                return
            time.sleep(0.1)
        raise AssertionError("etcd cluster not healthy within %.0f s:\n%s" % (timeout, self.logs()))

    def kill(self, i: int) -> None:
        """kill -9 of member i."""
        m = self.members[i]
        if m.proc is not None:
            _kill9(m.proc)
            m.proc = None

    def restart(self, i: int) -> None:
        self.kill(i)
        self.start_member(i)
        self.wait_healthy()

    def leader(self, timeout: float = 10.0) -> int:
        """Index of the current leader (asks every live member)."""
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            ids = {}
            leader_id = None
            for i, m in enumerate(self.members):
                if m.proc is None:
                    continue
                r = subprocess.run([shutil.which("etcdctl") or "etcdctl", "--endpoints", m.client_url,
                                    "endpoint", "status", "-w", "json"],
                                   capture_output=True, text=True, timeout=10,
                                   env=dict(os.environ, ETCDCTL_API="3"))
                if r.returncode != 0:
                    continue
                st = json.loads(r.stdout)[0]["Status"]
                ids[st["header"]["member_id"]] = i
                if st.get("leader"):
                    leader_id = st["leader"]
            if leader_id in ids:
                return ids[leader_id]
            time.sleep(0.1)
        raise AssertionError("no etcd leader within %.0f s" % timeout)

    def stop(self) -> None:
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                m.proc.send_signal(signal.SIGTERM)
        for m in self.members:
            if m.proc is not None:
                try:
                    m.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    m.proc.kill()
                    m.proc.wait(timeout=10)
                _untrack(m.proc)
                m.proc = None

    def logs(self) -> str:
        out = []
        for m in self.members:
            try:
                out.append("--- %s\n%s" % (m.name, m.log_path.read_text(errors="replace")[-3000:]))
            except OSError:
                pass
        return "\n".join(out)


def etcd_available() -> bool:
    return shutil.which("etcd") is not None and shutil.which("etcdctl") is not None


@pytest.fixture(scope="module")
def etcd_cluster():
    if not etcd_available():
        msg = ("etcd/etcdctl not installed (Debian: etcd-server, etcd-client; "
               "ci/install-deps.sh installs them)")
        if os.environ.get("STATEMESH_REQUIRE_ETCD"):
            pytest.fail(msg + " and STATEMESH_REQUIRE_ETCD is set")
        pytest.skip(msg)
    base = Path(tempfile.mkdtemp(prefix="sm-etcd-"))
    cluster = EtcdCluster(base)
    ok = False
    try:
        cluster.start()
        yield cluster
        ok = True
    finally:
        cluster.stop()
        if ok:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print("etcd logs kept in %s" % base)
