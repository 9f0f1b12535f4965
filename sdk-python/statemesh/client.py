"""Ingress and admin clients for statemeshd.

    from statemesh import Client
    with Client("127.0.0.1:7070") as c:
        c.send("example/user", "alice", "hi")                    # durable once it returns
        print(c.call("example/user", "alice", "hi", timeout=5))  # the decoded reply
        print(c.state("example/user", "alice"))                  # {'visits': 2}
        print(c.stats())                                         # {'messages_received': ...}

Values are typed like ``Context.send``: a :class:`TypedValue` as is, a value
of ``type=``, or inferred from the Python value (bool, int, float, str,
bytes, dict/list -> JSON). Replies and state values of built-in types come
back decoded; a user type comes back as a TypedValue unless you pass its
Type (``reply_type=``, ``types={"name": T}``), and ``raw=True`` returns the
TypedValue whatever the type.

gRPC errors are raised as :mod:`statemesh.errors` exceptions (NotFound,
InvalidArgument, Unavailable, DeadlineExceeded, ResourceExhausted, base
StatemeshError with ``code`` and ``details``). ``timeout`` (seconds) is the
gRPC deadline; None waits as long as it takes.

:class:`AsyncClient` has the same methods as coroutines (grpc.aio).
"""

from collections import namedtuple

import grpc

from .errors import from_rpc_error
from .types import TypedValue, typed_value, decode_typed

__all__ = ["Client", "AsyncClient", "StateInfo"]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024

StateInfo = namedtuple("StateInfo", "values queued_messages in_flight")
StateInfo.__doc__ = ("The committed state of an address: ``values`` (dict name -> value), "
                     "``queued_messages`` waiting for it, ``in_flight`` (a batch is running).")


def _channel_options(extra):
    opts = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
    if extra:
        opts.extend(extra)
    return opts


def _pb():
    from .v1 import admin_pb2, ingress_pb2, types_pb2
    return admin_pb2, ingress_pb2, types_pb2


def _address(types_pb2, target_type, target_id):
    if not isinstance(target_type, str) or not isinstance(target_id, str):
        raise TypeError("function type and id must be str")
    return types_pb2.Address(type=target_type, id=target_id)


def _argument(types_pb2, value, type):
    tv = typed_value(value, type)
    return types_pb2.TypedValue(typename=tv.typename, value=tv.value)


def _decode_reply(resp, reply_type, raw):
    r = resp.reply
    if raw:
        return TypedValue(r.typename, r.value)
    return decode_typed(r.typename, r.value, reply_type)


def _decode_state(resp, types, raw):
    out = {}
    types = types or {}
    for sv in resp.values:
        v = sv.value
        if raw:
            out[sv.name] = TypedValue(v.typename, v.value)
        else:
            out[sv.name] = decode_typed(v.typename, v.value, types.get(sv.name))
    return out


class _Methods:
    def _bind(self, channel):
        admin_pb2, ingress_pb2, types_pb2 = _pb()
        self._admin_pb2, self._ingress_pb2, self._types_pb2 = admin_pb2, ingress_pb2, types_pb2
        u = channel.unary_unary
        self._send = u("/statemesh.v1.Ingress/Send",
                       request_serializer=ingress_pb2.SendRequest.SerializeToString,
                       response_deserializer=ingress_pb2.SendResponse.FromString)
        self._call = u("/statemesh.v1.Ingress/Call",
                       request_serializer=ingress_pb2.CallRequest.SerializeToString,
                       response_deserializer=ingress_pb2.CallResponse.FromString)
        self._get_state = u("/statemesh.v1.Admin/GetState",
                            request_serializer=admin_pb2.GetStateRequest.SerializeToString,
                            response_deserializer=admin_pb2.GetStateResponse.FromString)
        self._stats = u("/statemesh.v1.Admin/Stats",
                        request_serializer=admin_pb2.StatsRequest.SerializeToString,
                        response_deserializer=admin_pb2.StatsResponse.FromString)

    def _send_req(self, target_type, target_id, value, type):
        t = self._types_pb2
        return self._ingress_pb2.SendRequest(target=_address(t, target_type, target_id),
                                             argument=_argument(t, value, type))

    def _call_req(self, target_type, target_id, value, type):
        t = self._types_pb2
        return self._ingress_pb2.CallRequest(target=_address(t, target_type, target_id),
                                             argument=_argument(t, value, type))

    def _state_req(self, target_type, target_id, name):
        return self._admin_pb2.GetStateRequest(
            address=_address(self._types_pb2, target_type, target_id), name=name or "")

    def _timeout(self, timeout):
        return self._default_timeout if timeout is None else timeout


class Client(_Methods):
    """Blocking client of a runtime's ingress and admin services."""

    def __init__(self, target="127.0.0.1:7070", *, timeout=None, wait_for_ready=False,
                 options=None, credentials=None):
        """``target``: "host:port" or "unix:/path". ``timeout``: default deadline
        (seconds) of every request; ``wait_for_ready``: wait for the runtime
        to come up instead of failing with Unavailable."""
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=_channel_options(options))
        else:
            self._channel = grpc.secure_channel(target, credentials,
                                                options=_channel_options(options))
        self._default_timeout = timeout
        self._wait = wait_for_ready
        self._bind(self._channel)

    def _invoke(self, method, req, timeout):
        try:
            return method(req, timeout=self._timeout(timeout), wait_for_ready=self._wait)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def send(self, target_type, target_id, value, type=None, timeout=None):
        """Durable fire-and-forget: returns once the runtime committed it."""
        self._invoke(self._send, self._send_req(target_type, target_id, value, type), timeout)

    def call(self, target_type, target_id, value, type=None, timeout=None,
             reply_type=None, raw=False):
        """Send and wait for the reply of a function in the resulting chain.
        Returns the decoded reply (a TypedValue with ``raw=True`` or for a
        user type without ``reply_type``)."""
        resp = self._invoke(self._call, self._call_req(target_type, target_id, value, type),
                            timeout)
        return _decode_reply(resp, reply_type, raw)

    def state(self, target_type, target_id, name=None, types=None, raw=False, timeout=None):
        """The committed state of an address: dict name -> decoded value
        (only stored values; ``name`` restricts to one)."""
        resp = self._invoke(self._get_state, self._state_req(target_type, target_id, name),
                            timeout)
        return _decode_state(resp, types, raw)

    def state_info(self, target_type, target_id, name=None, types=None, raw=False,
                   timeout=None):
        """Like state() plus the address's queue length and in-flight flag."""
        resp = self._invoke(self._get_state, self._state_req(target_type, target_id, name),
                            timeout)
        return StateInfo(_decode_state(resp, types, raw), resp.queued_messages,
                         resp.in_flight)

    def stats(self, timeout=None):
        """Runtime counters: dict name -> int."""
        resp = self._invoke(self._stats, self._admin_pb2.StatsRequest(), timeout)
        return {s.name: s.value for s in resp.stats}

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AsyncClient(_Methods):
    """asyncio client (grpc.aio); create it inside the event loop that uses it."""

    def __init__(self, target="127.0.0.1:7070", *, timeout=None, wait_for_ready=False,
                 options=None, credentials=None):
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(target,
                                                      options=_channel_options(options))
        else:
            self._channel = grpc.aio.secure_channel(target, credentials,
                                                    options=_channel_options(options))
        self._default_timeout = timeout
        self._wait = wait_for_ready
        self._bind(self._channel)

    async def _invoke(self, method, req, timeout):
        try:
            return await method(req, timeout=self._timeout(timeout), wait_for_ready=self._wait)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    async def send(self, target_type, target_id, value, type=None, timeout=None):
        await self._invoke(self._send, self._send_req(target_type, target_id, value, type),
                           timeout)

    async def call(self, target_type, target_id, value, type=None, timeout=None,
                   reply_type=None, raw=False):
        resp = await self._invoke(self._call,
                                  self._call_req(target_type, target_id, value, type), timeout)
        return _decode_reply(resp, reply_type, raw)

    async def state(self, target_type, target_id, name=None, types=None, raw=False,
                    timeout=None):
        resp = await self._invoke(self._get_state,
                                  self._state_req(target_type, target_id, name), timeout)
        return _decode_state(resp, types, raw)

    async def state_info(self, target_type, target_id, name=None, types=None, raw=False,
                         timeout=None):
        resp = await self._invoke(self._get_state,
                                  self._state_req(target_type, target_id, name), timeout)
        return StateInfo(_decode_state(resp, types, raw), resp.queued_messages,
                         resp.in_flight)

    async def stats(self, timeout=None):
        resp = await self._invoke(self._stats, self._admin_pb2.StatsRequest(), timeout)
        return {s.name: s.value for s in resp.stats}

    async def close(self):
        await self._channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
