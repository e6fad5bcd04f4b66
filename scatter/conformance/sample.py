"""The sample file of the conformance kit, and turning its payloads into ``Any`` values.

A sample describes one valid request of an application (JSON)::

    {
      "request": {"type": "probe.v1.ProbeRequest", "json": {"value": 1}},
      "slow_request": {"type": "probe.v1.ProbeRequest", "json": {"delay": "10s"}},
      "leaf_response_type": "probe.v1.ProbePartial",
      "partials": [{"type": "probe.v1.ProbePartial", "json": {"shard_index": 0, "value": 2}}],
      "merge_response_type": "probe.v1.ProbeResponse",
      "slow_merge_request": {"type": "busy.v1.Request", "json": {"rows": 1000000}}
    }

Only ``request`` is required. ``slow_merge_request`` is a request payload the
merge takes seconds over (with the sample's partials), if the application has one.
Every payload is either ``{"type": NAME,
"json": OBJECT}`` (protobuf's JSON mapping) or ``{"type_url": URL,
"value_base64": BYTES}`` (already encoded: no type knowledge needed). A
message type named by ``type`` is found by the one resolver,
``scatter_common.message_types.MessageTypes``: ``.proto`` files given with
``--proto``, the generated modules of its package under ``protos``, modules
given with ``--import``, and the server reflection of the server checked
(or of ``--types-from``): a leaf in any language that serves reflection for
its own message types needs nothing else.

What lives here: parsing and validating the sample, encoding its payloads.
What does not: any check (``checks``), finding types (``MessageTypes``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import any_pb2, json_format

from scatter.messages import UNKNOWN_TYPE_FIX
from scatter_common.message_types import MessageTypes, pool_of

TYPE_URL_PREFIX = "type.googleapis.com/"
_SAMPLE_KEYS = (
    "request",
    "slow_request",
    "leaf_response_type",
    "partials",
    "merge_response_type",
    "slow_merge_request",
)


class SampleError(ValueError):
    """A sample file that cannot be used; the message names the key and the fix."""


@dataclass(frozen=True)
class PayloadSpec:
    """One payload of the sample, as written: a type and JSON, or a type URL and bytes."""

    type_name: str
    json_value: dict[str, Any] | None = None
    value: bytes | None = None
    url: str = ""  # as written in the sample, when given encoded

    @property
    def type_url(self) -> str:
        return self.url or TYPE_URL_PREFIX + self.type_name


@dataclass(frozen=True)
class Sample:
    """A validated sample file."""

    request: PayloadSpec
    slow_request: PayloadSpec | None = None
    leaf_response_type: str = ""
    partials: tuple[PayloadSpec, ...] = field(default_factory=tuple)
    merge_response_type: str = ""
    slow_merge_request: PayloadSpec | None = None


def _payload_spec(value: object, where: str) -> PayloadSpec:
    if not isinstance(value, dict):
        raise SampleError(f"{where}: expected an object with 'type' and 'json', or 'type_url' and 'value_base64'")
    keys = set(value)
    if keys == {"type", "json"}:
        if not isinstance(value["type"], str) or not value["type"]:
            raise SampleError(f"{where}.type: expected a message name such as 'probe.v1.ProbeRequest'")
        if not isinstance(value["json"], dict):
            raise SampleError(f"{where}.json: expected the message as a JSON object")
        return PayloadSpec(value["type"].removeprefix(TYPE_URL_PREFIX), json_value=value["json"])
    if keys == {"type_url", "value_base64"}:
        url, encoded = value["type_url"], value["value_base64"]
        if not isinstance(url, str) or "/" not in url:
            raise SampleError(f"{where}.type_url: expected e.g. 'type.googleapis.com/pkg.v1.Message'")
        if not isinstance(encoded, str):
            raise SampleError(f"{where}.value_base64: expected a base64 string")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise SampleError(f"{where}.value_base64: not valid base64: {exc}") from None
        return PayloadSpec(url.rsplit("/", 1)[1], value=raw, url=url)
    raise SampleError(
        f"{where}: expected exactly the keys 'type' and 'json', or 'type_url' and 'value_base64'; got {sorted(keys)}"
    )


def _type_name(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise SampleError(f"{key}: expected a message name such as 'probe.v1.ProbePartial'")
    return value.removeprefix(TYPE_URL_PREFIX)


def parse_sample(data: object) -> Sample:
    """Validate a sample document (the parsed JSON)."""
    if not isinstance(data, dict):
        raise SampleError("a sample is a JSON object with at least a 'request' key")
    unknown = sorted(set(data) - set(_SAMPLE_KEYS))
    if unknown:
        raise SampleError(f"unknown keys {unknown}; the keys are {list(_SAMPLE_KEYS)}")
    if "request" not in data:
        raise SampleError("'request' is required: a valid request of the application")
    partials = data.get("partials", [])
    if not isinstance(partials, list):
        raise SampleError("partials: expected a list of payloads, one per shard")
    slow = data.get("slow_request")
    slow_merge = data.get("slow_merge_request")
    return Sample(
        request=_payload_spec(data["request"], "request"),
        slow_request=None if slow is None else _payload_spec(slow, "slow_request"),
        leaf_response_type=_type_name(data, "leaf_response_type"),
        partials=tuple(_payload_spec(p, f"partials[{i}]") for i, p in enumerate(partials)),
        merge_response_type=_type_name(data, "merge_response_type"),
        slow_merge_request=None if slow_merge is None else _payload_spec(slow_merge, "slow_merge_request"),
    )


def load_sample(path: str | Path) -> Sample:
    """Read and validate a sample file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise SampleError(f"{path}: cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise SampleError(f"{path}: not valid JSON: {exc}") from None
    try:
        return parse_sample(data)
    except SampleError as exc:
        raise SampleError(f"{path}: {exc}") from None


def to_any(spec: PayloadSpec, types: MessageTypes) -> any_pb2.Any:
    """Encode ``spec`` as an Any; a SampleError when its type is unknown or its JSON does not fit."""
    if spec.value is not None:
        return any_pb2.Any(type_url=spec.type_url, value=spec.value)
    cls = types.find(spec.type_name)
    if cls is None:
        raise SampleError(
            f"{types.explain_unknown(spec.type_name)}; {UNKNOWN_TYPE_FIX}, or give the payload encoded "
            "(type_url and value_base64)"
        )
    msg = cls()
    try:
        json_format.ParseDict(spec.json_value or {}, msg, descriptor_pool=pool_of(cls))
    except json_format.ParseError as exc:
        raise SampleError(f"the JSON is not a valid {spec.type_name}: {exc}") from None
    return any_pb2.Any(type_url=spec.type_url, value=msg.SerializeToString())
