"""Ingress and admin clients for statemeshd.

    from statemesh import Client
    with Client("127.0.0.1:7070") as c:          # token=... or $STATEMESH_TOKEN if auth is on
        c.send("example/user", "alice", "hi")                    # durable once it returns
        print(c.call("example/user", "alice", "hi", timeout=5))  # the decoded reply
        print(c.state("example/user", "alice"))                  # {'visits': 2}
        print(c.stats())                                         # {'messages_received': ...}
        c.send("shop/cart", "bob", "remind", delay=60)          # delivered in a minute
        c.send("shop/cart", "bob", {"add": "apple"}, idempotency_key="order-17/1")
        r = c.send_stream(("example/user", "u%d" % i, "hi") for i in range(100000))
        print(r.acked, r.errors)                                 # 100000 []
        for rec in c.subscribe("receipts", earliest=True, follow=False):
            print(rec.offset, rec.source, rec.value.as_json())
        page = c.dead_letters(type="shop/cart")                 # failed max_attempts times
        for d in page:
            print(d.id, d.target, d.argument.value, d.error)
        c.replay_dead_letters(all=True, type="shop/cart")       # -> how many were replayed
        st = c.inspect("shop/cart", "bob")                      # retrying? paused? why?
        print(st.phase, st.attempts, st.head and st.head.value, st.last_error)
        for st in c.stuck():                                    # every retrying/paused address
            print(st.address, st.phase)
        c.skip("shop/cart", "bob")      # head message -> dead letters (-> its id)
        c.resume("shop/cart", "bob")    # retry a paused address now (after a fix)

Values are typed like ``Context.send``: a :class:`TypedValue` as is, a value
of ``type=``, or inferred from the Python value (bool, int, float, str,
bytes, dict/list -> JSON). Replies and state values of built-in types come
back decoded; a user type comes back as a TypedValue unless you pass its
Type (``reply_type=``, ``types={"name": T}``), and ``raw=True`` returns the
TypedValue whatever the type.

gRPC errors are raised as :mod:`statemesh.errors` exceptions (NotFound,
InvalidArgument, Unavailable, DeadlineExceeded, ResourceExhausted a.k.a.
Overloaded, OffsetTrimmed, FailedPrecondition, base StatemeshError with
``code`` and ``details``: the runtime's text, e.g. a Call's DeadlineExceeded
says "no reply within N ms; the message is durable and will still be
processed ..."). ``timeout`` (seconds) is the gRPC deadline; None waits as long
as it takes (streams, send_stream and subscribe, have no deadline unless
given one).

:class:`AsyncClient` has the same methods as coroutines (grpc.aio).
"""

import bisect
import datetime
import os
from builtins import type as builtins_type
import re
import threading
from collections import namedtuple

import grpc

from . import _wire
from .errors import StatemeshError, from_rpc_error
from .function import (_TYPE_RE, MAX_DELAY, Address, Message, _address_field, _check_key,
                       _duration_ms)
from .types import TypedValue, typed_value, decode_typed, encode_value

__all__ = ["Client", "AsyncClient", "StateInfo", "StreamMessage", "StreamError",
           "SendStreamResult", "EgressRecord", "Subscription", "AsyncSubscription",
           "DeadLetter", "DeadLetters", "AddressStatus", "StuckList", "StateIds"]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024

StateInfo = namedtuple("StateInfo", "values queued_messages in_flight")
StateInfo.__doc__ = ("The committed state of an address: ``values`` (dict name -> value), "
                     "``queued_messages`` waiting for it, ``in_flight`` (a batch is running).")

StateIds = namedtuple("StateIds", "ids more next_after")
StateIds.__doc__ = ("One page of Client.list_state(): ``ids`` (in key order), ``more`` (the "
                    "listing goes on) and ``next_after`` (with more: the ``after`` of the next "
                    "page, else None).")


StreamMessage = namedtuple("StreamMessage",
                           "target_type target_id value type idempotency_key delay",
                           defaults=(None, None, None))
StreamMessage.__doc__ = (
    "One message of Client.send_stream(): target, value (typed as for send(); "
    "``type=`` for a user type), optional ``idempotency_key`` and ``delay`` "
    "(timedelta or seconds). A plain ``(type, id, value)`` tuple works too.")

StreamError = namedtuple("StreamError", "seq code message")
StreamError.__doc__ = ("A message of send_stream() that was not applied: ``seq`` (its "
                       "1-based position in the iterable), ``code`` (grpc.StatusCode), "
                       "``message``.")


class SendStreamResult(namedtuple("SendStreamResult", "sent acked errors")):
    """What send_stream() did: ``sent`` messages were handed to the stream,
    ``acked`` of them are committed (durable), ``errors`` lists the
    StreamErrors of the messages that were rejected (by the runtime, or
    locally before sending: a bad address, value, key or delay), in seq
    order. ``ok`` is True when every message was committed."""

    __slots__ = ()

    @property
    def ok(self):
        return not self.errors and self.acked == self.sent


class BootstrapResult(namedtuple("BootstrapResult", "outcome error")):
    """The outcome of one bootstrap entry: "loaded", "already_loaded",
    "exists" or "invalid" (then ``error`` says why; else "")."""
    __slots__ = ()

    @property
    def ok(self):
        return self.outcome in ("loaded", "already_loaded")


class EgressRecord(namedtuple("EgressRecord", "offset timestamp_ms source value node",
                              defaults=("",))):
    """One record of an egress log: ``offset`` (consecutive from 1),
    ``timestamp_ms`` (commit time, Unix epoch ms; ``timestamp`` is a UTC
    datetime), ``source`` (the Address of the function that wrote it),
    ``value``, a :class:`Message` (``value.as_json()``, ``as_string()``,
    ``value.value`` ...), and in a cluster ``node``, the node whose log holds
    it (offsets are per node; "" on a runtime alone)."""

    __slots__ = ()

    @property
    def timestamp(self):
        return datetime.datetime.fromtimestamp(self.timestamp_ms / 1000.0,
                                               tz=datetime.timezone.utc)


class DeadLetter(namedtuple("DeadLetter",
                            "id target caller argument error attempts failed_at_ms")):
    """A message whose batch failed its endpoint's ``retry.max_attempts``
    times: ``id`` (increasing in the order they were stored), ``target``
    (the Address it was for), ``caller`` (the Address of the function that
    sent it, None when it came from the ingress), ``argument`` (a
    :class:`Message`: ``argument.value``, ``as_json()`` ...), ``error`` (the
    last failure), ``attempts`` and ``failed_at_ms`` (when it was stored,
    Unix epoch ms; ``failed_at`` is a UTC datetime)."""

    __slots__ = ()

    @property
    def failed_at(self):
        return datetime.datetime.fromtimestamp(self.failed_at_ms / 1000.0,
                                               tz=datetime.timezone.utc)


class _Items:
    """A list answer: iterating, ``len()`` and indexing go to ``items``."""

    __slots__ = ()

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class DeadLetters(_Items):
    """One page of Client.dead_letters(): ``items`` (DeadLetters by
    increasing id; iterating the page, ``len()`` and indexing go to them)
    and ``total``, the number of dead letters stored, of every function
    type. ``last_id`` (None for an empty page) is the ``after_id`` of the
    next page."""

    __slots__ = ("items", "total")

    def __init__(self, items, total):
        self.items = items
        self.total = total

    @property
    def last_id(self):
        return self.items[-1].id if self.items else None

    def __repr__(self):
        return "DeadLetters(items=%r, total=%d)" % (self.items, self.total)


class AddressStatus(namedtuple("AddressStatus",
                               "address phase queued_messages in_flight_messages attempts "
                               "max_attempts next_retry_at_ms last_error last_error_at_ms "
                               "isolating head head_caller")):
    """How one address stands with failures (Client.inspect(), stuck()):
    ``address`` (an Address), ``phase`` ("idle": nothing queued, "queued",
    "in_flight": a batch is being invoked, "retrying": its head message
    failed and a retry is scheduled, "paused": retries ran out with
    ``retry.on_exhausted = "pause"`` and nothing is dispatched until
    skip() or resume()), ``queued_messages`` (waiting, including the
    in-flight batch), ``in_flight_messages``, ``attempts`` (failed attempts
    of the head message), ``max_attempts`` (the endpoint's
    ``retry.max_attempts``, 0 = forever), ``next_retry_at_ms`` (retrying:
    Unix epoch ms of the next attempt, else None; ``next_retry_at`` is a UTC
    datetime), ``last_error`` (the last failure in full, None if none) and
    ``last_error_at_ms`` (``last_error_at``), ``isolating`` (a failed batch
    of several messages is being re-sent one at a time), ``head`` (the
    message at the head of the queue, a :class:`Message`: ``head.value``,
    ``as_json()`` ...; None when nothing is queued) and ``head_caller`` (the
    Address of the function that sent it, None when it came from the
    ingress)."""

    __slots__ = ()

    @property
    def next_retry_at(self):
        return _utc(self.next_retry_at_ms)

    @property
    def last_error_at(self):
        return _utc(self.last_error_at_ms)


class StuckList(_Items):
    """What Client.stuck() found: ``items`` (the :class:`AddressStatus` of
    each retrying or paused address, in no particular order; iterating,
    ``len()`` and indexing go to them), ``retrying`` and ``paused``: how many
    addresses are retrying and paused, of every function type (also those
    beyond ``limit`` or filtered out by ``type``)."""

    __slots__ = ("items", "retrying", "paused")

    def __init__(self, items, retrying, paused):
        self.items = items
        self.retrying = retrying
        self.paused = paused

    def __repr__(self):
        return "StuckList(items=%r, retrying=%d, paused=%d)" % (self.items, self.retrying,
                                                               self.paused)


def _utc(ms):
    if ms is None:
        return None
    return datetime.datetime.fromtimestamp(ms / 1000.0, tz=datetime.timezone.utc)


MAX_DEAD_LETTERS_PAGE = 10000
MAX_STUCK_LIMIT = 100000
MAX_STATE_LIST_LIMIT = 10000
MAX_BOOTSTRAP_ENTRIES = 10000
_PHASES = {0: "idle", 1: "queued", 2: "in_flight", 3: "retrying", 4: "paused"}

_STATUS = {c.value[0]: c for c in grpc.StatusCode}
_EGRESS_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}\Z")


def _idempotency_key(key):
    if key is None:
        return ""
    _check_key("idempotency key", key)
    return key


def _delay_ms(delay):
    return 0 if delay is None else _duration_ms("delay", delay, MAX_DELAY)


def _encode_stream_message(seq, item):
    """One encoded SendStreamRequest.messages field for an item of
    send_stream() (hand-encoded: bulk path). Raises TypeError/ValueError."""
    if item.__class__ is tuple and len(item) == 3:
        ttype, tid, value = item
        vtype = key = delay = None
    elif isinstance(item, tuple):
        if not 3 <= len(item) <= 6:
            raise TypeError("a send_stream item is (type, id, value) or a StreamMessage, "
                            "got a tuple of %d" % len(item))
        ttype, tid, value, vtype, key, delay = StreamMessage(*item)
    elif hasattr(item, "target_type") and hasattr(item, "target_id"):
        ttype, tid, value = item.target_type, item.target_id, getattr(item, "value", None)
        vtype = getattr(item, "type", None)
        key = getattr(item, "idempotency_key", None)
        delay = getattr(item, "delay", None)
    else:
        raise TypeError("a send_stream item is (type, id, value) or a StreamMessage, got %s"
                        % type(item).__name__)
    tn, payload = encode_value(value, vtype)
    n = len(payload)
    tv = tn + b"\x12" + _wire.varint(n) + payload if n else tn
    body = (b"\x08" + _wire.varint(seq) + _wire.ld(b"\x12", _address_field(ttype, tid))
            + _wire.ld(b"\x1a", tv))
    if key is not None:
        body += _wire.ld(b"\x22", _check_key("idempotency key", key))
    if delay is not None:
        ms = _duration_ms("delay", delay, MAX_DELAY)
        if ms:
            body += b"\x28" + _wire.varint(ms)
    return _wire.ld(b"\x0a", body)


def _identity(b):
    return b


def _type_filter(type):
    """The ``type=`` of the dead-letter methods: None/"" = every type."""
    if type is None or type == "":
        return ""
    if not isinstance(type, str):
        raise TypeError("type must be a function type str, got %s" % builtins_type(type).__name__)
    if not _TYPE_RE.match(type) or len(type) > 256:
        raise ValueError("type must be a function type 'namespace/name' ([A-Za-z0-9_.-]+), "
                         "got %r" % (type,))
    return type


def _uint(name, v, lo, hi):
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError("%s must be an int, got %s" % (name, builtins_type(v).__name__))
    if not lo <= v <= hi:
        raise ValueError("%s must be %d..%d, got %d" % (name, lo, hi, v))
    return v


def _dead_letter_ids(ids, all):
    """The ids of a replay/drop selector (a list; empty with all=True)."""
    if isinstance(ids, int) and not isinstance(ids, bool):
        ids = [ids]
    elif ids is not None:
        if isinstance(ids, (str, bytes)):
            raise TypeError("ids must be an iterable of ints (dead letter ids), got %s"
                            % builtins_type(ids).__name__)
        ids = [_uint("dead letter id", i, 0, 2 ** 64 - 1) for i in ids]
    if not ids and not all:
        raise ValueError("no dead letters selected: pass their ids (ids=[...]) or all=True")
    if ids and all:
        raise ValueError("pass ids or all=True, not both")
    return ids or []


def _dead_letters(resp):
    out = []
    for d in resp.dead_letters:
        caller = Address(d.caller.type, d.caller.id) if d.HasField("caller") else None
        out.append(DeadLetter(d.id, Address(d.target.type, d.target.id), caller,
                              Message(d.argument.typename, d.argument.value), d.error,
                              d.attempts, d.failed_at_ms))
    return DeadLetters(out, resp.total)


def _address_status(s):
    """An admin_pb2.AddressStatus -> AddressStatus."""
    head = Message(s.head.typename, s.head.value) if s.HasField("head") else None
    caller = (Address(s.head_caller.type, s.head_caller.id) if s.HasField("head_caller")
              else None)
    return AddressStatus(Address(s.address.type, s.address.id),
                         _PHASES.get(s.phase, "unknown(%d)" % s.phase),
                         s.queued_messages, s.in_flight_messages, s.attempts, s.max_attempts,
                         s.next_retry_at_ms or None, s.last_error or None,
                         s.last_error_at_ms if s.last_error else None,
                         s.isolating, head, caller)


def _stuck_list(resp):
    return StuckList([_address_status(s) for s in resp.addresses], resp.retrying, resp.paused)


class _StreamState:
    """Bookkeeping of one send_stream(): seqs, the window, acks, errors.
    Shared by the sync (threads) and async versions; the caller holds the
    lock/condition around every method."""

    def __init__(self, window, batch_size):
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError("window must be an int >= 1, got %r" % (window,))
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError("batch_size must be an int >= 1, got %r" % (batch_size,))
        self.window = window
        self.chunk = min(batch_size, window)
        self.seq = 0                # last seq assigned
        self.sent = 0               # messages handed to gRPC
        self.last_sent_seq = 0
        self.last_ok = 0            # last seq encoded (not rejected locally)
        self.committed = 0          # committed_through
        self.local = []             # seqs rejected locally (increasing)
        self.errors = []            # StreamErrors, runtime's and local
        self.remote_errors = 0
        self.done = False           # stream over (error, cancel): stop producing
        self.source_error = None    # the user's iterable raised this

    def encode(self, item):
        """Next seq for item -> encoded message, or None (rejected locally)."""
        self.seq += 1
        try:
            m = _encode_stream_message(self.seq, item)
            self.last_ok = self.seq
            return m
        except (TypeError, ValueError, OverflowError) as e:
            self.local.append(self.seq)
            self.errors.append(StreamError(self.seq, grpc.StatusCode.INVALID_ARGUMENT,
                                           "not sent: %s" % e))
            return None

    def covered(self):
        """Sent messages with seq <= committed_through."""
        return self.committed - bisect.bisect_right(self.local, self.committed)

    def room(self, n):
        return self.done or self.sent - self.covered() + n <= self.window

    def on_sent(self, n):
        self.sent += n
        self.last_sent_seq = self.last_ok

    def on_response(self, resp):
        for e in resp.errors:
            self.remote_errors += 1
            self.errors.append(StreamError(e.seq, _STATUS.get(e.code, grpc.StatusCode.UNKNOWN),
                                           e.message))
        if resp.errors and self.local:
            self.errors.sort(key=lambda e: e.seq)
        if resp.committed_through > self.committed:
            self.committed = resp.committed_through

    def summary(self):
        return SendStreamResult(self.sent, max(0, self.covered() - self.remote_errors),
                                list(self.errors))

    def result(self):
        """The stream ended OK: the SendStreamResult. Raises what the
        user's iterable raised, or a StatemeshError (with ``.summary``)
        when the runtime ended the stream before acking everything."""
        if self.source_error is not None:
            raise self.source_error
        if self.committed < self.last_sent_seq:
            err = StatemeshError("SendStream ended after acknowledging seq %d of %d"
                                 % (self.committed, self.last_sent_seq), grpc.StatusCode.UNKNOWN)
            err.summary = self.summary()
            raise err
        return self.summary()

    def raise_failed(self, rpc_error):
        """The stream ended with a gRPC error (call from its except block):
        raises what the user's iterable raised, else the StatemeshError
        with ``.summary``."""
        if self.source_error is not None:
            raise self.source_error
        err = from_rpc_error(rpc_error)
        err.summary = self.summary()
        raise err from None


def _channel_options(extra):
    opts = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
    if extra:
        opts.extend(extra)
    return opts


def _token(token):
    """The bearer token to send: ``token``, else $STATEMESH_TOKEN, else None."""
    if token is None:
        token = os.environ.get("STATEMESH_TOKEN") or None
        if token is None:
            return None
    if not isinstance(token, str):
        raise TypeError("token must be a str, got %s" % builtins_type(token).__name__)
    token = token.strip("\r\n")
    if not token or any(c <= " " or c > "~" for c in token):
        raise ValueError("token must be printable ASCII without spaces")
    return token


class _WithMetadata:
    """A multicallable that adds the authorization metadata to every call."""

    def __init__(self, multicallable, metadata):
        self._mc = multicallable
        self._md = metadata

    def __call__(self, request, **kw):
        kw["metadata"] = tuple(kw.get("metadata") or ()) + self._md
        return self._mc(request, **kw)


class _TokenChannel:
    """The methods of a channel that _Methods._bind uses, each call carrying
    ``authorization: Bearer <token>`` (docs/security.md)."""

    def __init__(self, channel, token):
        self._channel = channel
        self._md = (("authorization", "Bearer " + token),)

    def unary_unary(self, *a, **kw):
        return _WithMetadata(self._channel.unary_unary(*a, **kw), self._md)

    def unary_stream(self, *a, **kw):
        return _WithMetadata(self._channel.unary_stream(*a, **kw), self._md)

    def stream_stream(self, *a, **kw):
        return _WithMetadata(self._channel.stream_stream(*a, **kw), self._md)


def _authorized(channel, token):
    return channel if token is None else _TokenChannel(channel, token)


def _pb():
    from .v1 import admin_pb2, ingress_pb2, types_pb2
    return admin_pb2, ingress_pb2, types_pb2


def _address(types_pb2, target_type, target_id):
    if not isinstance(target_type, str) or not isinstance(target_id, str):
        raise TypeError("function type and id must be str")
    return types_pb2.Address(type=target_type, id=target_id)


def _checked_address(types_pb2, target_type, target_id):
    """The Address of an admin request on one address, checked locally
    (TypeError/ValueError) like a message target."""
    if not isinstance(target_type, str):
        raise TypeError("function type must be a str, got %s"
                        % builtins_type(target_type).__name__)
    if not isinstance(target_id, str):
        raise TypeError("function id must be a str, got %s" % builtins_type(target_id).__name__)
    if not _TYPE_RE.match(target_type) or len(target_type) > 256:
        raise ValueError("function type must be 'namespace/name' ([A-Za-z0-9_.-]+), got %r"
                         % (target_type,))
    if not 0 < len(target_id.encode("utf-8")) <= 1024:
        raise ValueError("function id must be 1..1024 bytes of UTF-8, got %r" % (target_id,))
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
        self._list_dl = u("/statemesh.v1.Admin/ListDeadLetters",
                          request_serializer=admin_pb2.ListDeadLettersRequest.SerializeToString,
                          response_deserializer=admin_pb2.ListDeadLettersResponse.FromString)
        self._replay_dl = u("/statemesh.v1.Admin/ReplayDeadLetters",
                            request_serializer=admin_pb2.DeadLetterSelector.SerializeToString,
                            response_deserializer=admin_pb2.DeadLetterActionResponse.FromString)
        self._drop_dl = u("/statemesh.v1.Admin/DropDeadLetters",
                          request_serializer=admin_pb2.DeadLetterSelector.SerializeToString,
                          response_deserializer=admin_pb2.DeadLetterActionResponse.FromString)
        self._inspect = u("/statemesh.v1.Admin/Inspect",
                          request_serializer=admin_pb2.InspectRequest.SerializeToString,
                          response_deserializer=admin_pb2.InspectResponse.FromString)
        self._list_stuck = u("/statemesh.v1.Admin/ListStuck",
                             request_serializer=admin_pb2.ListStuckRequest.SerializeToString,
                             response_deserializer=admin_pb2.ListStuckResponse.FromString)
        self._skip = u("/statemesh.v1.Admin/Skip",
                       request_serializer=admin_pb2.AddressRequest.SerializeToString,
                       response_deserializer=admin_pb2.SkipResponse.FromString)
        self._resume = u("/statemesh.v1.Admin/Resume",
                         request_serializer=admin_pb2.AddressRequest.SerializeToString,
                         response_deserializer=admin_pb2.ResumeResponse.FromString)
        self._list_state = u("/statemesh.v1.Admin/ListState",
                             request_serializer=admin_pb2.ListStateRequest.SerializeToString,
                             response_deserializer=admin_pb2.ListStateResponse.FromString)
        self._set_state = u("/statemesh.v1.Admin/SetState",
                            request_serializer=admin_pb2.SetStateRequest.SerializeToString,
                            response_deserializer=admin_pb2.SetStateResponse.FromString)
        self._delete_state = u("/statemesh.v1.Admin/DeleteState",
                               request_serializer=admin_pb2.DeleteStateRequest.SerializeToString,
                               response_deserializer=admin_pb2.DeleteStateResponse.FromString)
        self._bootstrap = u("/statemesh.v1.Admin/Bootstrap",
                            request_serializer=admin_pb2.BootstrapRequest.SerializeToString,
                            response_deserializer=admin_pb2.BootstrapResponse.FromString)
        self._send_stream = channel.stream_stream(
            "/statemesh.v1.Ingress/SendStream", request_serializer=_identity,
            response_deserializer=ingress_pb2.SendStreamResponse.FromString)
        self._subscribe = channel.unary_stream(
            "/statemesh.v1.Ingress/Subscribe",
            request_serializer=ingress_pb2.SubscribeRequest.SerializeToString,
            response_deserializer=ingress_pb2.SubscribeResponse.FromString)

    def _send_req(self, target_type, target_id, value, type, idempotency_key=None, delay=None):
        t = self._types_pb2
        return self._ingress_pb2.SendRequest(target=_address(t, target_type, target_id),
                                             argument=_argument(t, value, type),
                                             idempotency_key=_idempotency_key(idempotency_key),
                                             delay_ms=_delay_ms(delay))

    def _call_req(self, target_type, target_id, value, type, idempotency_key=None):
        t = self._types_pb2
        return self._ingress_pb2.CallRequest(target=_address(t, target_type, target_id),
                                             argument=_argument(t, value, type),
                                             idempotency_key=_idempotency_key(idempotency_key))

    def _subscribe_req(self, egress, from_offset, earliest, latest, follow):
        if not isinstance(egress, str):
            raise TypeError("egress name must be a str, got %s" % type(egress).__name__)
        if not _EGRESS_RE.match(egress):
            raise ValueError("egress name must match [A-Za-z0-9_.-]{1,128}, got %r" % (egress,))
        if (from_offset is not None) + bool(earliest) + bool(latest) > 1:
            raise ValueError("give at most one of from_offset, earliest, latest")
        S = self._ingress_pb2.SubscribeRequest
        if from_offset is not None:
            if (isinstance(from_offset, bool) or not isinstance(from_offset, int)
                    or not 1 <= from_offset < 2 ** 64):
                raise ValueError("from_offset must be an int >= 1 (offsets start at 1), got %r"
                                 % (from_offset,))
            return S(egress=egress, start=S.OFFSET, from_offset=from_offset,
                     follow=bool(follow))
        return S(egress=egress, start=S.LATEST if latest else S.EARLIEST, follow=bool(follow))

    def _state_req(self, target_type, target_id, name):
        return self._admin_pb2.GetStateRequest(
            address=_address(self._types_pb2, target_type, target_id), name=name or "")

    def _list_dl_req(self, type, after_id, limit):
        return self._admin_pb2.ListDeadLettersRequest(
            type=_type_filter(type), after_id=_uint("after_id", after_id, 0, 2 ** 64 - 1),
            limit=_uint("limit", limit, 1, MAX_DEAD_LETTERS_PAGE))

    def _selector(self, ids, all, type):
        return self._admin_pb2.DeadLetterSelector(ids=_dead_letter_ids(ids, all), all=bool(all),
                                                  type=_type_filter(type))

    def _inspect_req(self, target_type, target_id):
        return self._admin_pb2.InspectRequest(
            address=_checked_address(self._types_pb2, target_type, target_id))

    def _stuck_req(self, type, limit):
        return self._admin_pb2.ListStuckRequest(
            type=_type_filter(type),
            limit=0 if limit is None else _uint("limit", limit, 1, MAX_STUCK_LIMIT))

    def _address_req(self, target_type, target_id):
        return self._admin_pb2.AddressRequest(
            address=_checked_address(self._types_pb2, target_type, target_id))

    def _list_state_req(self, type, prefix, after, limit):
        if not isinstance(type, str) or not _TYPE_RE.match(type) or len(type) > 256:
            raise ValueError("function type must be 'namespace/name' ([A-Za-z0-9_.-]+), got %r"
                             % (type,))
        for name, v in (("prefix", prefix), ("after", after)):
            if v is not None and not isinstance(v, str):
                raise TypeError("%s must be a str, got %s" % (name, builtins_type(v).__name__))
        return self._admin_pb2.ListStateRequest(
            type=type, prefix=prefix or "", after_id=after or "",
            limit=0 if limit is None else _uint("limit", limit, 1, MAX_STATE_LIST_LIMIT))

    def _set_state_req(self, target_type, target_id, name, value, type):
        if not isinstance(name, str) or not name:
            raise ValueError("state name must be a non-empty str, got %r" % (name,))
        t = self._types_pb2
        return self._admin_pb2.SetStateRequest(
            address=_checked_address(t, target_type, target_id), name=name,
            value=_argument(t, value, type))

    def _delete_state_req(self, target_type, target_id, name):
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError("state name must be a non-empty str or None (all), got %r" % (name,))
        return self._admin_pb2.DeleteStateRequest(
            address=_checked_address(self._types_pb2, target_type, target_id), name=name or "")

    def _bootstrap_req(self, entries, mode, dry_run):
        a = self._admin_pb2
        modes = {"create-only": a.BootstrapRequest.CREATE_ONLY,
                 "overwrite": a.BootstrapRequest.OVERWRITE}
        if mode not in modes:
            raise ValueError("mode must be 'create-only' or 'overwrite', got %r" % (mode,))
        items = []
        for e in entries:
            if isinstance(e, (bytes, bytearray, memoryview)):
                e = a.AddressData.FromString(bytes(e))
            elif not isinstance(e, a.AddressData):
                raise TypeError("a bootstrap entry is an AddressData message or its bytes, got %s"
                                % builtins_type(e).__name__)
            items.append(e)
        if len(items) > MAX_BOOTSTRAP_ENTRIES:
            raise ValueError("at most %d entries per bootstrap call, got %d"
                             % (MAX_BOOTSTRAP_ENTRIES, len(items)))
        return a.BootstrapRequest(addresses=items, mode=modes[mode], dry_run=bool(dry_run))

    def _timeout(self, timeout):
        return self._default_timeout if timeout is None else timeout


def _tls_credentials(credentials, ca, cert, key):
    if ca is None and cert is None and key is None:
        return credentials
    if credentials is not None:
        raise ValueError("give either credentials or tls_ca/tls_cert/tls_key, not both")
    from .tls import channel_credentials
    return channel_credentials(ca, cert, key)


class Client(_Methods):
    """Blocking client of a runtime's ingress and admin services."""

    def __init__(self, target="127.0.0.1:7070", *, timeout=None, wait_for_ready=False,
                 options=None, credentials=None, token=None, tls_ca=None, tls_cert=None,
                 tls_key=None):
        """``target``: "host:port" or "unix:/path". ``timeout``: default deadline
        (seconds) of every request; ``wait_for_ready``: wait for the runtime
        to come up instead of failing with Unavailable. ``token``: the bearer
        token sent with every request (default $STATEMESH_TOKEN; none when
        unset), for a runtime with ``runtime.auth`` (docs/security.md).
        ``tls_ca`` (PEM file): TLS, the runtime's certificate verified against
        it; with ``tls_cert`` and ``tls_key`` also a client certificate (mTLS).
        See statemesh.tls."""
        token = _token(token)
        credentials = _tls_credentials(credentials, tls_ca, tls_cert, tls_key)
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=_channel_options(options))
        else:
            self._channel = grpc.secure_channel(target, credentials,
                                                options=_channel_options(options))
        self._default_timeout = timeout
        self._wait = wait_for_ready
        self._bind(_authorized(self._channel, token))

    def _invoke(self, method, req, timeout):
        try:
            return method(req, timeout=self._timeout(timeout), wait_for_ready=self._wait)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def send(self, target_type, target_id, value, type=None, timeout=None, *,
             idempotency_key=None, delay=None):
        """Durable fire-and-forget: returns once the runtime committed it.

        ``idempotency_key`` (str, 1..256 bytes): a repeated send with the
        same key (within the runtime's retention, 24 h by default) is
        acknowledged without being applied again, so a send retried after a
        timeout or a lost connection happens once. ``delay`` (timedelta or
        seconds, up to 365 days): the runtime delivers the message that long
        after it committed it (durably)."""
        self._invoke(self._send, self._send_req(target_type, target_id, value, type,
                                                idempotency_key, delay), timeout)

    def call(self, target_type, target_id, value, type=None, timeout=None,
             reply_type=None, raw=False, *, idempotency_key=None):
        """Send and wait for the reply of a function in the resulting chain.
        Returns the decoded reply (a TypedValue with ``raw=True`` or for a
        user type without ``reply_type``). With ``idempotency_key``, a
        repeated call returns the stored reply of the first one (waiting
        for it if needed) without delivering the message again."""
        resp = self._invoke(self._call, self._call_req(target_type, target_id, value, type,
                                                       idempotency_key), timeout)
        return _decode_reply(resp, reply_type, raw)

    def send_stream(self, messages, window=10000, batch_size=500, progress=None,
                    timeout=None):
        """Bulk ingestion over one SendStream: returns a SendStreamResult
        (``sent``, ``acked``, ``errors``) once the runtime has committed
        every message.

        ``messages``: an iterable of ``(type, id, value)`` tuples or
        :class:`StreamMessage` (which adds ``type=``, ``idempotency_key``,
        ``delay``), consumed lazily. Message k (from 1) gets seq k.
        ``batch_size`` messages go in one stream message; at most ``window``
        messages are sent and not yet acknowledged (the generator is not
        read further meanwhile), which bounds memory on both sides.
        ``progress(result)`` is called with the running SendStreamResult
        after every acknowledgement. A message the runtime rejects (or that
        cannot be encoded: bad address/value/key/delay) is reported in
        ``errors`` and the others go on. A stream-level gRPC error raises
        the StatemeshError with ``.summary`` (the SendStreamResult so far:
        ``acked`` messages are durable, later ones may or may not be).
        An exception raised by ``messages`` ends the stream after what was
        read is committed, then propagates. No deadline unless ``timeout``.
        """
        st = _StreamState(window, batch_size)
        cond = threading.Condition()
        it = iter(messages)

        def requests():
            buf = []
            while True:
                try:
                    item = next(it)
                except StopIteration:
                    break
                except BaseException as e:        # the user's iterable failed
                    with cond:
                        st.source_error = e
                    break
                with cond:
                    m = st.encode(item)
                if m is None:
                    continue
                buf.append(m)
                if len(buf) >= st.chunk:
                    with cond:
                        cond.wait_for(lambda: st.room(len(buf)))
                        if st.done:
                            return
                        st.on_sent(len(buf))
                    yield b"".join(buf)
                    buf = []
            if buf:
                with cond:
                    cond.wait_for(lambda: st.room(len(buf)))
                    if st.done:
                        return
                    st.on_sent(len(buf))
                yield b"".join(buf)

        call = self._send_stream(requests(), timeout=timeout, wait_for_ready=self._wait)
        try:
            for resp in call:
                with cond:
                    st.on_response(resp)
                    cond.notify_all()
                    summary = st.summary() if progress is not None else None
                if progress is not None:
                    progress(summary)
        except grpc.RpcError as e:
            with cond:
                st.done = True
                cond.notify_all()
            st.raise_failed(e)
        except BaseException:
            with cond:
                st.done = True
                cond.notify_all()
            call.cancel()
            raise
        return st.result()

    def subscribe(self, egress, from_offset=None, earliest=False, latest=False, follow=True,
                  timeout=None):
        """Reads the egress log ``egress``: a :class:`Subscription`, an
        iterator of :class:`EgressRecord` (``offset``, ``timestamp_ms``,
        ``source``, ``value``).

        Start at ``from_offset`` (the record with that offset, from 1), or
        the oldest retained record (``earliest=True``, also the default),
        or only records committed from now on (``latest=True``). With
        ``follow`` (default) it waits for new records after the replay,
        until ``close()`` (or ``timeout`` seconds); with ``follow=False`` it
        ends once caught up. Only committed records are ever returned.
        Errors surface while iterating: NotFound (no such egress),
        OffsetTrimmed (``from_offset`` already removed by retention)."""
        req = self._subscribe_req(egress, from_offset, earliest, latest, follow)
        return Subscription(self._subscribe(req, timeout=timeout, wait_for_ready=self._wait))

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

    def dead_letters(self, type=None, after_id=0, limit=100, timeout=None):
        """One page of the dead-letter store: a :class:`DeadLetters` with
        ``items`` (up to ``limit``, 1..10000, :class:`DeadLetter` s by
        increasing id, only those with ids above ``after_id``, only of
        function type ``type`` if given) and ``total`` (stored, every type).
        Page on with ``after_id=page.last_id``."""
        resp = self._invoke(self._list_dl, self._list_dl_req(type, after_id, limit), timeout)
        return _dead_letters(resp)

    def replay_dead_letters(self, ids=None, all=False, type=None, timeout=None):
        """Puts dead letters back into their targets' inboxes (in id order,
        after what is queued there): those with the given ``ids`` (an int
        or an iterable of ints), or every one (``all=True``); ``type``
        restricts either to one function type. Returns how many were
        replayed, once that is durable; ids not stored (already replayed or
        dropped) and types no endpoint serves are skipped. ValueError if
        neither or both of ids and all are given."""
        resp = self._invoke(self._replay_dl, self._selector(ids, all, type), timeout)
        return resp.count

    def drop_dead_letters(self, ids=None, all=False, type=None, timeout=None):
        """Deletes dead letters, selected as for replay_dead_letters();
        returns how many were dropped, once that is durable."""
        resp = self._invoke(self._drop_dl, self._selector(ids, all, type), timeout)
        return resp.count

    def inspect(self, target_type, target_id, timeout=None):
        """How the address stands with failures: an :class:`AddressStatus`
        (phase "idle", "queued", "in_flight", "retrying" or "paused",
        attempts, the last error, the head message ...). Answered from the
        runtime's memory; an address with nothing queued is "idle", never
        NotFound."""
        resp = self._invoke(self._inspect, self._inspect_req(target_type, target_id), timeout)
        return _address_status(resp.status)

    def stuck(self, type=None, limit=None, timeout=None):
        """Every address that is retrying (its head message failed at least
        once) or paused: a :class:`StuckList` of :class:`AddressStatus`
        (only of function type ``type`` if given; at most ``limit``,
        1..100000, default the runtime's 1000) with the ``retrying`` and
        ``paused`` totals of every type."""
        resp = self._invoke(self._list_stuck, self._stuck_req(type, limit), timeout)
        return _stuck_list(resp)

    def skip(self, target_type, target_id, timeout=None):
        """Moves the head message of a retrying or paused address to the
        dead letters now, and lets the address go on with its next message.
        Returns the dead letter id, once that is durable. FailedPrecondition
        when the address is neither retrying nor paused, or its head message
        is being invoked right now (try again a moment later)."""
        resp = self._invoke(self._skip, self._address_req(target_type, target_id), timeout)
        return resp.dead_letter_id

    def resume(self, target_type, target_id, timeout=None):
        """Retries a paused (or backing-off) address now, with a fresh
        attempt count, e.g. after a fix was deployed. Returns None once the
        pause's removal is durable. FailedPrecondition when the address is
        neither paused nor backing off."""
        self._invoke(self._resume, self._address_req(target_type, target_id), timeout)

    def list_state(self, type, prefix=None, after=None, limit=None, timeout=None):
        """One page of the ids of function type ``type`` that hold committed,
        unexpired state: a :class:`StateIds`. Ids are in key order (key
        group, then id bytes; docs/state-admin.md), only those starting with
        ``prefix`` if given, after id ``after`` if given; at most ``limit``
        (1..10000, default the runtime's 1000). Page on with
        ``after=page.next_after`` while ``page.more``."""
        resp = self._invoke(self._list_state, self._list_state_req(type, prefix, after, limit),
                            timeout)
        return _state_ids(resp)

    def set_state(self, target_type, target_id, name, value, type=None, timeout=None):
        """Writes state ``name`` of the address (``value`` encoded like a
        message argument, ``type`` as for send()), applied like a message:
        never during an invocation of the address. Returns None once
        durable. FailedPrecondition when the function declares the state
        with another typename; ResourceExhausted over max_message_bytes."""
        self._invoke(self._set_state,
                     self._set_state_req(target_type, target_id, name, value, type), timeout)

    def delete_state(self, target_type, target_id, name=None, timeout=None):
        """Deletes state ``name`` of the address, or every state value of it
        (``name`` None), like set_state(). Returns how many values existed,
        once durable."""
        resp = self._invoke(self._delete_state,
                            self._delete_state_req(target_type, target_id, name), timeout)
        return resp.deleted

    def bootstrap(self, entries, mode="create-only", dry_run=False, timeout=None):
        """Loads addresses' application data (docs/savepoints.md#bootstrap):
        ``entries`` are AddressData messages (statemesh.v1.admin_pb2, as
        `statemesh bootstrap` builds them from JSON lines) or their encoded
        bytes, at most 10000 per call. Each is applied like a message to its
        address, all of it in one checkpoint, exactly once: the same entry
        (the same bytes) again is "already_loaded". ``mode``: "create-only"
        (an address that has state is left alone: "exists") or "overwrite"
        (its state is replaced). ``dry_run``: decide, apply nothing. Returns
        once durable, one :class:`BootstrapResult` per entry, in order; an
        "invalid" one says why in ``error`` and did not stop the others."""
        resp = self._invoke(self._bootstrap, self._bootstrap_req(entries, mode, dry_run), timeout)
        return _bootstrap_results(resp)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AsyncClient(_Methods):
    """asyncio client (grpc.aio); create it inside the event loop that uses it."""

    def __init__(self, target="127.0.0.1:7070", *, timeout=None, wait_for_ready=False,
                 options=None, credentials=None, token=None, tls_ca=None, tls_cert=None,
                 tls_key=None):
        token = _token(token)
        credentials = _tls_credentials(credentials, tls_ca, tls_cert, tls_key)
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(target,
                                                      options=_channel_options(options))
        else:
            self._channel = grpc.aio.secure_channel(target, credentials,
                                                    options=_channel_options(options))
        self._default_timeout = timeout
        self._wait = wait_for_ready
        self._bind(_authorized(self._channel, token))

    async def _invoke(self, method, req, timeout):
        try:
            return await method(req, timeout=self._timeout(timeout), wait_for_ready=self._wait)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    async def send(self, target_type, target_id, value, type=None, timeout=None, *,
                   idempotency_key=None, delay=None):
        await self._invoke(self._send, self._send_req(target_type, target_id, value, type,
                                                      idempotency_key, delay), timeout)

    async def call(self, target_type, target_id, value, type=None, timeout=None,
                   reply_type=None, raw=False, *, idempotency_key=None):
        resp = await self._invoke(self._call,
                                  self._call_req(target_type, target_id, value, type,
                                                 idempotency_key), timeout)
        return _decode_reply(resp, reply_type, raw)

    async def send_stream(self, messages, window=10000, batch_size=500, progress=None,
                          timeout=None):
        """Client.send_stream() for asyncio: ``messages`` may be an iterable
        or an async iterable; ``progress`` may be a function or a coroutine
        function."""
        import asyncio
        import inspect
        st = _StreamState(window, batch_size)
        cond = asyncio.Condition()
        if hasattr(messages, "__aiter__"):
            ait = messages.__aiter__()
            sync_it = None
        else:
            ait = None
            sync_it = iter(messages)

        async def requests():
            buf = []
            while True:
                try:
                    if ait is not None:
                        item = await ait.__anext__()
                    else:
                        item = next(sync_it)
                except (StopIteration, StopAsyncIteration):
                    break
                except asyncio.CancelledError:
                    raise
                except BaseException as e:
                    st.source_error = e
                    break
                m = st.encode(item)
                if m is None:
                    continue
                buf.append(m)
                if len(buf) >= st.chunk:
                    async with cond:
                        await cond.wait_for(lambda: st.room(len(buf)))
                    if st.done:
                        return
                    st.on_sent(len(buf))
                    yield b"".join(buf)
                    buf = []
            if buf:
                async with cond:
                    await cond.wait_for(lambda: st.room(len(buf)))
                if st.done:
                    return
                st.on_sent(len(buf))
                yield b"".join(buf)

        call = self._send_stream(requests(), timeout=timeout, wait_for_ready=self._wait)
        try:
            async for resp in call:
                async with cond:
                    st.on_response(resp)
                    cond.notify_all()
                if progress is not None:
                    r = progress(st.summary())
                    if inspect.isawaitable(r):
                        await r
        except grpc.RpcError as e:
            st.done = True
            async with cond:
                cond.notify_all()
            st.raise_failed(e)
        except BaseException:
            st.done = True
            call.cancel()
            raise
        return st.result()

    def subscribe(self, egress, from_offset=None, earliest=False, latest=False, follow=True,
                  timeout=None):
        """Client.subscribe() for asyncio: an :class:`AsyncSubscription`
        (``async for record in client.subscribe(...)``)."""
        req = self._subscribe_req(egress, from_offset, earliest, latest, follow)
        return AsyncSubscription(self._subscribe(req, timeout=timeout,
                                                 wait_for_ready=self._wait))

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

    async def dead_letters(self, type=None, after_id=0, limit=100, timeout=None):
        resp = await self._invoke(self._list_dl, self._list_dl_req(type, after_id, limit),
                                  timeout)
        return _dead_letters(resp)

    async def replay_dead_letters(self, ids=None, all=False, type=None, timeout=None):
        resp = await self._invoke(self._replay_dl, self._selector(ids, all, type), timeout)
        return resp.count

    async def drop_dead_letters(self, ids=None, all=False, type=None, timeout=None):
        resp = await self._invoke(self._drop_dl, self._selector(ids, all, type), timeout)
        return resp.count

    async def inspect(self, target_type, target_id, timeout=None):
        resp = await self._invoke(self._inspect, self._inspect_req(target_type, target_id),
                                  timeout)
        return _address_status(resp.status)

    async def stuck(self, type=None, limit=None, timeout=None):
        resp = await self._invoke(self._list_stuck, self._stuck_req(type, limit), timeout)
        return _stuck_list(resp)

    async def skip(self, target_type, target_id, timeout=None):
        resp = await self._invoke(self._skip, self._address_req(target_type, target_id),
                                  timeout)
        return resp.dead_letter_id

    async def resume(self, target_type, target_id, timeout=None):
        await self._invoke(self._resume, self._address_req(target_type, target_id), timeout)

    async def list_state(self, type, prefix=None, after=None, limit=None, timeout=None):
        resp = await self._invoke(self._list_state,
                                  self._list_state_req(type, prefix, after, limit), timeout)
        return _state_ids(resp)

    async def set_state(self, target_type, target_id, name, value, type=None, timeout=None):
        await self._invoke(self._set_state,
                           self._set_state_req(target_type, target_id, name, value, type),
                           timeout)

    async def delete_state(self, target_type, target_id, name=None, timeout=None):
        resp = await self._invoke(self._delete_state,
                                  self._delete_state_req(target_type, target_id, name), timeout)
        return resp.deleted

    async def bootstrap(self, entries, mode="create-only", dry_run=False, timeout=None):
        resp = await self._invoke(self._bootstrap, self._bootstrap_req(entries, mode, dry_run),
                                  timeout)
        return _bootstrap_results(resp)

    async def close(self):
        await self._channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


_OUTCOMES = ("loaded", "already_loaded", "exists", "invalid")


def _bootstrap_results(resp):
    return [BootstrapResult(_OUTCOMES[r.outcome] if r.outcome < len(_OUTCOMES) else "invalid",
                            r.error) for r in resp.results]


def _state_ids(resp):
    return StateIds(list(resp.ids), resp.more, resp.next_after_id if resp.more else None)


def _records(resp):
    for e in resp.records:
        src = e.source
        v = e.value
        yield EgressRecord(e.offset, e.timestamp_ms, Address(src.type, src.id),
                           Message(v.typename, v.value), e.node)


class Subscription:
    """Iterator of :class:`EgressRecord` from Client.subscribe().

    ``close()`` (or leaving ``with``) ends it; iteration then stops
    quietly. ``offset`` is the offset of the last record returned (0 before
    the first): resume later with ``subscribe(name, from_offset=offset + 1)``.
    """

    def __init__(self, call):
        self._call = call
        self._pending = iter(())
        self._closed = False
        self._cancelled = False
        self.offset = 0

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            for rec in self._pending:
                self.offset = rec.offset
                return rec
            if self._closed:
                raise StopIteration
            try:
                resp = next(self._call)
            except StopIteration:
                self._closed = True
                raise
            except grpc.RpcError as e:
                self._closed = True
                if e.code() == grpc.StatusCode.CANCELLED and self._cancelled:
                    raise StopIteration from None
                raise from_rpc_error(e) from None
            self._pending = _records(resp)

    def close(self):
        """Ends the subscription (cancels the stream)."""
        if not self._closed:
            self._cancelled = True
            self._closed = True
            self._call.cancel()

    cancel = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class AsyncSubscription:
    """Async iterator of :class:`EgressRecord` from AsyncClient.subscribe()
    (``async for``; ``close()`` or ``async with`` ends it)."""

    def __init__(self, call):
        self._call = call
        self._pending = iter(())
        self._closed = False
        self._cancelled = False
        self.offset = 0

    def __aiter__(self):
        return self

    async def __anext__(self):
        while True:
            for rec in self._pending:
                self.offset = rec.offset
                return rec
            if self._closed:
                raise StopAsyncIteration
            try:
                resp = await self._call.read()
            except grpc.RpcError as e:
                self._closed = True
                if e.code() == grpc.StatusCode.CANCELLED and self._cancelled:
                    raise StopAsyncIteration from None
                raise from_rpc_error(e) from None
            except BaseException:
                if self._cancelled:
                    raise StopAsyncIteration from None
                raise
            if resp is grpc.aio.EOF:
                self._closed = True
                raise StopAsyncIteration
            self._pending = _records(resp)

    def close(self):
        if not self._closed:
            self._cancelled = True
            self._closed = True
            self._call.cancel()

    cancel = close

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()
