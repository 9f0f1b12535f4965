"""Helpers shared by the SDK unit tests: build ToFunction messages with the
generated protobuf classes and parse the FromFunction answers, so the
hand-written codec in statemesh._wire is checked against protobuf itself."""

import os
import struct
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.dirname(HERE)
if SDK not in sys.path:
    sys.path.insert(0, SDK)

try:
    from statemesh.v1 import function_pb2, types_pb2  # noqa: F401
except ImportError as e:  # pragma: no cover
    raise RuntimeError("generated modules missing: run "
                       "'make sdk-python/statemesh/v1/function_pb2.py' (or 'make')") from e

REPO = os.path.dirname(SDK)


def i64(n):
    return struct.pack("<q", n)


def tv(typename, value):
    return types_pb2.TypedValue(typename=typename, value=value)


def int_tv(n):
    return tv("statemesh/int64", i64(n))


def str_tv(s):
    return tv("statemesh/string", s.encode())


def batch(bid, ftype, fid, state=None, invocations=()):
    """state: {name: TypedValue | None}; invocations: [TypedValue | (caller, TypedValue)]."""
    b = function_pb2.BatchRequest(batch_id=bid, target=types_pb2.Address(type=ftype, id=fid))
    for name, v in (state or {}).items():
        sv = b.state.add(name=name)
        if v is not None:
            sv.value.CopyFrom(v)
    for inv in invocations:
        if isinstance(inv, tuple):
            caller, arg = inv
            i = b.invocations.add(argument=arg)
            if caller is not None:
                i.caller.type, i.caller.id = caller
        else:
            b.invocations.add(argument=inv)
    return b


def to_function(*batches):
    return function_pb2.ToFunction(batches=list(batches)).SerializeToString()


def from_function(data):
    return function_pb2.FromFunction.FromString(data)


def by_id(resp):
    """FromFunction -> {batch_id: BatchResponse}, checking ids are unique."""
    out = {}
    for r in resp.responses:
        assert r.batch_id not in out
        out[r.batch_id] = r
    return out


def mutations(result):
    """Result -> {name: TypedValue | None (delete)} in order (last wins)."""
    out = {}
    for m in result.state_mutations:
        out[m.name] = None if m.kind == function_pb2.StateMutation.DELETE else m.value
    return out


@pytest.fixture
def repo():
    return REPO
