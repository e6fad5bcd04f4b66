"""The ``scatter`` command and the tools around the root server.

- ``cli``: the entry point; subcommands are imported only when used.
- ``runtime``: ``scatter up``, a whole deployment as local processes (a pod
  supervisor); its public face is ``scatter.runtime``'s ``__all__``, used by
  the demo, the benchmarks and the tests.
- ``query``: ``scatter query``, one request from JSON to JSON.
- ``conformance``: ``scatter conformance``, the kit that checks a leaf or a
  merge in any language against the contract.

This package may import everything below it (root, the SDKs' contracts,
scatter_common); nothing imports it but the demo and the benchmarks, and
they use public faces only (``tests/test_boundaries.py``).
"""
