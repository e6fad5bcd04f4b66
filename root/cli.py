"""The ``scatter`` command: one entry point, subcommands loaded on demand.

Subcommands are named here as ``module:function`` strings and imported only
when used, so ``scatter query`` does not pay for numpy or the demo, and the
root package never imports the demo or the SDKs (``scatter demo`` lives in
``demo_search.cli``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# name -> (target "module:function" taking argv and returning an exit code, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "up": ("root.runtime.cli:main", "start a local deployment (root, merge, leaves) from a TOML file"),
    "root": ("root.server:main", "run one root server from a TOML config"),
    "query": ("root.query_cli:main", "send one request to a root and print the JSON answer"),
    "demo": ("demo_search.cli:main", "run the demo search over the Python docs (index, serve, query)"),
    "bench": ("loadtest.bench:main", "run a load benchmark scenario with Locust and print a summary"),
    "conformance": ("root.conformance.cli:main", "check a leaf or merge in any language against the contract"),
}


def _usage() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = ["usage: scatter COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "Run 'scatter COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"scatter: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name = SUBCOMMANDS[name][0].split(":")
    func: Callable[[list[str]], int] = getattr(importlib.import_module(module_name), func_name)
    return func(rest)


if __name__ == "__main__":
    sys.exit(main())
