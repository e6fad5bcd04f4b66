"""Request bodies that do not parse: a verdict for the servicer, never an exception in grpc.

grpc calls a method's request deserializer before the servicer runs; when
it raises, grpc logs a traceback at ERROR and answers UNKNOWN, and the
servicer never learns the call happened (so it is not counted either). Every
service of ours (Root.Query, the root's Leaf.Execute, the SDKs' Leaf.Execute
and Merge.Merge) is registered with ``deserializer(message_type)`` instead:
it never raises, and hands the servicer an ``Undecodable`` in place of the
message. The servicer answers INVALID_ARGUMENT with ``Undecodable.message``,
logs one line and counts the call like any other rejected request.

What lives here: the marker and the deserializer. What does not: the status
it maps to (each servicer's error table) or any logging.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import Message

__all__ = ["Undecodable", "deserializer"]

M = TypeVar("M", bound=Message)


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A request body of ``size`` bytes that is not a valid ``message_name``."""

    message_name: str
    size: int

    @property
    def message(self) -> str:
        """What the caller is told: what was wrong and what to send instead."""
        return (
            f"the request body ({self.size} bytes) does not parse as {self.message_name}: "
            f"send a serialized {self.message_name} (is the client built from this service's .proto?)"
        )


def deserializer(message_type: type[M]) -> Callable[[bytes], M | Undecodable]:
    """A request deserializer for grpc that returns ``Undecodable`` instead of raising."""
    parse = message_type.FromString
    name = message_type.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> M | Undecodable:
        try:
            return parse(data)
        # DecodeError in practice; anything else protobuf may raise on hostile
        # bytes (nesting too deep, say) is the body's fault just the same, and
        # an exception here would reach grpc's traceback-and-UNKNOWN path.
        except Exception:
            return Undecodable(name, len(data))

    return deserialize
