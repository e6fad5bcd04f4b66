"""Packing and unpacking of application payloads (``google.protobuf.Any``).

The root forwards Any values untouched; only the SDKs, which know the user's
message types, pack and unpack them, through these two functions so that a
wrong type is reported the same way everywhere.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf import any_pb2, message

M = TypeVar("M", bound=message.Message)

TYPE_URL_PREFIX = "type.googleapis.com/"
# A type URL names a message type ("type.googleapis.com/" + its full name,
# ASCII): real ones are well under 200 characters, 2048 is room for any of
# them. A longer one is refused as INVALID_ARGUMENT where it arrives (the root
# before any leaf call, the SDKs before decoding), and an error message
# quotes at most _QUOTED_TYPE_URL_CHARS of one: gRPC allows 8 KiB for all of
# a call's metadata, where an error's text travels, and a leaf that echoed a
# 16 KiB type URL had its answer refused by the root's channel, which then
# looked like a transport failure (UNAVAILABLE, and a failover).
MAX_TYPE_URL_LENGTH = 2048
# How much of a wrong type URL an error message quotes (characters).
_QUOTED_TYPE_URL_CHARS = 200


class PayloadError(ValueError):
    """A payload of the wrong type, or one whose bytes do not decode."""


def type_url(message_type: type[message.Message]) -> str:
    """The Any type URL of ``message_type``."""
    return TYPE_URL_PREFIX + message_type.DESCRIPTOR.full_name


def pack(msg: message.Message) -> any_pb2.Any:
    """Wrap ``msg`` in an Any."""
    wrapped = any_pb2.Any()
    wrapped.Pack(msg)
    return wrapped


def unpack(wrapped: any_pb2.Any, message_type: type[M]) -> M:
    """Decode ``wrapped`` as ``message_type``; raise PayloadError naming the expected type."""
    expected = message_type.DESCRIPTOR.full_name
    if not wrapped.type_url:
        raise PayloadError(f"payload is empty: expected a packed {expected} (type URL {type_url(message_type)})")
    if len(wrapped.type_url) > MAX_TYPE_URL_LENGTH:
        raise PayloadError(
            f"payload type URL is {len(wrapped.type_url)} characters, over the limit of {MAX_TYPE_URL_LENGTH}: "
            f"expected {type_url(message_type)}"
        )
    actual = wrapped.type_url.rsplit("/", 1)[-1]
    if actual != expected:
        raise PayloadError(f"payload has type {quoted(actual)}, expected {expected!r}")
    result = message_type()
    try:
        result.ParseFromString(wrapped.value)
    except message.DecodeError as exc:
        raise PayloadError(f"payload of type {expected!r} does not decode: {exc}") from exc
    return result


def quoted(name: str) -> str:
    """``repr`` of a type name from a request, cut short: an error message must stay small."""
    if len(name) <= _QUOTED_TYPE_URL_CHARS:
        return repr(name)
    return f"{name[:_QUOTED_TYPE_URL_CHARS]!r}... ({len(name)} characters)"
