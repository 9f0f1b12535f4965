"""Built-in type encodings (types.proto) and user types.

The shared vectors in test/vectors/types.json (also checked by the C SDK):
``vectors`` is a list of {"typename", "value", "hex"}: encoding ``value``
gives exactly the bytes ``hex`` and decoding ``hex`` gives ``value``.
int64/float64/bool values are JSON numbers/booleans, float64 specials the
strings "NaN"/"Infinity"/"-Infinity"; string values are the text; json
values are the JSON *text* (so the bytes are that text, and the decoded value
is json.loads of it); bytes values are hex. ``invalid`` lists byte strings
that the decoder of ``typename`` must reject. Every entry is checked.
"""

import json
import math
import os
import struct

import pytest

from conftest import REPO
from statemesh import (BoolType, BytesType, FloatType, IntType, JsonType, StringType, Type,
                       TypedValue, simple_type)
from statemesh.types import builtin_type, decode_typed, infer_type, typed_value

VECTORS = os.environ.get("STATEMESH_TYPE_VECTORS",
                         os.path.join(REPO, "test", "vectors", "types.json"))


def _load_vectors():
    if not os.path.exists(VECTORS):
        return None
    with open(VECTORS, encoding="utf-8") as f:
        data = json.load(f)
    if isinstance(data, list):
        return {"vectors": data, "invalid": []}
    return data


_VECTORS = _load_vectors()
_NEEDS = pytest.mark.skipif(_VECTORS is None, reason="test/vectors/types.json is missing")


def _value(typename, value):
    """The Python value that a vector's "value" stands for."""
    if typename == "statemesh/float64" and isinstance(value, str):
        return float(value)            # "NaN", "Infinity", "-Infinity"
    if typename == "statemesh/bytes":
        return bytes.fromhex(value)
    if typename == "statemesh/json":
        return json.loads(value)
    return value


def _same(typename, got, want):
    if typename == "statemesh/float64":
        if math.isnan(want):
            return math.isnan(got)
        return struct.pack("<d", got) == struct.pack("<d", want)
    return type(got) is type(want) and got == want


def _vector_id(v):
    return "%s:%s" % (v["typename"].split("/")[1], v["hex"][:24] or "empty")


@_NEEDS
@pytest.mark.parametrize("v", (_VECTORS or {}).get("vectors", []), ids=_vector_id)
def test_shared_vector(v):
    typename, data = v["typename"], bytes.fromhex(v["hex"])
    t = builtin_type(typename)
    assert t is not None, "unknown built-in typename %r" % typename
    want = _value(typename, v["value"])
    got = t.deserialize(data)
    assert _same(typename, got, want), "%s decoded to %r, want %r" % (v["hex"], got, want)
    if typename == "statemesh/json":
        # The vector's value is the JSON text, and the text is the bytes.
        assert data == v["value"].encode("utf-8")
        assert json.loads(t.serialize(want)) == want
    else:
        assert t.serialize(want) == data, "%r encoded to %s, want %s" % (
            want, t.serialize(want).hex(), v["hex"])
    # The same through the Message and TypedValue paths.
    assert _same(typename, TypedValue(typename, data).decode(), want)


@_NEEDS
@pytest.mark.parametrize("v", (_VECTORS or {}).get("invalid", []), ids=_vector_id)
def test_shared_invalid(v):
    t = builtin_type(v["typename"])
    assert t is not None
    with pytest.raises(ValueError):
        t.deserialize(bytes.fromhex(v["hex"]))


@_NEEDS
def test_shared_vectors_cover_every_builtin():
    names = {v["typename"] for v in _VECTORS["vectors"]}
    assert names == {"statemesh/bool", "statemesh/int64", "statemesh/float64",
                     "statemesh/string", "statemesh/bytes", "statemesh/json"}


# Independent vectors written from types.proto (so the SDK is checked even
# before the shared file exists).
LOCAL = [
    (BoolType, False, "00"), (BoolType, True, "01"),
    (IntType, 0, "0000000000000000"), (IntType, 1, "0100000000000000"),
    (IntType, -1, "ffffffffffffffff"), (IntType, 256, "0001000000000000"),
    (IntType, 2 ** 63 - 1, "ffffffffffffff7f"), (IntType, -2 ** 63, "0000000000000080"),
    (IntType, 1234567890123, "cb04fb711f010000"),
    (FloatType, 0.0, "0000000000000000"), (FloatType, -0.0, "0000000000000080"),
    (FloatType, 1.0, "000000000000f03f"), (FloatType, -2.5, "00000000000004c0"),
    (FloatType, float("inf"), "000000000000f07f"), (FloatType, 0.1, "9a9999999999b93f"),
    (StringType, "", ""), (StringType, "hi", "6869"), (StringType, "é€😀", "c3a9e282acf09f9880"),
    (BytesType, b"", ""), (BytesType, b"\x00\xff", "00ff"),
    (JsonType, {"a": 1, "b": [True, None]}, "7b2261223a312c2262223a5b747275652c6e756c6c5d7d"),
    (JsonType, "é", "22c3a922"), (JsonType, 3, "33"), (JsonType, [], "5b5d"),
]


@pytest.mark.parametrize("t,value,hexs", LOCAL)
def test_local_vectors(t, value, hexs):
    data = bytes.fromhex(hexs)
    assert t.serialize(value) == data
    got = t.deserialize(data)
    assert _same(t.typename, got, value) if t is not JsonType else got == value


def test_nan_roundtrips():
    assert math.isnan(FloatType.deserialize(FloatType.serialize(float("nan"))))


@pytest.mark.parametrize("t,data", [
    (BoolType, b"\x02"), (BoolType, b""), (BoolType, b"\x00\x00"),
    (IntType, b"\x00" * 7), (IntType, b"\x00" * 9), (FloatType, b"\x00"),
    (StringType, b"\xff"), (JsonType, b"{"), (JsonType, b"\xff"),
])
def test_invalid_bytes(t, data):
    with pytest.raises(ValueError):
        t.deserialize(data)


def test_json_is_compact_utf8_and_rejects_nan():
    assert JsonType.serialize({"k": "ü", "l": [1, 2]}) == '{"k":"ü","l":[1,2]}'.encode()
    with pytest.raises(TypeError):
        JsonType.serialize(float("nan"))
    with pytest.raises(TypeError):
        JsonType.serialize(object())


def test_simple_type():
    Point = simple_type("geo/point", lambda p: struct.pack("<ii", *p),
                        lambda b: struct.unpack("<ii", b))
    assert isinstance(Point, Type) and Point.typename == "geo/point"
    assert Point.serialize((1, -1)) == struct.pack("<ii", 1, -1)
    assert Point.deserialize(struct.pack("<ii", 5, 6)) == (5, 6)
    Up = simple_type("my/up", lambda s: bytearray(s.upper(), "ascii"), lambda b: b.decode())
    assert Up.serialize("abc") == b"ABC"
    Bad = simple_type("my/bad", lambda s: "not bytes", lambda b: b)
    with pytest.raises(TypeError):
        Bad.serialize("x")
    for bad in ("statemesh/mine", "noslash", "", None):
        with pytest.raises((ValueError, TypeError)):
            simple_type(bad, bytes, bytes)
    with pytest.raises(AttributeError):
        Point.typename = "x/y"


def test_infer_and_typed_value():
    assert infer_type(True) is BoolType and infer_type(3) is IntType
    assert infer_type(1.0) is FloatType and infer_type("s") is StringType
    assert infer_type(b"") is BytesType and infer_type({}) is JsonType
    assert infer_type([]) is JsonType
    with pytest.raises(TypeError):
        infer_type(None)
    assert typed_value(5) == TypedValue("statemesh/int64", struct.pack("<q", 5))
    assert typed_value("x", StringType) == TypedValue("statemesh/string", b"x")
    tv = TypedValue("a/b", b"zz")
    assert typed_value(tv) is tv
    assert decode_typed("statemesh/int64", struct.pack("<q", 9)) == 9
    assert decode_typed("a/b", b"zz") == tv
    assert tv.decode(simple_type("a/b", bytes, bytes)) == b"zz"
    with pytest.raises(TypeError):
        tv.decode()
    assert TypedValue("statemesh/string", b"ok").decode() == "ok"
