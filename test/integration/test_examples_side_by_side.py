"""
Two copies of the greeter example run side by side on one machine, each with
its own ingress port, socket directory and data dir (STATEMESH_INGRESS,
STATEMESH_SOCK_DIR, STATEMESH_DATA_DIR), and the pid in the data dir's lock
file kills exactly one of them.
"""

import os
import signal
import subprocess
import time

import pytest

from harness import REPO, free_port, run_cli, wait_until

pytestmark = pytest.mark.needs("statemesh", "statemeshd", "examples/greeter/greeter")


def start(tmp, name):
    port = free_port()
    env = dict(os.environ, STATEMESH_INGRESS="127.0.0.1:%d" % port,
               STATEMESH_SOCK_DIR=str(tmp / (name + "-sock")),
               STATEMESH_DATA_DIR=str(tmp / (name + "-data")))
    (tmp / (name + "-sock")).mkdir()
    (tmp / (name + "-data")).mkdir()
    log = open(tmp / (name + ".log"), "w")
    p = subprocess.Popen([str(REPO / "examples/greeter/run.sh")], env=env, stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True)
    return p, "127.0.0.1:%d" % port, tmp / (name + "-data")


def test_two_greeters_side_by_side(tmp_path):
    a, addr_a, data_a = start(tmp_path, "a")
    b, addr_b, data_b = start(tmp_path, "b")
    try:
        for addr in (addr_a, addr_b):
            wait_until(lambda: run_cli(["call", "example/user", "alice", "hi"], address=addr,
                                       timeout=10).returncode == 0, timeout=30,
                       message="greeter at %s answers" % addr)
        assert "--address %s" % addr_a in (tmp_path / "a.log").read_text()
        pid_a = int((data_a / "statemeshd.lock").read_text().split()[0])
        os.kill(pid_a, signal.SIGKILL)                 # exactly runtime a
        wait_until(lambda: run_cli(["stats"], address=addr_a, timeout=5).returncode != 0,
                   timeout=10, message="runtime a gone")
        p = run_cli(["call", "example/user", "bob", "hi"], address=addr_b, timeout=10)
        assert p.returncode == 0, p.stderr                # b is untouched
    finally:
        for p in (a, b):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in (a, b):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
