"""The ``scatter`` command: one entry point, subcommands loaded on demand.

Built-in subcommands are named here as ``module:function`` strings of this
package and the root server, imported only when used, so ``scatter query``
does not pay for numpy. Applications add their own subcommands as entry
points of the group ``scatter.commands`` (``pyproject.toml``): that is how
``scatter demo`` (``demo_search``) and ``scatter bench`` (``loadtest``)
arrive, so neither this package nor the root ever imports them by name.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "scatter.commands"

# name -> (target "module:function" taking argv and returning an exit code, one-line help)
BUILTIN: dict[str, tuple[str, str]] = {
    "up": ("scatter.runtime.cli:main", "start a local deployment (root, merge, leaves) from a TOML file"),
    "export": ("scatter.export.cli:main", "write Kubernetes manifests or a Compose file for a deployment file"),
    "root": ("root.server:main", "run one root server from a TOML config"),
    "query": ("scatter.query:main", "send one request to a root and print the JSON answer"),
    "conformance": ("scatter.conformance.cli:main", "check a leaf or merge in any language against the contract"),
    "front": ("scatter.front:main", "print an nginx config for an admission front before a root (cheap shedding)"),
}

# Help lines of the subcommands this distribution registers as entry points;
# a third party's subcommand is listed with the name of its distribution.
KNOWN_HELP = {
    "demo": "run the demo search over the Python docs (index, serve, query)",
    "bench": "run a benchmark (Locust load scenarios, overhead, sdk-call, compare, fanout, tail, demo-scale)",
}

Command = Callable[[list[str]], int]


def subcommands() -> dict[str, tuple[str, str]]:
    """Every subcommand: name -> (target, help), built-ins first."""
    found = dict(BUILTIN)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name not in found:
            dist = point.dist.name if point.dist is not None else "a plugin"
            found[point.name] = (point.value, KNOWN_HELP.get(point.name, f"(from {dist})"))
    return found


def _usage(commands: dict[str, tuple[str, str]]) -> str:
    width = max(len(name) for name in commands)
    lines = ["usage: scatter COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in commands.items()]
    lines += ["", "Run 'scatter COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    commands = subcommands()
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage(commands))
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in commands:
        print(f"scatter: unknown command {name!r}\n\n{_usage(commands)}", file=sys.stderr)
        return 2
    module_name, func_name = commands[name][0].split(":")
    func: Command = getattr(importlib.import_module(module_name), func_name)
    return func(rest)


if __name__ == "__main__":
    sys.exit(main())
