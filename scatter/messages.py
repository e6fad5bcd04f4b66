"""The command's flags for application message types, shared by ``scatter query`` and ``scatter conformance``.

Both tools name application messages by their full protobuf name and find
them with the one resolver, ``scatter_common.message_types.MessageTypes``
(its docstring has the order of the sources). This module only turns the
same four flags into its ``TypeSources``, and says what to pass when a
type is found nowhere:

    --import MODULE       a Python module that defines types (Python users)
    --proto FILE          a .proto file, compiled at run time (repeatable)
    --proto-path DIR      a folder its imports are found in (repeatable)
    --types-from WHERE    a leaf's or merge's address, to ask its server
                          reflection; or a root's config file (*.toml),
                          to ask the reflection of the merge it names
"""

from __future__ import annotations

import argparse

from scatter_common.message_types import MessageTypeError, TypeSources

__all__ = ["UNKNOWN_TYPE_FIX", "add_type_flags", "type_sources"]

# What to do about a type found nowhere: the end of both tools' message.
UNKNOWN_TYPE_FIX = (
    "give its .proto file (--proto FILE, with --proto-path DIR for its imports), the address of a leaf or merge "
    "that serves reflection for it (--types-from HOST:PORT), or a Python module that defines it (--import MODULE)"
)


def add_type_flags(parser: argparse.ArgumentParser, reflection_default: str = "") -> None:
    """Add ``--import``, ``--proto``, ``--proto-path`` and ``--types-from`` to ``parser``."""
    group = parser.add_argument_group(
        "message types", "where the application's message types come from (no generated code needed)"
    )
    group.add_argument(
        "--proto", dest="protos", action="append", default=[], metavar="FILE", help=".proto file (repeatable)"
    )
    group.add_argument(
        "--proto-path",
        dest="proto_paths",
        action="append",
        default=[],
        metavar="DIR",
        help="folder where imports of the .proto files are found (repeatable; default: each file's folder)",
    )
    group.add_argument(
        "--types-from",
        default="",
        metavar="WHERE",
        help="ask the server reflection of this leaf or merge (HOST:PORT), or of the merge a root config "
        f"(*.toml) names{reflection_default}",
    )
    group.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE", help="Python module defining types"
    )


def type_sources(args: argparse.Namespace, reflection: str = "") -> TypeSources:
    """The ``TypeSources`` of the parsed flags; ``reflection`` is the address used without ``--types-from``.

    A ``--types-from`` ending in ``.toml`` is a root's config file: its
    merge knows both the request and the response types. An unreadable or
    invalid one is a MessageTypeError naming it.
    """
    where = str(args.types_from)
    if where.endswith(".toml"):
        from root.config import load_root_config  # only then: the root's config code is not small
        from root.errors import ConfigError

        try:
            where = load_root_config(where).merge_address
        except ConfigError as exc:
            raise MessageTypeError(f"--types-from {args.types_from}: not a usable root config: {exc}") from None
    return TypeSources(
        imports=tuple(args.imports),
        proto_files=tuple(args.protos),
        proto_paths=tuple(args.proto_paths),
        reflection=where or reflection,
    )
