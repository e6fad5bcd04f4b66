"""Shared internals of ``leaf_sdk`` and ``merge_sdk``; not a public API.

Both SDKs serve one user function behind one unary RPC and differ only in
what they decode and what context they hand over. What they share lives
here, so that a fix reaches both:

- ``errors``: the one table from exceptions to gRPC status codes;
- ``calls``: admission, sync/async invocation, cancellation, counters;
- ``callables``: inspecting the user's functions (async or not, annotations)
  and adapting the lifecycle hooks;
- ``flags``: command-line flags with environment fallbacks, and the options
  they build.

Users never import this package: each SDK re-exports what it needs.
"""
