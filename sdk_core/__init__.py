"""What ``leaf_sdk`` and ``merge_sdk`` share: the SDK core.

Both SDKs serve one user function behind one unary RPC and differ only in
what they decode and what context they hand over. What they share lives
here, so that a fix reaches both:

- ``errors``: the one table from exceptions to gRPC status codes;
- ``calls``: admission, sync/async invocation, cancellation, counters;
- ``callables``: inspecting the user's functions (async or not, annotations)
  and adapting the lifecycle hooks;
- ``flags``: command-line flags with environment fallbacks, and the options
  they build;
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
)
from sdk_core.calls import CallScope, CallStats, Decoder, HandlerRunner, ServicerContext
from sdk_core.errors import BadResult, InvalidRequest, NotReady, Overloaded, SdkError, WrongShard, to_status
from sdk_core.flags import DEFAULT_MAX_CONCURRENCY, SERVER_FLAGS, Flag, FlagParser, ServerOptions, int_in
from sdk_core.lifecycle import run_main, serve_handler

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "SERVER_FLAGS",
    "BadResult",
    "CallScope",
    "CallStats",
    "Decoder",
    "Flag",
    "FlagParser",
    "HandlerRunner",
    "InvalidRequest",
    "NotReady",
    "Overloaded",
    "SdkError",
    "ServerOptions",
    "ServicerContext",
    "UserHook",
    "WrongShard",
    "adapt_hook",
    "int_in",
    "is_async_callable",
    "message_class",
    "parameter_annotations",
    "require_message_class",
    "run_main",
    "serve_handler",
    "to_status",
]
