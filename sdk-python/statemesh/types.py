"""Typed values: the built-in statemesh types and user-defined types.

Every message, state value and reply is a *typed value*: a typename plus
bytes. The built-in typenames are shared by every SDK and their encodings are
fixed by protocol/statemesh/v1/types.proto (and checked against the shared
vectors in test/vectors/types.json):

    ===================  =====================================================
    statemesh/bool       1 byte: 0x00 = False, 0x01 = True (anything else is
                         invalid)
    statemesh/int64      8 bytes, two's complement, little-endian
    statemesh/float64    8 bytes, IEEE-754 binary64, little-endian
    statemesh/string     UTF-8 text, no terminator
    statemesh/bytes      the bytes themselves
    statemesh/json       UTF-8 JSON text (RFC 8259), no terminator; written
                         compact (no spaces) with non-ASCII kept as UTF-8
    ===================  =====================================================

Any other typename is a user type, made with :func:`simple_type`.
"""

import json
import re
import struct

__all__ = [
    "Type", "TypedValue", "simple_type",
    "BoolType", "IntType", "FloatType", "StringType", "BytesType", "JsonType",
    "typed_value", "decode_typed", "builtin_type",
]

_TYPENAME_RE = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+\Z")


def _len_varint(n):
    # Protobuf varint; used for the pre-encoded TypedValue typename field.
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class Type:
    """A statemesh type: a typename and how Python values map to bytes.

    ``serialize(value) -> bytes`` raises TypeError/ValueError for a value of
    the wrong kind; ``deserialize(bytes) -> value`` raises ValueError for
    malformed bytes. Instances are immutable and shared.
    """

    # _py/_fast: for built-in types, the Python class whose values a C-level
    # callable serializes directly (the hot path); None for user types.
    # _cache: encoded-prefix cache of the SDK's hot path (see function.py).
    __slots__ = ("typename", "_tnb", "_tv_prefix", "_ser", "_deser", "_py", "_fast", "_cache")

    def __init__(self, typename, serialize, deserialize):
        if not isinstance(typename, str) or not _TYPENAME_RE.match(typename):
            raise ValueError(
                "typename must look like 'namespace/name', got %r" % (typename,))
        tnb = typename.encode("utf-8")
        object.__setattr__(self, "typename", typename)
        object.__setattr__(self, "_tnb", tnb)
        # TypedValue field 1 (typename), pre-encoded.
        object.__setattr__(self, "_tv_prefix", b"\x0a" + _len_varint(len(tnb)) + tnb)
        object.__setattr__(self, "_ser", serialize)
        object.__setattr__(self, "_deser", deserialize)
        object.__setattr__(self, "_py", None)
        object.__setattr__(self, "_fast", None)
        object.__setattr__(self, "_cache", {})

    def __setattr__(self, name, value):
        raise AttributeError("Type objects are immutable")

    def serialize(self, value):
        """Python value -> bytes (raises TypeError/ValueError on a wrong kind)."""
        return self._ser(value)

    def deserialize(self, data):
        """bytes -> Python value (raises ValueError on malformed bytes)."""
        return self._deser(data)

    def __repr__(self):
        return "<statemesh type %s>" % self.typename

    def __reduce__(self):
        b = _BUILTIN.get(self._tnb)
        if b is self:
            return (builtin_type, (self.typename,))
        raise TypeError("user types cannot be pickled")


class TypedValue:
    """A raw typed value: ``typename`` (str) and ``value`` (bytes)."""

    __slots__ = ("typename", "value")

    def __init__(self, typename, value=b""):
        self.typename = typename
        self.value = bytes(value)

    def decode(self, type=None):
        """The Python value: with ``type`` (a :class:`Type`) if given, else by
        the built-in typename. Raises TypeError for an unknown user typename
        without ``type``, or when ``type`` does not match."""
        if type is not None:
            if type.typename != self.typename:
                raise TypeError("value is %s, not %s" % (self.typename, type.typename))
            return type._deser(self.value)
        t = _BUILTIN.get(self.typename.encode("utf-8"))
        if t is None:
            raise TypeError("%s is not a built-in type; pass type=" % self.typename)
        return t._deser(self.value)

    def __eq__(self, other):
        if not isinstance(other, TypedValue):
            return NotImplemented
        return self.typename == other.typename and self.value == other.value

    def __hash__(self):
        return hash((self.typename, self.value))

    def __repr__(self):
        return "TypedValue(%r, %r)" % (self.typename, self.value)


# ---- built-in types ---------------------------------------------------------

_pack_q = struct.Struct("<q").pack
_unpack_q = struct.Struct("<q").unpack
_pack_d = struct.Struct("<d").pack
_unpack_d = struct.Struct("<d").unpack


def _kind_error(typename, value):
    return TypeError("%s cannot hold a value of type %s (%r)"
                     % (typename, type(value).__name__, _short(value)))


def _short(value):
    r = repr(value)
    return r if len(r) <= 60 else r[:57] + "..."


def _ser_bool(v):
    if v is True:
        return b"\x01"
    if v is False:
        return b"\x00"
    raise _kind_error("statemesh/bool", v)


def _deser_bool(b):
    if b == b"\x01":
        return True
    if b == b"\x00":
        return False
    raise ValueError("statemesh/bool must be one byte 0x00 or 0x01, got %r" % (bytes(b[:16]),))


def _ser_int(v):
    if type(v) is not int and (not isinstance(v, int) or isinstance(v, bool)):
        raise _kind_error("statemesh/int64", v)
    try:
        return _pack_q(v)
    except struct.error:
        raise OverflowError("%d does not fit statemesh/int64" % v) from None


def _deser_int(b):
    if len(b) != 8:
        raise ValueError("statemesh/int64 must be 8 bytes, got %d" % len(b))
    return _unpack_q(b)[0]


def _ser_float(v):
    t = type(v)
    if t is float:
        return _pack_d(v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return _pack_d(float(v))
    raise _kind_error("statemesh/float64", v)


def _deser_float(b):
    if len(b) != 8:
        raise ValueError("statemesh/float64 must be 8 bytes, got %d" % len(b))
    return _unpack_d(b)[0]


def _ser_str(v):
    if type(v) is not str and not isinstance(v, str):
        raise _kind_error("statemesh/string", v)
    return v.encode("utf-8")


def _deser_str(b):
    return bytes(b).decode("utf-8")


def _ser_bytes(v):
    if type(v) is bytes:
        return v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    raise _kind_error("statemesh/bytes", v)


def _deser_bytes(b):
    return bytes(b)


_json_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                               allow_nan=False).encode


def _ser_json(v):
    try:
        return _json_dumps(v).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise TypeError("statemesh/json cannot hold %r: %s" % (_short(v), e)) from None


def _deser_json(b):
    return json.loads(bytes(b).decode("utf-8"))


BoolType = Type("statemesh/bool", _ser_bool, _deser_bool)
IntType = Type("statemesh/int64", _ser_int, _deser_int)
FloatType = Type("statemesh/float64", _ser_float, _deser_float)
StringType = Type("statemesh/string", _ser_str, _deser_str)
BytesType = Type("statemesh/bytes", _ser_bytes, _deser_bytes)
JsonType = Type("statemesh/json", _ser_json, _deser_json)

_BUILTIN = {t._tnb: t for t in (BoolType, IntType, FloatType, StringType, BytesType, JsonType)}

for _t, _py, _fast in ((IntType, int, _pack_q), (FloatType, float, _pack_d),
                       (StringType, str, str.encode), (BytesType, bytes, bytes)):
    object.__setattr__(_t, "_py", _py)
    object.__setattr__(_t, "_fast", _fast)
del _t, _py, _fast

# Python class -> (Type, C-level serializer) for values sent without type=.
_FAST = {t._py: (t, t._fast) for t in (IntType, FloatType, StringType, BytesType)}


def builtin_type(typename):
    """The built-in :class:`Type` named ``typename`` (str), or None."""
    return _BUILTIN.get(typename.encode("utf-8"))


def simple_type(typename, serialize, deserialize):
    """A user type: ``serialize(value) -> bytes``, ``deserialize(bytes) -> value``.

    ``typename`` must be ``namespace/name``; the ``statemesh/`` namespace is
    reserved for the built-in types. Values of this type cross languages as
    long as every side agrees on the bytes.
    """
    if not isinstance(typename, str) or typename.startswith("statemesh/"):
        raise ValueError("typename %r is reserved or invalid" % (typename,))
    if not callable(serialize) or not callable(deserialize):
        raise TypeError("serialize and deserialize must be callables")

    def ser(value):
        out = serialize(value)
        if type(out) is bytes:
            return out
        if isinstance(out, (bytearray, memoryview)):
            return bytes(out)
        raise TypeError("serializer of %s returned %s, not bytes"
                        % (typename, type(out).__name__))

    return Type(typename, ser, deserialize)


# ---- Python value -> typed value -------------------------------------------

_INFER = {
    bool: BoolType, int: IntType, float: FloatType, str: StringType,
    bytes: BytesType, bytearray: BytesType, memoryview: BytesType,
    dict: JsonType, list: JsonType,
}


def infer_type(value):
    """The built-in type for a Python value (bool, int, float, str, bytes,
    dict, list); TypeError for anything else."""
    t = _INFER.get(type(value))
    if t is not None:
        return t
    for py, t in _INFER.items():
        if isinstance(value, py):
            return t
    if isinstance(value, tuple):
        return JsonType
    raise TypeError("cannot infer a statemesh type for %s %r; pass type= or a TypedValue"
                    % (type(value).__name__, _short(value)))


def encode_value(value, type=None):
    """(typename field bytes, payload bytes) of a value sent or replied.

    ``value`` may be a :class:`TypedValue` (sent as is), a value of ``type``,
    or a plain Python value whose built-in type is inferred (bool, int,
    float, str, bytes, dict/list -> JSON). Raises TypeError on a value of the
    wrong kind."""
    if value.__class__ is TypedValue or isinstance(value, TypedValue):
        if type is not None and type.typename != value.typename:
            raise TypeError("TypedValue is %s, not %s" % (value.typename, type.typename))
        tnb = value.typename.encode("utf-8")
        return b"\x0a" + _len_varint(len(tnb)) + tnb, value.value
    if type is None:
        type = _INFER.get(value.__class__)
        if type is None:
            type = infer_type(value)
    elif type.__class__ is not Type:
        raise TypeError("type= must be a statemesh Type, got %r" % (type,))
    return type._tv_prefix, type._ser(value)


def typed_value(value, type=None):
    """A :class:`TypedValue` for ``value`` (see :func:`encode_value`)."""
    if isinstance(value, TypedValue) and type is None:
        return value
    if type is None:
        type = infer_type(value)
    return TypedValue(type.typename, type._ser(value))


def decode_typed(typename, data, type=None):
    """Decode with ``type`` or by built-in typename; a user typename without
    ``type`` comes back as a :class:`TypedValue`."""
    if type is not None and type.typename == typename:
        return type._deser(data)
    t = _BUILTIN.get(typename.encode("utf-8"))
    if t is None:
        return TypedValue(typename, data)
    return t._deser(data)
