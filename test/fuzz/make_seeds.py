#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz harnesses into test/fuzz/corpus/NAME/.

Run from the repository root: python3 test/fuzz/make_seeds.py
The binary seeds (storage records, FromFunction answers) are protobuf
encoded by hand here, so the script needs nothing beyond python3. Re-running
it rewrites the same files; regression inputs kept in the corpus
(crash-*, regress-*) are left alone.
"""
import os
import shutil
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


# ---- a minimal protobuf encoder ---------------------------------------------
def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(num, v):
    return varint(num << 3) + varint(v)


def f_bytes(num, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(num << 3 | 2) + varint(len(b)) + b


def address(t, i):
    return f_bytes(1, t) + f_bytes(2, i)


def typed(tn, v):
    return f_bytes(1, tn) + f_bytes(2, v)


def int64_value(n):
    return struct.pack(">q", n)  # value bytes are opaque to the runtime


def write(name, fname, data):
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, fname), "wb") as f:
        f.write(data)


# ---- storage: [klen:u8][key][vlen:u16be][value]... ----------------------------
def rec(key, val):
    return bytes([len(key)]) + key + struct.pack(">H", len(val)) + val


def addr_key(tag, t, i, tail=b""):
    return tag.encode() + b"\x01\x02" + t.encode() + b"\0" + i.encode() + b"\0" + tail


def storage():
    arg = typed("statemesh/string", "hi")
    msg = f_bytes(2, arg)
    msg_caller = f_bytes(1, address("fz/b", "x")) + f_bytes(2, arg) + f_bytes(3, "rk")
    state = f_bytes(1, typed("statemesh/int64", int64_value(3))) + f_varint(2, 1)
    delayed = (f_bytes(1, address("fz/a", "id1")) + f_bytes(2, address("fz/b", "x")) +
               f_bytes(3, arg) + f_bytes(4, "tok"))
    egress = f_varint(1, 1700000000000) + f_bytes(2, address("fz/a", "id1")) + f_bytes(3, arg)
    idem_send = f_varint(1, 4102444800000)
    idem_call = f_varint(1, 1) + f_varint(2, 1) + f_varint(3, 1) + f_bytes(4, arg)
    dead = (f_bytes(1, address("fz/a", "id1")) + f_bytes(2, address("fz/b", "x")) +
            f_bytes(3, arg) + f_bytes(4, "rk") + f_bytes(5, "function failed: boom") +
            f_varint(6, 3) + f_varint(7, 1700000000000))
    u64 = lambda n: struct.pack(">Q", n)
    write("storage", "messages", rec(addr_key("M", "fz/a", "id1", u64(1)), msg) +
          rec(addr_key("M", "fz/a", "id1", u64(2)), msg_caller) +
          rec(addr_key("M", "other/t", "z", u64(3)), msg))
    write("storage", "state_expired", rec(addr_key("S", "fz/a", "id1", b"count"), state))
    write("storage", "delayed", rec(b"D" + u64(1) + u64(9), delayed) +
          rec(b"D" + u64(2) + u64(10), b""))
    write("storage", "egress", rec(b"Eout\0" + u64(1), egress) + rec(b"Eout\0" + u64(2), egress) +
          rec(b"Eout\0" + u64(3), egress) + rec(b"Xegress.out.next", u64(4)))
    write("storage", "idem", rec(b"Ifz", idem_call) + rec(b"Iold", idem_send))
    write("storage", "deadletters", rec(b"L" + u64(7), dead) + rec(b"L" + u64(8), b"\xff"))
    write("storage", "mixed", rec(addr_key("M", "fz/a", "id1", u64(5)), msg) +
          rec(addr_key("S", "fz/a", "id2", b"seen"), state) + rec(b"D" + u64(0) + u64(6), delayed) +
          rec(b"L" + u64(11), dead) + rec(b"Ifz", idem_send) + rec(b"Eout\0" + u64(9), egress))
    write("storage", "bad_keys", rec(b"M\x00", msg) + rec(b"D\x00\x01", b"") + rec(b"L", b"") +
          rec(b"S\x00\x00a", state))


# ---- answer: FromFunction for batch_id 1 << 32 --------------------------------
def storage_and_answers():
    storage()
    bid = 1 << 32
    i64 = typed("statemesh/int64", int64_value(1))

    def resp(field, body):
        return f_bytes(1, f_varint(1, bid) + f_bytes(field, body))

    result = (f_bytes(1, f_varint(1, 0) + f_bytes(2, "count") + f_bytes(3, i64)) +
              f_bytes(1, f_varint(1, 1) + f_bytes(2, "seen")) +
              f_bytes(2, f_bytes(1, address("fz/b", "y")) + f_bytes(2, typed("fz/t", "v")) +
                      f_varint(3, 1)) +
              f_bytes(3, f_varint(1, 1) + f_bytes(2, typed("statemesh/string", "ok"))) +
              f_bytes(3, f_varint(1, 2) + f_bytes(2, typed("statemesh/string", "done"))) +
              f_bytes(4, f_bytes(1, address("fz/a", "id1")) + f_bytes(2, typed("fz/t", "later")) +
                      f_varint(3, 1000) + f_bytes(4, "tok")) +
              f_bytes(5, f_bytes(1, "tok0")) +
              f_bytes(6, f_bytes(1, "out") + f_bytes(2, typed("fz/receipt", "r1"))))
    write("answer", "result_full", resp(2, result))
    write("answer", "result_empty", resp(2, b""))
    write("answer", "result_state", resp(2, f_bytes(1, f_varint(1, 0) + f_bytes(2, "count") +
                                                   f_bytes(3, i64))))
    write("answer", "incomplete", resp(3, f_bytes(1, f_bytes(1, "extra") + f_bytes(2, "fz/x") +
                                                  f_varint(3, 500))))
    write("answer", "failure", resp(4, f_bytes(1, "boom")))
    write("answer", "nul_in_id", resp(2, f_bytes(2, f_bytes(1, address("fz/b", "a\0b")) +
                                                 f_bytes(2, typed("fz/t", "v")))))
    write("answer", "unknown_batch", f_bytes(1, f_varint(1, 12345) + f_bytes(4, f_bytes(1, "x"))))
    write("answer", "two_responses", resp(4, f_bytes(1, "a")) + resp(2, b""))


# ---- text corpora ----------------------------------------------------------
def texts():
    js = {
        "object": '{"cell": "c12", "seats": 3, "ok": true, "n": -0, "x": null}',
        "array": '[1, 2.5e-3, -7, "a\\u00e9\\ud83d\\ude00", [], {}, [[[]]]]',
        "escapes": '"\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041"',
        "numbers": '[0, -1, 9223372036854775807, -9223372036854775808, 1e308, 1E-400, 12.5]',
        "utf8": '{"id": "h\u00e9llo \u4e16\u754c", "type": "fz/a"}',
    }
    for k, v in js.items():
        write("json", k, v)
    vec = os.path.join(ROOT, "..", "..", "vectors", "types.json")
    if os.path.exists(vec):
        shutil.copy(vec, os.path.join(ROOT, "json", "vectors_types.json"))

    write("cli_stdin", "json_lines", b"\x00" +
          b'{"type":"fz/a","id":"1","value":{"a":1}}\n'
          b'  {"type":"fz/a","id":"2","value":[1,2],"key":"k1","delay_ms":1000}\r\n'
          b'\n'
          b'{"type":"fz/a","id":"3","value":"x","typename":"string"}\n'
          b'{"type":"fz/a","id":"4","value":42,"typename":"int64"}\n'
          b'{"type":"fz/a","id":"5","value":1.5,"typename":"float64"}\n'
          b'{"type":"fz/a","id":"6","value":true,"typename":"bool"}\n'
          b'{"type":"fz/a","id":"7","value":"00ff10","typename":"bytes"}\n'
          b'{"type":"fz/a","id":"8","value":"abcd","typename":"ns/custom"}\n')
    write("cli_stdin", "string_default", b"\x01" + b'{"type":"fz/a","id":"\\u00e9","value":"hi"}\n')
    write("cli_stdin", "bad_lines", b"\x05" + b'not json\n[1]\n{"type":1,"id":"a","value":"00"}\n'
          b'{"type":"a","id":"b"}\n{"type":"a","id":"b","value":"0g"}\n'
          b'{"type":"a","id":"b","value":"00","bogus":1}\n{"type":"a","type":"b"}\n')

    cfgdir = os.path.join(ROOT, "..", "..", "unit", "configs")
    for f in sorted(os.listdir(cfgdir)):
        if f.endswith(".conf") or f.endswith(".inc"):
            shutil.copy(os.path.join(cfgdir, f), os.path.join(ROOT, "config", f))
    write("config", "vars.conf",
          'runtime = { data_dir = "${FZ_EMPTY:-./d}"; ingress = "${FZ_HOST}:${FZ_PORT}";\n'
          '            log_level = "${FZ_UNSET:-warn}"; };\n'
          'endpoints = ( { functions = "fz/*"; mode = "remote"; target = "dns:///${FZ_HOST}:1"; },\n'
          '              { functions = "em/*"; mode = "embedded"; library = "lib/libfz.so"; } );\n'
          '@include "inc.conf"\n')


# ---- ingress requests: first byte = method (fuzz_ingress.c methods[]) --------
def ingress():
    SEND, CALL, STREAM, SUB, GETSTATE, STATS, DLLIST, DLREPLAY, DLDROP, INSPECT, STUCK, \
        SKIP, RESUME, HEALTH = range(14)

    def req(name, method, body):
        write("ingress", name, bytes([method]) + body)

    arg = typed("statemesh/string", "hi")
    tgt = address("fz/a", "id1")
    req("send", SEND, f_bytes(1, tgt) + f_bytes(2, arg))
    req("send_key_delay", SEND, f_bytes(1, tgt) + f_bytes(2, arg) + f_bytes(3, "k1")
        + f_varint(4, 1000))
    req("send_bad_utf8", SEND, f_bytes(1, address("fz/a", b"\xff")) + f_bytes(2, arg))
    req("send_nul_id", SEND, f_bytes(1, address("fz/a", b"a\x00b")) + f_bytes(2, arg))
    req("send_no_target", SEND, f_bytes(2, arg))
    req("send_bad_type", SEND, f_bytes(1, address("nons", "x")) + f_bytes(2, arg))
    req("send_far_delay", SEND, f_bytes(1, tgt) + f_bytes(2, arg) + f_varint(4, 1 << 40))
    req("call", CALL, f_bytes(1, tgt) + f_bytes(2, arg))
    req("call_key", CALL, f_bytes(1, tgt) + f_bytes(2, arg) + f_bytes(3, "k2"))

    def smsg(seq, t, a, key=None, delay=0):
        b = f_varint(1, seq) + f_bytes(2, t) + f_bytes(3, a)
        if key:
            b += f_bytes(4, key)
        if delay:
            b += f_varint(5, delay)
        return f_bytes(1, b)
    req("stream", STREAM, smsg(1, tgt, arg) + smsg(2, address("fz/b", "x"), arg, "k3")
        + smsg(3, tgt, arg, delay=500))
    req("stream_bad_seq", STREAM, smsg(2, tgt, arg) + smsg(2, tgt, arg))
    req("stream_bad_msg", STREAM, smsg(1, address("fz/a", ""), arg) + smsg(2, tgt, typed("", "")))
    req("subscribe_earliest", SUB, f_bytes(1, "out") + f_varint(2, 1))
    req("subscribe_offset", SUB, f_bytes(1, "out") + f_varint(3, 2) + f_varint(4, 1))
    req("subscribe_unknown", SUB, f_bytes(1, "nope"))
    req("getstate", GETSTATE, f_bytes(1, address("fz/a", "p")))
    req("getstate_name", GETSTATE, f_bytes(1, address("fz/a", "p")) + f_bytes(2, "count"))
    req("getstate_bad_name", GETSTATE, f_bytes(1, address("fz/a", "p")) + f_bytes(2, "a/b"))
    req("stats", STATS, b"")
    req("dl_list", DLLIST, b"")
    req("dl_list_type", DLLIST, f_bytes(1, "fz/b") + f_varint(2, 0) + f_varint(3, 1))
    req("dl_replay_all", DLREPLAY, f_varint(2, 1))
    req("dl_replay_ids", DLREPLAY, f_bytes(1, varint(1) + varint(2) + varint(99)))
    req("dl_drop_type", DLDROP, f_varint(2, 1) + f_bytes(3, "fz/a"))
    req("dl_drop_id", DLDROP, f_varint(1, 2))
    req("inspect_paused", INSPECT, f_bytes(1, address("fz/a", "p")))
    req("inspect_queued", INSPECT, f_bytes(1, address("fz/a", "q")))
    req("list_stuck", STUCK, f_bytes(1, "fz/a") + f_varint(2, 5))
    req("skip", SKIP, f_bytes(1, address("fz/a", "p")))
    req("skip_queued", SKIP, f_bytes(1, address("fz/a", "q")))
    req("resume", RESUME, f_bytes(1, address("fz/a", "p")))
    req("resume_none", RESUME, f_bytes(1, address("fz/zz", "p")))
    req("health", HEALTH, f_bytes(1, "statemesh.v1.Admin"))
    req("health_unknown", HEALTH, f_bytes(1, "x"))


if __name__ == "__main__":
    os.makedirs(os.path.join(ROOT, "config"), exist_ok=True)
    storage_and_answers()
    texts()
    ingress()
