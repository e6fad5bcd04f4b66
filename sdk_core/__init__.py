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

The SDKs import from this package's face (``__all__``); users import from
the SDKs, which re-export what users need (``InvalidRequest``,
``CallStats``). This package imports ``scatter_common`` and ``protos``
only, never an SDK or the root.
"""

from sdk_core.callables import (
    UserHook,
    adapt_hook,
    is_async_callable,
    message_class,
    parameter_annotations,
    require_message_class,
    resolve_message_type,
)
from sdk_core.calls import CallScope, CallStats, Decoder, HandlerRunner, ServicerContext
from sdk_core.errors import BadResult, InvalidRequest, NotReady, Overloaded, SdkError, WrongShard, to_status
from sdk_core.flags import DEFAULT_MAX_CONCURRENCY, SERVER_FLAGS, Flag, FlagParser, ServerOptions, int_in
from sdk_core.lifecycle import run_main, serve_handler
from sdk_core.server import HandlerContext, HandlerServer, HandlerServicer, SdkRequest, main_or_exit

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "SERVER_FLAGS",
    "BadResult",
    "CallScope",
    "CallStats",
    "Decoder",
    "Flag",
    "FlagParser",
    "HandlerContext",
    "HandlerRunner",
    "HandlerServer",
    "HandlerServicer",
    "InvalidRequest",
    "NotReady",
    "Overloaded",
    "SdkError",
    "SdkRequest",
    "ServerOptions",
    "ServicerContext",
    "UserHook",
    "WrongShard",
    "adapt_hook",
    "int_in",
    "is_async_callable",
    "main_or_exit",
    "message_class",
    "parameter_annotations",
    "require_message_class",
    "resolve_message_type",
    "run_main",
    "serve_handler",
    "to_status",
]
