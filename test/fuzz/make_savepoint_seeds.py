#!/usr/bin/env python3
"""Writes the seeds of fuzz_savepoint (test/fuzz/corpus/savepoint/) from a
real savepoint directory written with --ranges 1:

    python3 test/fuzz/make_savepoint_seeds.py SAVEPOINT_DIR

Input layout (fuzz_savepoint.c): u8 flags, u32le manifest length, manifest,
u32le data length, data (kg-0000-4095.smsp), rest (node.smsp). Every seed
is written with flags 0 (checksums as they are) and 1 (the harness fixes
them up). Regression inputs (regress-*) are left alone.
"""
import hashlib
import os
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "savepoint")


def pack(flags, manifest, data, node):
    return (bytes([flags]) + struct.pack("<I", len(manifest)) + manifest +
            struct.pack("<I", len(data)) + data + node)


def main():
    sp = sys.argv[1]
    manifest = open(os.path.join(sp, "MANIFEST.json"), "rb").read()
    data = open(os.path.join(sp, "kg-0000-4095.smsp"), "rb").read()
    node = open(os.path.join(sp, "node.smsp"), "rb").read()
    os.makedirs(OUT, exist_ok=True)
    seeds = {"full": (manifest, data, node),
             "no-node": (manifest, data, b""),
             "empty-manifest": (b"{}", data, node)}
    # A small file of one block: the first block cut out of the real one.
    blen = struct.unpack_from("<I", data, 16)[0]
    one = data[:24 + blen] + struct.pack("<II", 0, 0) + b"\0" * 8
    seeds["one-block"] = (manifest, one, node)
    for name, (m, d, n) in seeds.items():
        for flags in (0, 1):
            blob = pack(flags, m, d, n)
            with open(os.path.join(OUT, "seed-%s-%d" % (name, flags)), "wb") as f:
                f.write(blob)
    print("wrote %d seeds to %s (sha256 of the data file %s)" %
          (2 * len(seeds), OUT, hashlib.sha256(data).hexdigest()[:12]))


if __name__ == "__main__":
    main()
