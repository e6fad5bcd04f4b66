"""scatter_common.bodies: a request body that does not parse is a value, never an exception."""

from __future__ import annotations

from protos.scatter_gather.v1 import leaf_pb2, root_pb2
from scatter_common.bodies import Undecodable, deserializer


def test_a_valid_body_parses() -> None:
    request = leaf_pb2.ExecuteRequest(shard_index=3, shard_count=4)
    assert deserializer(leaf_pb2.ExecuteRequest)(request.SerializeToString()) == request


def test_an_invalid_body_is_undecodable_with_a_message() -> None:
    for body in (b"\xff\xff\xff\xff\x0f", b"\x0a\x05ab", b"\x0f"):
        result = deserializer(root_pb2.QueryRequest)(body)
        assert result == Undecodable("scatter_gather.v1.QueryRequest", len(body))
        assert isinstance(result, Undecodable)
        assert f"({len(body)} bytes) does not parse as scatter_gather.v1.QueryRequest" in result.message


def test_deep_nesting_is_undecodable_not_an_exception() -> None:
    # 20,000 nested group starts, far past protobuf's recursion limit.
    assert isinstance(deserializer(root_pb2.QueryRequest)(b"\x0b" * 20_000), Undecodable)
