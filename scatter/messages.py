"""Message classes by full name, for the command's tools that take a type on the command line.

``scatter query --type probe.v1.ProbeRequest`` and the conformance kit's
sample name application messages by their full protobuf name. A name is
looked up in protobuf's default pool; when it is not there yet, only the
generated modules of its own package are imported: a type of package
``probe.v1`` lives in ``protos/probe/v1/*_pb2.py``, because the package
path matches the package (docs/design.md; grpc's ``health.proto`` does the
same). Modules the user names with ``--import`` are imported as they are.
Nothing here imports every module under ``protos``: an application's protos
cost nothing to a tool that does not use them, and a broken one cannot break
an unrelated command.

What does not live here: the server's reflection (``scatter.conformance.sample``
asks it for the types no local module defines).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path

from google.protobuf import descriptor_pool, message, message_factory

import protos

__all__ = ["MessageClass", "find_message", "import_modules", "modules_for"]

MessageClass = type[message.Message]

_PROTOS = Path(protos.__file__).resolve().parent
# The well-known types a request or an answer may use (google/protobuf/*.proto), imported on demand.
_WELL_KNOWN = ("any", "duration", "timestamp", "wrappers", "struct", "empty", "field_mask")


def import_modules(names: Iterable[str]) -> None:
    """Import the modules given with ``--import``; an ImportError names the one that failed."""
    for name in names:
        importlib.import_module(name)


def modules_for(full_name: str) -> list[str]:
    """The generated modules that can define ``full_name``: those of its package, or []."""
    *scopes, _ = full_name.split(".")
    if not scopes or not all(part.isidentifier() for part in scopes):
        return []
    if scopes[:2] == ["google", "protobuf"]:
        return [f"google.protobuf.{name}_pb2" for name in _WELL_KNOWN]
    # The longest prefix that is a folder: a nested type (pkg.v1.Outer.Inner) lives in pkg/v1 too.
    for end in range(len(scopes), 0, -1):
        folder = _PROTOS.joinpath(*scopes[:end])
        if folder.is_dir():
            package = ".".join(["protos", *scopes[:end]])
            return [f"{package}.{path.stem}" for path in sorted(folder.glob("*_pb2.py"))]
    return []


def _lookup(full_name: str) -> MessageClass | None:
    try:
        return message_factory.GetMessageClass(descriptor_pool.Default().FindMessageTypeByName(full_name))
    except KeyError:
        return None


def find_message(full_name: str) -> MessageClass | None:
    """The class of the message ``full_name``, importing only its package's modules; None if unknown."""
    found = _lookup(full_name)
    if found is None:
        import_modules(modules_for(full_name))
        found = _lookup(full_name)
    return found
