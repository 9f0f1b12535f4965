"""statemesh: the Python SDK of statemesh (function servers and ingress clients).

    from statemesh import StatefulFunctions, ValueSpec, IntType, serve

    functions = StatefulFunctions()

    @functions.bind("example/counter", specs=[ValueSpec("n", IntType)])
    def counter(ctx, message):
        ctx.storage.n = (ctx.storage.n or 0) + message.as_int()
        ctx.reply(ctx.storage.n)

    serve(functions, "unix:/tmp/counter.sock")

See sdk-python/README.md for the whole API.
"""

from ._version import __version__  # generated from the tree's VERSION by `make`
from .types import (Type, TypedValue, simple_type, BoolType, IntType, FloatType,
                    StringType, BytesType, JsonType)
from .function import (StatefulFunctions, ValueSpec, Context, Message, Address, Storage,
                       StateError, RequestHandler, SDK_NAME)
from .server import serve, serve_async, FunctionServer
from .client import (Client, AsyncClient, StateInfo, StreamMessage, StreamError,
                     SendStreamResult, EgressRecord, Subscription, AsyncSubscription,
                     DeadLetter, DeadLetters, AddressStatus, StuckList,
                     StateIds, BootstrapResult)
from .errors import (StatemeshError, NotFound, InvalidArgument, Unavailable,
                     DeadlineExceeded, ResourceExhausted, Overloaded, OffsetTrimmed,
                     AlreadyExists, FailedPrecondition, Aborted, Internal, Unauthenticated,
                     PermissionDenied)

__all__ = [
    "StatefulFunctions", "ValueSpec", "serve", "serve_async", "FunctionServer",
    "Client", "AsyncClient", "StateInfo", "StreamMessage", "StreamError", "SendStreamResult",
    "EgressRecord", "Subscription", "AsyncSubscription", "DeadLetter", "DeadLetters",
    "AddressStatus", "StuckList", "StateIds", "BootstrapResult",
    "Context", "Message", "Address", "Storage", "StateError", "RequestHandler",
    "Type", "TypedValue", "simple_type",
    "BoolType", "IntType", "FloatType", "StringType", "BytesType", "JsonType",
    "StatemeshError", "NotFound", "InvalidArgument", "Unavailable", "DeadlineExceeded",
    "ResourceExhausted", "Overloaded", "OffsetTrimmed", "AlreadyExists", "FailedPrecondition",
    "Aborted", "Internal", "Unauthenticated", "PermissionDenied", "SDK_NAME",
]
