"""Exceptions raised by the ingress clients.

Every gRPC error from the runtime becomes a :class:`StatemeshError` (or a
subclass) carrying ``code`` (a ``grpc.StatusCode``) and ``details`` (the
runtime's message). The subclasses also derive from the matching built-in
exception, so ``except TimeoutError`` catches a Call deadline and ``except
ValueError`` an invalid argument.
"""

import grpc

__all__ = ["StatemeshError", "NotFound", "InvalidArgument", "Unavailable",
           "DeadlineExceeded", "ResourceExhausted", "Overloaded", "OffsetTrimmed",
           "AlreadyExists", "FailedPrecondition", "Aborted", "Internal", "Unauthenticated",
           "PermissionDenied", "from_rpc_error"]


class StatemeshError(Exception):
    """A failed ingress/admin request: ``code`` (grpc.StatusCode), ``details``."""

    code = grpc.StatusCode.UNKNOWN

    def __init__(self, details="", code=None):
        if code is not None:
            self.code = code
        self.details = details
        super().__init__("%s: %s" % (self.code.name, details) if details else self.code.name)


class NotFound(StatemeshError, LookupError):
    """No endpoint serves the function type (or no such state)."""
    code = grpc.StatusCode.NOT_FOUND


class InvalidArgument(StatemeshError, ValueError):
    """Malformed address, missing or bad argument."""
    code = grpc.StatusCode.INVALID_ARGUMENT


class Unavailable(StatemeshError, ConnectionError):
    """The runtime is not reachable or is shutting down."""
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(StatemeshError, TimeoutError):
    """No reply before the deadline (the message itself stays accepted)."""
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(StatemeshError):
    """Message larger than the runtime's limit, or the runtime is overloaded
    (its queued-message memory is full: retry later). ``Overloaded`` is
    another name for it."""
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


Overloaded = ResourceExhausted


class OffsetTrimmed(StatemeshError, LookupError):
    """Subscribe: the requested egress offset was already removed by the
    log's retention (start from ``earliest=True`` instead)."""
    code = grpc.StatusCode.OUT_OF_RANGE


class AlreadyExists(StatemeshError):
    """The runtime refused to create something that already exists."""
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(StatemeshError):
    """The runtime is not in a state that allows the request."""
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(StatemeshError):
    """The request was given up: e.g. a Call whose batch exhausted its retries
    and went to the dead-letter store."""
    code = grpc.StatusCode.ABORTED


class Internal(StatemeshError):
    """The runtime could not commit (storage error) or failed internally."""
    code = grpc.StatusCode.INTERNAL


class Unauthenticated(StatemeshError, PermissionError):
    """The runtime requires a bearer token and none, or an unknown one, was
    sent (``token=`` / $STATEMESH_TOKEN; docs/security.md)."""
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(StatemeshError, PermissionError):
    """The token is valid but its role does not allow the request (e.g. a
    client token calling an admin method)."""
    code = grpc.StatusCode.PERMISSION_DENIED


_BY_CODE = {c.code: c for c in (NotFound, InvalidArgument, Unavailable, DeadlineExceeded,
                                ResourceExhausted, OffsetTrimmed, AlreadyExists,
                                FailedPrecondition, Aborted, Internal, Unauthenticated,
                                PermissionDenied)}


def from_rpc_error(err):
    """The StatemeshError for a grpc.RpcError (sync or aio)."""
    try:
        code = err.code()
        details = err.details() or ""
    except Exception:  # not a call error (e.g. a channel-level failure)
        code, details = grpc.StatusCode.UNKNOWN, str(err)
    cls = _BY_CODE.get(code)
    if cls is None:
        return StatemeshError(details, code)
    return cls(details)
