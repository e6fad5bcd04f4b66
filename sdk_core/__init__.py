"""What ``leaf_sdk`` and ``merge_sdk`` share: the SDK core.

Both SDKs serve one user function behind one unary RPC and differ only in
what they decode and what context they hand over. What they share lives
here, so that a fix reaches both:

- ``server``: the one server base, ``HandlerServer`` (types, counters,
  hooks, ``serve`` and ``main``), its servicer skeleton ``HandlerServicer``
  and the base of every context, ``HandlerContext``; a role subclasses
  them with only what differs (see the module's rules);
- ``errors``: the one table from exceptions to gRPC status codes;
- ``calls``: admission, sync/async invocation, cancellation, counters;
- ``callables``: inspecting the user's functions (async or not, annotations,
  "cannot infer") and adapting the lifecycle hooks;
- ``flags``: command-line flags with environment fallbacks, and the options
  they build (``ServerOptions.from_args`` for every role);
- ``lifecycle``: serving a handler until SIGTERM, with metrics.

The face (``__all__``) is what a role needs to subclass the server base:
the base itself, the pieces its servicer and options are built from, and
the error hierarchy. What the base does for a role (adapting hooks,
serving until a signal, metrics) stays inside. The SDKs import from this
face; users import from
the SDKs, which re-export what users need (``InvalidRequest``,
``CallStats``). This package imports ``scatter_common`` and ``protos``
only, never an SDK or the root.
"""

from sdk_core.callables import UserHook, message_class, parameter_annotations, resolve_message_type
from sdk_core.calls import CallStats, Decoder, Failure, HandlerRunner, Prepare, ServicerContext
from sdk_core.errors import (
    BadResult,
    InvalidRequest,
    NotReady,
    Overloaded,
    SdkError,
    UndecodableBody,
    WrongShard,
    to_status,
)
from sdk_core.flags import DEFAULT_MAX_CONCURRENCY, Flag, FlagParser, ServerOptions, int_in
from sdk_core.server import HandlerContext, HandlerServer, HandlerServicer, SdkRequest, add_method, main_or_exit

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "BadResult",
    "CallStats",
    "Decoder",
    "Failure",
    "Flag",
    "FlagParser",
    "HandlerContext",
    "HandlerRunner",
    "HandlerServer",
    "HandlerServicer",
    "InvalidRequest",
    "NotReady",
    "Overloaded",
    "Prepare",
    "SdkError",
    "SdkRequest",
    "ServerOptions",
    "ServicerContext",
    "UndecodableBody",
    "UserHook",
    "WrongShard",
    "add_method",
    "int_in",
    "main_or_exit",
    "message_class",
    "parameter_annotations",
    "resolve_message_type",
    "to_status",
]
