"""
Savepoints (docs/savepoints.md): `statemesh savepoint create` against the real
runtime and LevelDB, `verify` and `inspect` offline.
"""

import json
import os

from harness import endpoint, run_cli, wait_until


def cli(rt, *args, timeout=60):
    return run_cli([str(a) for a in args], address=rt.ingress, timeout=timeout)


def offline(*args, timeout=60):
    return run_cli([str(a) for a in args], address="127.0.0.1:1", timeout=timeout)


def start(sandbox):
    rt = sandbox.runtime([endpoint("test/*", sandbox.testfn())])
    return rt, rt.client()


def test_create_verify_inspect(sandbox):
    rt, c = start(sandbox)
    for i in range(300):
        c.send("test/counter", "k%d" % i, i + 1)
    c.wait_drained()
    sp = sandbox.path("sp1")
    p = cli(rt, "savepoint", "create", sp, "--ranges", 4, "--json")
    assert p.returncode == 0, p.stderr
    m = json.loads(p.stdout)
    assert m["format"] == "statemesh-savepoint" and m["key_groups"] == 4096
    names = sorted(f["name"] for f in m["files"])
    assert names == sorted(["kg-0000-1023.smsp", "kg-1024-2047.smsp", "kg-2048-3071.smsp",
                            "kg-3072-4095.smsp", "node.smsp"])
    assert sorted(os.listdir(sp)) == sorted(names + ["MANIFEST.json"])
    assert not [d for d in os.listdir(os.path.dirname(sp)) if ".partial-" in d]
    assert "event=savepoint.done" in rt.log()

    v = offline("savepoint", "verify", sp)
    assert v.returncode == 0 and v.stdout.startswith("ok "), v.stderr
    i = offline("savepoint", "inspect", sp, "--json")
    assert i.returncode == 0, i.stderr
    info = json.loads(i.stdout)
    assert info["types"]["test/counter"]["addresses_with_state"] == 300
    assert info["totals"]["addresses_with_state"] == 300
    assert info["records"] == m["records"]

    # The directory exists now: a second create is refused, nothing changes.
    again = cli(rt, "savepoint", "create", sp)
    assert again.returncode == 1 and "already exists" in again.stderr
    # A relative path is the CLI's working directory's; no parent: refused.
    missing = cli(rt, "savepoint", "create", sandbox.path("nope/sp"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_damage_is_found_with_file_and_offset(sandbox):
    rt, c = start(sandbox)
    for i in range(2000):
        c.send("test/counter", "d%d" % i, 1)
    c.wait_drained()
    sp = sandbox.path("sp2")
    assert cli(rt, "savepoint", "create", sp, "--ranges", 1).returncode == 0
    f = os.path.join(sp, "kg-0000-4095.smsp")
    data = bytearray(open(f, "rb").read())
    data[5000] ^= 0x40
    open(f, "wb").write(bytes(data))
    v = offline("savepoint", "verify", sp)
    assert v.returncode == 1
    assert "kg-0000-4095.smsp: offset " in v.stderr and "checksum mismatch" in v.stderr, v.stderr
    i = offline("savepoint", "inspect", sp)
    assert i.returncode == 1 and "checksum mismatch" in i.stderr
    os.unlink(os.path.join(sp, "MANIFEST.json"))
    v = offline("savepoint", "verify", sp)
    assert v.returncode == 1 and "not a complete savepoint" in v.stderr
