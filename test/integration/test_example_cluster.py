"""
`make run EXAMPLE=cluster` (examples/cluster/run.sh): a three-member etcd,
the greeter and three statemeshd nodes, one database. Every node answers for
every address, `cluster status` shows three ranges, SIGTERM stops every
process (the nodes leave etcd before it stops), and a second start on the
same data brings the same nodes back with their state.
"""

import os
import signal
import socket
import subprocess

import pytest

from harness import REPO, free_port, run_cli, wait_until

pytestmark = pytest.mark.needs("statemesh", "statemeshd", "examples/greeter/greeter")


def _free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _ports():
    """A base ingress port with the next two free, and an etcd base with
    +0..2 (clients) and +10..12 (peers) free."""
    while True:
        ing, etcd = free_port(), free_port()
        if ing < 60000 and etcd < 60000 and all(_free(p) for p in (ing + 1, ing + 2)) and \
                all(_free(etcd + d) for d in (1, 2, 10, 11, 12)) and abs(ing - etcd) > 20:
            return ing, etcd


def _start(tmp, ing, etcd):
    env = dict(os.environ, STATEMESH_INGRESS="127.0.0.1:%d" % ing, STATEMESH_ETCD_PORT=str(etcd),
               STATEMESH_DATA_DIR=str(tmp / "data"), STATEMESH_SOCK_DIR=str(tmp))
    log = open(tmp / "run.log", "a")
    return subprocess.Popen([str(REPO / "examples/cluster/run.sh")], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(p):
    os.kill(p.pid, signal.SIGTERM)          # the script alone: it stops the others in order
    try:
        return p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        raise


def _left_over(tmp):
    r = subprocess.run(["pgrep", "-f", str(tmp / "data")], capture_output=True, text=True)
    return r.stdout.split()


@pytest.mark.skipif(not os.path.exists("/usr/bin/etcd"), reason="etcd not installed")
def test_cluster_example_runs_stops_and_comes_back(tmp_path):
    ing, etcd = _ports()
    nodes = ["127.0.0.1:%d" % (ing + i) for i in range(3)]
    p = _start(tmp_path, ing, etcd)
    try:
        for i, addr in enumerate(nodes):
            wait_until(lambda: run_cli(["call", "example/user", "alice", "hi"], address=addr,
                                       timeout=10).returncode == 0, timeout=60,
                       message="node %d answers" % i)
        r = run_cli(["call", "example/user", "alice", "hi"], address=nodes[2], timeout=10)
        assert r.stdout.strip() == "Hello alice, you are visitor #4", r.stdout + r.stderr
        r = run_cli(["cluster", "status"], address=nodes[1], timeout=10)
        assert r.returncode == 0, r.stderr
        assert r.stdout.count("\nrange ") == 3 and r.stdout.count(" alive") == 3, r.stdout
        assert "try: build/statemesh --address %s" % nodes[0] in (tmp_path / "run.log").read_text()
    finally:
        rc = _stop(p)
    assert rc == 143
    assert _left_over(tmp_path) == []
    log = (tmp_path / "run.log").read_text()
    assert log.count("event=cluster.left") == 3, log[-3000:]
    # The same data: the same nodes, their key groups and their state.
    p = _start(tmp_path, ing, etcd)
    try:
        wait_until(lambda: run_cli(["call", "example/user", "alice", "hi"], address=nodes[1],
                                   timeout=10).returncode == 0, timeout=60,
                   message="the cluster is back")
        r = run_cli(["call", "example/user", "alice", "hi"], address=nodes[0], timeout=10)
        assert r.stdout.strip() == "Hello alice, you are visitor #6", r.stdout + r.stderr
    finally:
        _stop(p)
    assert _left_over(tmp_path) == []
