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
    actual = wrapped.type_url.rsplit("/", 1)[-1]
    if actual != expected:
        raise PayloadError(f"payload has type {actual!r}, expected {expected!r}")
    result = message_type()
    try:
        result.ParseFromString(wrapped.value)
    except message.DecodeError as exc:
        raise PayloadError(f"payload of type {expected!r} does not decode: {exc}") from exc
    return result
