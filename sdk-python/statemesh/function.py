"""Stateful functions: binding, the handler context, and batch processing.

    functions = StatefulFunctions()

    @functions.bind("example/user", specs=[ValueSpec("visits", IntType)])
    def user(ctx, message):
        ctx.storage.visits = (ctx.storage.visits or 0) + 1
        ctx.send("example/greeter", ctx.address.id, ctx.storage.visits)

How a batch is processed (RequestHandler):

* The runtime sends ToFunction messages; each carries several batches, each
  batch one address, its declared state and 1..N invocations in arrival
  order. Every batch of a message is processed, and the answers go back
  coalesced in one FromFunction message.
* If a declared state has no slot in the batch, the answer is ``incomplete``
  with the missing specs (the runtime registers them and re-sends).
* The invocations run in order against one storage: invocation 2 sees what
  invocation 1 wrote. Only the final value of each written state is returned.
* A handler that raises turns the whole batch into a ``failure`` carrying the
  traceback; nothing the batch did (writes, sends, replies) is kept, and the
  runtime retries it. An unbound function type is a failure too.
* Messages sent and replies made carry the index of the invocation being
  handled, which is how a reply reaches the ingress Call at the start of a
  chain of functions.
* ``async def`` handlers are driven inline: a coroutine that finishes without
  suspending costs no task; one that really awaits continues as a task and
  its batch is answered when it completes (other batches are not held up).

A Context and its Storage belong to one batch and are valid only while the
handler runs; Message objects may be kept.
"""

import builtins
import datetime
import inspect
import logging
import math
import re
import traceback
from collections import namedtuple

from . import _wire
from ._version import __version__
from .types import Type, TypedValue, _BUILTIN, _FAST, _INFER, infer_type, _unpack_q
from .types import BoolType, IntType, FloatType, StringType, BytesType, JsonType

__all__ = ["StatefulFunctions", "ValueSpec", "Context", "Message", "Address",
           "Storage", "RequestHandler", "StateError", "MAX_DELAY", "MAX_TTL"]

SDK_NAME = "statemesh-python/" + __version__

_TYPE_RE = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+\Z")
_STATE_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}\Z")
_EGRESS_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}\Z")
_MAX_TOKEN = 256

#: Longest delay of ctx.send_after (function.proto DelayedMessage.delay_ms).
MAX_DELAY = datetime.timedelta(days=365)
#: Longest state TTL a ValueSpec accepts (keeps now + TTL far from int64 ms).
MAX_TTL = datetime.timedelta(days=36500)
_MAX_FAILURE = 16 * 1024
_MISSING = object()

log = logging.getLogger("statemesh")


def _duration_ms(what, d, maximum):
    """A duration (datetime.timedelta, or seconds as int/float) -> whole
    milliseconds, rounded up so that "after d" is never early. Raises
    TypeError/ValueError naming ``what``."""
    if isinstance(d, datetime.timedelta):
        us = d // datetime.timedelta(microseconds=1)
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        if isinstance(d, float) and not math.isfinite(d):
            raise ValueError("%s must be a finite duration, got %r" % (what, d))
        if d > maximum.total_seconds():
            us = None
        else:
            if isinstance(d, int):
                us = d * 1_000_000
            else:
                # Nearest microsecond (0.3 s is 300 ms, not 301), but a
                # positive delay never becomes 0.
                us = round(d * 1e6) or (1 if d > 0 else 0)
    else:
        raise TypeError("%s must be a datetime.timedelta or seconds (int/float), got %s"
                        % (what, type(d).__name__))
    if us is not None and us < 0:
        raise ValueError("%s must not be negative, got %r" % (what, d))
    if us is None or us > maximum // datetime.timedelta(microseconds=1):
        raise ValueError("%s must be at most %s, got %r" % (what, _human(maximum), d))
    return -(-us // 1000)


def _human(td):
    return "%d days" % td.days if td.days and not td.seconds else str(td)


def _check_key(what, key):
    """A token or key: str of 1..256 UTF-8 bytes without NUL -> bytes."""
    if not isinstance(key, str):
        raise TypeError("%s must be a str, got %s" % (what, type(key).__name__))
    b = key.encode("utf-8")
    if not 0 < len(b) <= _MAX_TOKEN:
        raise ValueError("%s must be 1..%d bytes of UTF-8, got %d bytes"
                         % (what, _MAX_TOKEN, len(b)))
    if b"\x00" in b:
        raise ValueError("%s must not contain NUL: %r" % (what, key))
    return b


def _check_token(token):
    return _check_key("cancellation token", token)


def _address_field(target_type, target_id):
    """Encoded Address (fields 1 and 2, no outer tag) of a message target."""
    prefix = _TARGETS.get(target_type)
    if prefix is None:
        prefix = _target_prefix(target_type)
    if not isinstance(target_id, str):
        raise TypeError("target id must be a str, got %s" % target_id.__class__.__name__)
    idb = target_id.encode()
    if not 0 < len(idb) <= 1024:
        raise ValueError("target id must be 1..1024 bytes of UTF-8, got %r" % (target_id,))
    return prefix + _wire.ld(b"\x12", idb)


class Address(namedtuple("Address", "type id")):
    """A function instance: ``type`` ("namespace/name") and ``id``."""
    __slots__ = ()

    def __str__(self):
        return "%s/%s" % (self.type, self.id)


class StateError(AttributeError):
    """Access to a state that the function did not declare."""


class ValueSpec:
    """A declared state value: ``ValueSpec("seen", IntType)``.

    ``expire_after_write`` / ``expire_after_invoke`` (a datetime.timedelta
    or seconds; at most one of them) give the value a TTL: it expires that
    long after it was last written, or after the address was last invoked
    (any message extends it). An expired value reads as absent (None).
    """

    __slots__ = ("name", "type", "expire_after_write", "expire_after_invoke",
                 "_ttl_write_ms", "_ttl_invoke_ms", "_nb", "_name_field", "_del", "_mod")

    def __init__(self, name, type, expire_after_write=None, expire_after_invoke=None):
        if not isinstance(name, str) or not _STATE_RE.match(name):
            raise ValueError("state name must match [A-Za-z0-9_.-]{1,128}, got %r" % (name,))
        if name.startswith("_"):
            raise ValueError("state names starting with '_' are reserved: %r" % (name,))
        if not isinstance(type, Type):
            raise TypeError("ValueSpec type must be a statemesh Type (IntType, "
                            "simple_type(...), ...), got %r" % (type,))
        if expire_after_write is not None and expire_after_invoke is not None:
            raise ValueError("state %r: give expire_after_write or expire_after_invoke, "
                             "not both" % (name,))
        self.name = name
        self.type = type
        self._ttl_write_ms = self._ttl(name, "expire_after_write", expire_after_write)
        self._ttl_invoke_ms = self._ttl(name, "expire_after_invoke", expire_after_invoke)
        self.expire_after_write = (datetime.timedelta(milliseconds=self._ttl_write_ms)
                                   if self._ttl_write_ms else None)
        self.expire_after_invoke = (datetime.timedelta(milliseconds=self._ttl_invoke_ms)
                                    if self._ttl_invoke_ms else None)
        self._nb = name.encode()
        # StateMutation fields, pre-encoded: 2 = name; MODIFY is kind 0 (omitted).
        self._name_field = _wire.ld(b"\x12", self._nb)
        self._del = _wire.ld(b"\x0a", b"\x08\x01" + self._name_field)
        self._mod = {}      # value length -> encoded StateMutation up to the value bytes

    @staticmethod
    def _ttl(name, what, d):
        if d is None:
            return 0
        ms = _duration_ms("state %r: %s" % (name, what), d, MAX_TTL)
        if ms <= 0:
            raise ValueError("state %r: %s must be positive (None: never expires), got %r"
                             % (name, what, d))
        return ms

    def _spec_bytes(self):
        """Encoded StateSpec (no outer tag): name, typename, TTL."""
        b = _wire.ld(b"\x0a", self._nb) + _wire.ld(b"\x12", self.type._tnb)
        if self._ttl_write_ms:
            b += b"\x18" + _wire.varint(self._ttl_write_ms)
        if self._ttl_invoke_ms:
            b += b"\x20" + _wire.varint(self._ttl_invoke_ms)
        return b

    def _modify(self, v):
        """The encoded Result.state_mutations field setting this state to v."""
        n = len(v)
        p = self._mod.get(n)
        if p is None:
            tv = self.type._tv_prefix + (b"\x12" + _wire.varint(n) if n else b"")
            m = self._name_field + b"\x1a" + _wire.varint(len(tv) + n) + tv
            p = b"\x0a" + _wire.varint(len(m) + n) + m
            if n < 4096 and len(self._mod) < 256:
                self._mod[n] = p
        return p + v

    def __repr__(self):
        ttl = ""
        if self.expire_after_write is not None:
            ttl = ", expire_after_write=%r" % (self.expire_after_write,)
        elif self.expire_after_invoke is not None:
            ttl = ", expire_after_invoke=%r" % (self.expire_after_invoke,)
        return "ValueSpec(%r, %s%s)" % (self.name, self.type.typename, ttl)


class Message:
    """One incoming message: a typed value.

    ``as_int()``/``as_string()``/... decode it and raise TypeError when the
    message has another type; ``is_int()``/... test the type; ``raw`` is the
    undecoded bytes whatever the type; ``value`` decodes any built-in type.
    """

    __slots__ = ("_tn", "_v")

    def __init__(self, typename, value):
        # typename: str or bytes; value: bytes.
        self._tn = typename.encode() if typename.__class__ is str else bytes(typename)
        self._v = bytes(value)

    @property
    def typename(self):
        return self._tn.decode("utf-8")

    @property
    def raw(self):
        """The value's bytes, whatever its type."""
        return self._v

    @property
    def typed_value(self):
        return TypedValue(self._tn.decode("utf-8"), self._v)

    @property
    def value(self):
        """The decoded value for a built-in type; a TypedValue otherwise."""
        t = _BUILTIN.get(self._tn)
        if t is None:
            return TypedValue(self._tn.decode("utf-8"), self._v)
        return t._deser(self._v)

    def is_type(self, type):
        return self._tn == type._tnb

    def as_type(self, type):
        if self._tn != type._tnb:
            raise self._mismatch(type)
        return type._deser(self._v)

    def _mismatch(self, type):
        return TypeError("message is %s, not %s" % (self._tn.decode("utf-8", "replace"),
                                                     type.typename))

    def is_bool(self):
        return self._tn == b"statemesh/bool"

    def is_int(self):
        return self._tn == b"statemesh/int64"

    def is_float(self):
        return self._tn == b"statemesh/float64"

    def is_string(self):
        return self._tn == b"statemesh/string"

    def is_bytes(self):
        return self._tn == b"statemesh/bytes"

    def is_json(self):
        return self._tn == b"statemesh/json"

    def as_bool(self):
        if self._tn != b"statemesh/bool":
            raise self._mismatch(BoolType)
        return BoolType._deser(self._v)

    def as_int(self):
        if self._tn != b"statemesh/int64":
            raise self._mismatch(IntType)
        v = self._v
        if len(v) != 8:
            return IntType._deser(v)      # raises
        return _unpack_q(v)[0]

    def as_float(self):
        if self._tn != b"statemesh/float64":
            raise self._mismatch(FloatType)
        return FloatType._deser(self._v)

    def as_string(self):
        if self._tn != b"statemesh/string":
            raise self._mismatch(StringType)
        return self._v.decode("utf-8")

    def as_bytes(self):
        if self._tn != b"statemesh/bytes":
            raise self._mismatch(BytesType)
        return self._v

    def as_json(self):
        if self._tn != b"statemesh/json":
            raise self._mismatch(JsonType)
        return JsonType._deser(self._v)

    def __repr__(self):
        return "<Message %s %r>" % (self._tn.decode("utf-8", "replace"), self._v[:64])


class Storage:
    """The declared state of the address being invoked.

    ``storage.name`` reads the value (None when absent), ``storage.name = v``
    writes it (v must suit the spec's type; None deletes), ``del
    storage.name`` deletes it. ``storage["name"]`` works too. Mutating a
    value in place (e.g. a JSON dict) is not a write: assign it back.
    Accessing an undeclared name raises StateError (an AttributeError).

    Values are decoded on first read and written values are serialized when
    assigned (so a wrong kind raises at the assignment); a state that is not
    touched costs nothing.
    """

    # _states: name bytes -> (typename, bytes) | None, as received
    # _bound:  the function (its specs by name)
    # _vals:   name -> current Python value (decoded or assigned)
    # _dirty:  name -> serialized bytes | None (delete), the writes
    __slots__ = ("_states", "_bound", "_vals", "_dirty")

    def __init__(self, bound, states):
        _set_states(self, states)
        _set_bound(self, bound)
        _set_vals(self, {})
        _set_dirty(self, {})

    def _undeclared(self, name):
        b = self._bound
        return StateError("%s has no state %r; declared: %s (add a ValueSpec to its "
                          "bind(specs=...))"
                          % (b.typename, name, ", ".join(sorted(b.spec_by_name)) or "none"))

    def _load(self, name):
        spec = self._bound.spec_by_name.get(name)
        if spec is None:
            if name[:2] == "__":
                raise AttributeError(name)
            raise self._undeclared(name)
        sv = self._states.get(spec._nb)
        if sv is None:
            v = None
        else:
            tn, raw = sv
            t = spec.type
            if tn != t._tnb:
                raise TypeError("state %r is stored as %s but declared %s"
                                % (name, tn.decode("utf-8", "replace"), t.typename))
            try:
                v = t._deser(raw)
            except Exception as e:
                raise ValueError("state %r: cannot decode %s: %s"
                                 % (name, t.typename, e)) from e
        self._vals[name] = v
        return v

    def __setattr__(self, name, value):
        spec = self._bound.spec_by_name.get(name)
        if spec is None:
            raise self._undeclared(name)
        t = spec.type
        if value.__class__ is t._py:
            try:
                raw = t._fast(value)
            except Exception:
                raw = _ser_state(name, t, value)
        elif value is None:
            raw = None
        else:
            raw = _ser_state(name, t, value)
        self._vals[name] = value
        self._dirty[name] = raw

    def __delattr__(self, name):
        self.__setattr__(name, None)

    def __getitem__(self, name):
        v = self._vals.get(name, _MISSING)
        if v is _MISSING:
            return self._load(name)
        return v

    __getattr__ = __getitem__
    __setitem__ = __setattr__
    __delitem__ = __delattr__

    def __contains__(self, name):
        """True when the state is declared and currently has a value."""
        if name not in self._bound.spec_by_name:
            return False
        return self[name] is not None

    def __dir__(self):
        return sorted(self._bound.spec_by_name)

    def __repr__(self):
        return "<Storage %s>" % ", ".join(sorted(self._bound.spec_by_name))


def _read_property(name):
    def read(self):
        v = self._vals.get(name, _MISSING)
        if v is _MISSING:
            return self._load(name)
        return v
    read.__name__ = name
    return property(read, doc="state %r" % name)


def _storage_class(typename, specs):
    """A Storage subclass with a read property per declared state (a
    property read costs a quarter of a __getattr__ fallback)."""
    ns = {"__slots__": ()}
    for spec in specs:
        if spec.name.isidentifier() and not hasattr(Storage, spec.name):
            ns[spec.name] = _read_property(spec.name)
    return type("Storage", (Storage,), ns)


def _ser_state(name, t, value):
    try:
        return t._ser(value)
    except (TypeError, ValueError, OverflowError) as e:
        raise TypeError("state %r is %s: %s" % (name, t.typename, e)) from None


_set_states = Storage.__dict__["_states"].__set__
_set_bound = Storage.__dict__["_bound"].__set__
_set_vals = Storage.__dict__["_vals"].__set__
_set_dirty = Storage.__dict__["_dirty"].__set__
_set_tn = Message.__dict__["_tn"].__set__
_set_v = Message.__dict__["_v"].__set__
_new = object.__new__

_TARGETS = {}       # target type str -> pre-encoded Address field 1


def _target_prefix(t):
    p = _TARGETS.get(t)
    if p is None:
        if not isinstance(t, str) or not _TYPE_RE.match(t) or len(t) > 256:
            raise ValueError("target type must be 'namespace/name' ([A-Za-z0-9_.-]+), got %r"
                             % (t,))
        p = _wire.ld(b"\x0a", t.encode())
        if len(_TARGETS) < 10000:
            _TARGETS[t] = p
    return p


_V = _wire._VARINT
_bid_varint = _wire.bid_varint
_mkvarint = _wire._make_varint


def _encode_tv(value, type):
    """TypedValue bytes for a value sent or replied."""
    if type is None:
        type = _INFER.get(value.__class__)
        if type is None:
            if isinstance(value, TypedValue):
                v = value.value
                tnb = value.typename.encode()
                n = len(v)
                return (_wire.ld(b"\x0a", tnb)
                        + (b"\x12" + (_V[n] if n < 4096 else _mkvarint(n)) + v if n else b""))
            type = infer_type(value)
    elif isinstance(value, TypedValue):
        if value.typename != type.typename:
            raise TypeError("TypedValue is %s, not %s" % (value.typename, type.typename))
        v = value.value
        n = len(v)
        return type._tv_prefix + (b"\x12" + (_V[n] if n < 4096 else _mkvarint(n)) + v
                                  if n else b"")
    elif type.__class__ is not Type:
        raise TypeError("type= must be a statemesh Type, got %r" % (type,))
    v = type._ser(value)
    n = len(v)
    if n:
        return type._tv_prefix + b"\x12" + (_V[n] if n < 4096 else _mkvarint(n)) + v
    return type._tv_prefix


def _reply_prefix(t, n, i):
    """Encoded Result.replies field for a value of type t, n bytes, invocation i,
    without the value bytes."""
    tv = t._tv_prefix + (b"\x12" + _wire.varint(n) if n else b"")
    body = (b"\x08" + _wire.varint(i) if i else b"") + b"\x12" + _wire.varint(len(tv) + n) + tv
    p = b"\x1a" + _wire.varint(len(body) + n) + body
    if n < 4096 and i < 1024 and len(t._cache) < 65536:
        t._cache[n | (i << 32)] = p
    return p


class Context:
    """What a handler gets besides the message.

    ``address`` (the function instance being invoked), ``caller`` (the
    sending function's Address, None for a message from the ingress),
    ``trace_id`` and ``traceparent`` (W3C trace context, None when not traced),
    ``storage``, ``send()``, ``reply()``, ``send_after()``,
    ``cancel_delayed()``, ``send_egress()``.

    Every effect (state writes, messages, delayed messages, cancellations,
    egress records, replies) is kept only if the whole batch succeeds: a
    handler that raises discards all of them.
    """

    __slots__ = ("storage", "_ttype", "_tid", "_address", "_caller", "_index", "_out",
                 "_tokens", "_trace")

    def __init__(self, ttype, tid, storage, out):
        self.storage = storage
        self._ttype = ttype
        self._tid = tid
        self._address = None
        self._caller = None
        self._trace = None
        self._index = 0
        self._out = out
        self._tokens = None     # token bytes -> index in _out of its DelayedMessage

    @property
    def address(self):
        a = self._address
        if a is None:
            a = self._address = Address(self._ttype.decode(), self._tid.decode())
        return a

    @property
    def caller(self):
        c = self._caller
        if c is None:
            return None
        return Address(c[0].decode(), c[1].decode())

    @property
    def trace_id(self):
        """The W3C trace id of this invocation, 32 lowercase hex digits, or
        None when the message is not traced (docs/tracing.md)."""
        tp = self._trace
        if tp is None or len(tp) < 55 or tp[2:3] != b"-" or tp[35:36] != b"-":
            return None
        return tp[3:35].decode("ascii", "replace")

    @property
    def traceparent(self):
        """The invocation's W3C ``traceparent`` header (its span is the
        runtime's invocation span: spans a handler records are its
        children), or None when the message is not traced."""
        tp = self._trace
        return None if tp is None else tp.decode("ascii", "replace")

    @property
    def invocation_index(self):
        """Index of the current message within its batch."""
        return self._index

    def send(self, target_type, target_id, value, type=None):
        """Send ``value`` to the function ``target_type``/``target_id``.

        The value's type is ``type`` if given, the TypedValue's own, or
        inferred: bool, int, float, str, bytes, dict/list (JSON). The message
        is sent only if the whole batch succeeds.
        """
        prefix = _TARGETS.get(target_type)
        if prefix is None:
            prefix = _target_prefix(target_type)
        if target_id.__class__ is not str and not isinstance(target_id, str):
            raise TypeError("target id must be a str, got %s" % target_id.__class__.__name__)
        idb = target_id.encode()
        n = len(idb)
        if not n or n > 1024:
            raise ValueError("target id must be 1..1024 bytes of UTF-8, got %r" % (target_id,))
        addr = prefix + b"\x12" + _V[n] + idb
        f = _FAST.get(value.__class__) if type is None else None
        if f is not None:
            try:
                v = f[1](value)
            except Exception:
                tv = _encode_tv(value, type)     # raises the proper error
            else:
                n = len(v)
                tv = f[0]._tv_prefix + b"\x12" + _V[n] + v if 0 < n < 4096 else \
                    _encode_tv(value, type)
        else:
            tv = _encode_tv(value, type)
        n = len(tv)
        body = (b"\x0a" + _V[len(addr)] + addr
                + b"\x12" + (_V[n] if n < 4096 else _mkvarint(n)) + tv)
        i = self._index
        if i:
            body += b"\x18" + (_V[i] if i < 4096 else _mkvarint(i))
        n = len(body)
        self._out.append(b"\x12" + (_V[n] if n < 4096 else _mkvarint(n)) + body)

    def reply(self, value, type=None):
        """Answer the ingress Call that led to the current message (if any;
        the first reply to a Call wins, replies without one are dropped)."""
        if type is None:
            f = _FAST.get(value.__class__)
            if f is not None:
                try:
                    v = f[1](value)
                except Exception:
                    pass                       # the slow path raises the proper error
                else:
                    p = f[0]._cache.get(len(v) | (self._index << 32))
                    if p is None:
                        p = _reply_prefix(f[0], len(v), self._index)
                    self._out.append(p + v)
                    return
        tv = _encode_tv(value, type)
        n = len(tv)
        body = b"\x12" + (_V[n] if n < 4096 else _mkvarint(n)) + tv
        i = self._index
        if i:
            body = b"\x08" + (_V[i] if i < 4096 else _mkvarint(i)) + body
        n = len(body)
        self._out.append(b"\x1a" + (_V[n] if n < 4096 else _mkvarint(n)) + body)

    def send_after(self, delay, target_type, target_id, value, cancellation_token=None, *,
                   type=None):
        """Send ``value`` to ``target_type``/``target_id`` after ``delay``
        (a datetime.timedelta or seconds, 0 .. 365 days; rounded up to whole
        milliseconds). The runtime keeps it durably until it is due and
        delivers it once.

        With ``cancellation_token`` (a str of 1..256 UTF-8 bytes, scoped to
        this address) it can be cancelled with ``cancel_delayed(token)``
        until it fires. A token must not be reused while its message is
        pending: cancel it first (a cancellation always applies before the
        delayed messages of the same batch, so cancel + send_after with the
        same token reschedules). Reusing a token within one batch without
        cancelling it raises ValueError; reusing one that is pending from an
        earlier batch makes the runtime fail the batch.

        The value is typed as for ``send()``. Sent only if the whole batch
        succeeds.
        """
        ms = _duration_ms("delay", delay, MAX_DELAY)
        tok = None if cancellation_token is None else _check_token(cancellation_token)
        addr = _address_field(target_type, target_id)
        tv = _encode_tv(value, type)
        body = _wire.ld(b"\x0a", addr) + _wire.ld(b"\x12", tv)
        if ms:
            body += b"\x18" + _wire.varint(ms)
        out = self._out
        if tok is not None:
            body += _wire.ld(b"\x22", tok)
            tokens = self._tokens
            if tokens is None:
                tokens = self._tokens = {}
            elif tok in tokens:
                raise ValueError("cancellation token %r is already used by a delayed message "
                                 "of this batch; cancel_delayed() it first"
                                 % (cancellation_token,))
            tokens[tok] = len(out)
        out.append(_wire.ld(b"\x22", body))

    def cancel_delayed(self, cancellation_token):
        """Cancel the pending delayed message this address sent with
        ``cancellation_token`` (in this batch or an earlier one). Unknown or
        already delivered tokens are ignored. Applied only if the whole batch
        succeeds."""
        tok = _check_token(cancellation_token)
        out = self._out
        tokens = self._tokens
        if tokens is not None:
            i = tokens.pop(tok, None)
            if i is not None:
                out[i] = b""            # scheduled earlier in this batch: drop it
        out.append(_wire.ld(b"\x2a", _wire.ld(b"\x0a", tok)))

    def send_egress(self, egress, value, type=None):
        """Append ``value`` to the egress log ``egress`` (a name declared in
        the runtime's config, ``[A-Za-z0-9_.-]{1,128}``); clients read it with
        ``Client.subscribe()``. Records of one batch keep their order. The
        value is typed as for ``send()``. Written only if the whole batch
        succeeds."""
        if not isinstance(egress, str):
            raise TypeError("egress name must be a str, got %s" % builtins.type(egress).__name__)
        if not _EGRESS_RE.match(egress):
            raise ValueError("egress name must match [A-Za-z0-9_.-]{1,128}, got %r" % (egress,))
        tv = _encode_tv(value, type)
        self._out.append(_wire.ld(b"\x32", _wire.ld(b"\x0a", egress.encode())
                                  + _wire.ld(b"\x12", tv)))


class _Bound:
    __slots__ = ("typename", "fn", "specs", "spec_by_name", "is_async", "storage_cls")

    def __init__(self, typename, fn, specs, is_async):
        self.typename = typename
        self.fn = fn
        self.specs = specs
        self.spec_by_name = {s.name: s for s in specs}
        self.is_async = is_async
        self.storage_cls = _storage_class(typename, specs)


def _is_async(fn):
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)
    return call is not None and inspect.iscoroutinefunction(call)


class StatefulFunctions:
    """The set of function types a server serves."""

    def __init__(self):
        self._bound = {}        # typename bytes -> _Bound

    def bind(self, typename, specs=()):
        """Decorator: ``@functions.bind("ns/name", specs=[ValueSpec(...)])``
        on ``def f(ctx, message)`` or ``async def f(ctx, message)``."""
        def decorator(fn):
            self.register(typename, fn, specs)
            return fn
        return decorator

    def register(self, typename, fn, specs=()):
        if not isinstance(typename, str) or not _TYPE_RE.match(typename) or len(typename) > 256:
            raise ValueError("function type must be 'namespace/name' ([A-Za-z0-9_.-]+), "
                             "got %r" % (typename,))
        if not callable(fn):
            raise TypeError("handler must be callable")
        specs = tuple(specs)
        names = set()
        for s in specs:
            if not isinstance(s, ValueSpec):
                raise TypeError("specs must be ValueSpec objects, got %r" % (s,))
            if s.name in names:
                raise ValueError("%s declares state %r twice" % (typename, s.name))
            names.add(s.name)
        key = typename.encode()
        if key in self._bound:
            raise ValueError("%s is already bound" % typename)
        self._bound[key] = _Bound(typename, fn, specs, _is_async(fn))

    @property
    def types(self):
        return [b.typename for b in self._bound.values()]

    @property
    def has_async(self):
        return any(b.is_async for b in self._bound.values())

    def __contains__(self, typename):
        return typename.encode() in self._bound

    def __len__(self):
        return len(self._bound)


# ---- batch processing -------------------------------------------------------

def _failure(bid, text):
    if len(text) > _MAX_FAILURE:
        text = text[:_MAX_FAILURE // 2] + "\n...\n" + text[-_MAX_FAILURE // 2:]
    body = _wire.ld(b"\x22", _wire.ld(b"\x0a", text.encode("utf-8", "replace")))
    if bid:
        body = b"\x08" + _wire.varint(bid) + body
    return _wire.ld(b"\x0a", body)


def _handler_failure(bound, address, index, exc):
    """Failure text: the exception first (the runtime logs the beginning of
    it), then where, then the traceback."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    ident = address.decode("utf-8", "replace")
    log.warning("handler failed fn=%s id=%s message=%d error=%s: %s (batch answered as "
                "failure; the runtime retries it)", bound.typename, ident, index,
                type(exc).__name__, exc)
    log.debug("%s", tb)
    return "%s: %s (in %s id=%s, message %d of the batch)\n%s" % (
        type(exc).__name__, exc, bound.typename, ident, index, tb)


def _incomplete(bid, missing):
    body = b"".join(_wire.ld(b"\x0a", s._spec_bytes()) for s in missing)
    body = _wire.ld(b"\x1a", body)
    if bid:
        body = b"\x08" + _wire.varint(bid) + body
    return _wire.ld(b"\x0a", body)


def _result(bid, out, dirty, specs):
    if dirty:
        for name, v in dirty.items():
            if v is None:
                out.append(specs[name]._del)
            else:
                out.append(specs[name]._modify(v))
    body = b"".join(out)
    n = len(body)
    ln = _V[n] if n < 4096 else _mkvarint(n)
    if bid:
        bv = _bid_varint(bid)
        m = 2 + len(bv) + len(ln) + n
        return b"".join((b"\x0a", _V[m] if m < 4096 else _mkvarint(m), b"\x08", bv,
                         b"\x12", ln, body))
    m = 1 + len(ln) + n
    return b"".join((b"\x0a", _V[m] if m < 4096 else _mkvarint(m), b"\x12", ln, body))


def _reject_awaitable(bound, r):
    close = getattr(r, "close", None)
    if close is not None:
        close()
    raise TypeError("handler of %s returned an awaitable; declare it 'async def'"
                    % bound.typename)


class _Resume:
    """Awaitable that finishes a coroutine which suspended while it was being
    driven inline (the equivalent of ``yield from`` on the rest of it)."""

    __slots__ = ("_coro", "_first")

    def __init__(self, coro, first):
        self._coro = coro
        self._first = first

    def __await__(self):
        coro = self._coro
        y = self._first
        self._first = None
        while True:
            try:
                sent = yield y
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    y = coro.throw(exc)
                except StopIteration as s:
                    return s.value
            else:
                try:
                    y = coro.send(sent)
                except StopIteration as s:
                    return s.value

    def close(self):
        self._coro.close()


class RequestHandler:
    """Turns ToFunction bytes into FromFunction bytes for a StatefulFunctions.

    ``handle_sync(data) -> bytes`` and ``await handle_async(data) -> bytes``
    process every batch of one ToFunction message and return one FromFunction
    message with every answer. ``process(data)`` is the building block the
    servers use: it returns the answers ready now and the awaitables of the
    batches whose async handler suspended.
    """

    def __init__(self, functions):
        if not isinstance(functions, StatefulFunctions):
            raise TypeError("expected a StatefulFunctions")
        self._functions = functions
        self._bound = functions._bound
        self._loop = None

    # -- describe --

    def describe(self):
        """The DescribeResponse (generated protobuf message)."""
        from .v1 import function_pb2, types_pb2
        resp = function_pb2.DescribeResponse(sdk=SDK_NAME)
        for b in self._bound.values():
            resp.functions.add(
                type=b.typename,
                states=[types_pb2.StateSpec(name=s.name, typename=s.type.typename,
                                            expire_after_write_ms=s._ttl_write_ms,
                                            expire_after_invoke_ms=s._ttl_invoke_ms)
                        for s in b.specs])
        return resp

    # -- batches --

    def _run_sync(self, bound, bid, ttype, tid, states, invs):
        for spec in bound.specs:
            if spec._nb not in states:
                return _incomplete(bid, [s for s in bound.specs if s._nb not in states])
        out = []
        st = _new(bound.storage_cls)
        _set_states(st, states)
        _set_bound(st, bound)
        _set_vals(st, {})
        dirty = {}
        _set_dirty(st, dirty)
        ctx = Context(ttype, tid, st, out)
        fn = bound.fn
        i = 0
        try:
            for caller, tn, v, tp in invs:
                ctx._index = i
                ctx._caller = caller
                ctx._trace = tp
                m = _new(Message)
                _set_tn(m, tn)
                _set_v(m, v)
                r = fn(ctx, m)
                if r is not None and inspect.isawaitable(r):
                    _reject_awaitable(bound, r)
                i += 1
        except Exception as exc:
            return _failure(bid, _handler_failure(bound, tid, i, exc))
        return _result(bid, out, dirty, bound.spec_by_name)

    async def _run_async(self, bound, bid, ttype, tid, states, invs):
        for spec in bound.specs:
            if spec._nb not in states:
                return _incomplete(bid, [s for s in bound.specs if s._nb not in states])
        out = []
        st = _new(bound.storage_cls)
        _set_states(st, states)
        _set_bound(st, bound)
        _set_vals(st, {})
        dirty = {}
        _set_dirty(st, dirty)
        ctx = Context(ttype, tid, st, out)
        fn = bound.fn
        i = 0
        try:
            for caller, tn, v, tp in invs:
                ctx._index = i
                ctx._caller = caller
                ctx._trace = tp
                m = _new(Message)
                _set_tn(m, tn)
                _set_v(m, v)
                r = fn(ctx, m)
                if r is not None:
                    await r
                i += 1
        except Exception as exc:
            return _failure(bid, _handler_failure(bound, tid, i, exc))
        return _result(bid, out, dirty, bound.spec_by_name)

    def _unbound(self, bid, ttype):
        return _failure(bid, "function type %s is not bound in this server (serves: %s)"
                        % (ttype.decode("utf-8", "replace"),
                           ", ".join(sorted(self._functions.types)) or "nothing"))

    def process(self, data):
        """ToFunction bytes -> (answers, pending).

        ``answers``: encoded FromFunction fragments (each one BatchResponse
        field; concatenated they form a FromFunction message). ``pending``:
        None or a list of awaitables, one per batch whose async handler
        suspended, each resolving to one such fragment. Raises
        _wire.DecodeError on malformed input.
        """
        answers = []
        pending = None
        bound_map = self._bound
        for bid, ttype, tid, states, invs in _wire.decode_to_function(data):
            bound = bound_map.get(ttype)
            if bound is None:
                answers.append(self._unbound(bid, ttype))
            elif not bound.is_async:
                answers.append(self._run_sync(bound, bid, ttype, tid, states, invs))
            else:
                coro = self._run_async(bound, bid, ttype, tid, states, invs)
                try:
                    y = coro.send(None)
                except StopIteration as s:
                    answers.append(s.value)
                    continue
                if pending is None:
                    pending = []
                pending.append(_Resume(coro, y))
        return answers, pending

    async def process_all(self, data):
        """ToFunction bytes -> list of every answer fragment (awaits the
        batches whose handler suspended). Run inside an event loop."""
        answers, pending = self.process(data)
        if pending:
            import asyncio
            answers.extend(await asyncio.gather(*pending))
        return answers

    def process_all_sync(self, data):
        """Like process_all() but blocking: async handlers run on a private
        event loop of the calling thread."""
        if not self._functions.has_async:
            return self.process(data)[0]
        return self._thread_loop().run_until_complete(self.process_all(data))

    async def handle_async(self, data):
        """ToFunction bytes -> FromFunction bytes (run inside an event loop)."""
        return b"".join(await self.process_all(data))

    def handle_sync(self, data):
        """ToFunction bytes -> FromFunction bytes, blocking."""
        return b"".join(self.process_all_sync(data))

    def _thread_loop(self):
        import asyncio
        import threading
        tl = self._loop
        if tl is None:
            tl = self._loop = threading.local()
        loop = getattr(tl, "loop", None)
        if loop is None or loop.is_closed():
            loop = tl.loop = asyncio.new_event_loop()
        return loop
