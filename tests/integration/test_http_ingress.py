"""The root's HTTP/JSON door (``[http]``, root/http_ingress.py) on real processes, asked as curl would.

A probe deployment (3 shards, one replica each, a real root and merge)
serves ``POST /v1/query``; every request is plain HTTP/1.1 from
``http.client`` or a raw socket. Each test ends by checking that the root
still answers a good query. A second deployment, the stock application
(whose types exist only as ``.proto`` files), is queried with its types
compiled from ``[http] proto_files``; its merge's reflection is asked by
the door's resolver directly.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import tomllib
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from protos.probe.v1 import probe_pb2
from root.config import HttpConfig
from root.http_ingress import INLINE_JSON_BYTES, HttpTypes
from scatter.runtime import Deployment, parse_deployment
from tests._cluster import Client, ms, probe_cluster
from tests._http import fetch, sample
from tests._procs import FIXTURES, wait_until

PROBE = "type.googleapis.com/probe.v1.ProbeRequest"
MAX_DEADLINE_MS = 3000
DEFAULT_DEADLINE_MS = 2000  # tests/_cluster.py's
MAX_MESSAGE_BYTES = 256 * 1024
MAX_IN_FLIGHT = 2

Answer = tuple[int, dict[str, str], dict[str, Any]]


@pytest.fixture(scope="module")
def probe() -> Iterator[Deployment]:
    with probe_cluster(
        shards=3,
        replicas=1,
        root={
            "max_in_flight": MAX_IN_FLIGHT,
            "max_deadline_ms": MAX_DEADLINE_MS,
            "max_message_bytes": MAX_MESSAGE_BYTES,
        },
        extra={"http": {"listen": "127.0.0.1:0"}},
    ) as deployment:
        yield deployment


def post(address: str, body: bytes | str, headers: dict[str, str] | None = None, path: str = "/v1/query") -> Answer:
    """One request as curl sends it (curl -d: a form content type, which the door does not mind)."""
    return request(
        address, "POST", path, body, {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
    )


def request(
    address: str, method: str, path: str, body: bytes | str = b"", headers: dict[str, str] | None = None
) -> Answer:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        connection.request(method, path, body=body.encode() if isinstance(body, str) else body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(raw) if raw else {}
    finally:
        connection.close()


def query(**fields: Any) -> str:
    options = fields.pop("options", None)
    document: dict[str, Any] = {"payload": {"@type": PROBE, **fields}}
    if options:
        document["options"] = options
    return json.dumps(document)


def assert_error(answer: Answer, status: int, code: int, *phrases: str) -> str:
    got_status, headers, body = answer
    assert got_status == status, answer
    assert headers["content-type"] == "application/json", headers
    assert headers["x-content-type-options"] == "nosniff", headers
    assert set(body) == {"code", "message", "details"} and body["code"] == code and body["details"] == [], body
    message: str = body["message"]
    for phrase in phrases:
        assert phrase in message, message
    assert "Traceback" not in message
    return message


def assert_serving(address: str) -> None:
    status, _, body = post(address, query(value=1))
    assert status == 200, body
    assert body["payload"]["sum"] == "9"  # (0+1+1) + (1+1+1) + (2+1+1)


def test_a_query_answers_the_merged_payload_coverage_and_reports(probe: Deployment) -> None:
    address = probe.children["root"].http_address
    status, headers, body = post(address, query(value=5))
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff"  # an echoed query is never sniffed as HTML
    # Each shard answers shard index + 1 + value; the probe merge sums them (uint64: a JSON string).
    assert body["payload"]["@type"] == "type.googleapis.com/probe.v1.ProbeResponse"
    assert body["payload"]["sum"] == str(3 * 5 + 1 + 2 + 3)
    assert body["payload"]["shardIndices"] == [0, 1, 2]
    assert body["coverage"]["total"] == 3 and body["coverage"]["answered"] == 3
    assert [s["shardIndex"] for s in body["shards"]] == [0, 1, 2]  # 0 written too: defaults are emitted
    assert {s["status"] for s in body["shards"]} == {"SHARD_STATUS_OK"}
    assert body["latency"].endswith("s") and len(body["requestId"]) == 32
    # The .proto's own field names work as well as lowerCamelCase ones; explain reaches the root.
    status, _, body = post(
        address, json.dumps({"payload": {"@type": PROBE, "value": 5}, "options": {"explain": True, "min_coverage": 1}})
    )
    assert status == 200, body
    assert all(s["attemptReports"] for s in body["shards"])


def test_a_large_body_is_converted_off_the_loop_and_answered(probe: Deployment) -> None:
    address = probe.children["root"].http_address
    large = query(value=1, failShards=[7] * 40_000)  # no shard 7: nothing fails; over INLINE_JSON_BYTES
    assert INLINE_JSON_BYTES < len(large) < MAX_MESSAGE_BYTES
    status, _, body = post(address, large)
    assert status == 200, body
    assert body["payload"]["sum"] == "9"
    assert_error(post(address, large[:-2]), 400, 3, "not JSON")


def test_bad_json_is_400_naming_what_is_wrong(probe: Deployment) -> None:
    address = probe.children["root"].http_address
    assert_error(post(address, '{"payload": '), 400, 3, "not JSON", "char 12", '"@type"')
    assert_error(post(address, b"\xff\xfe"), 400, 3, "not JSON")
    assert_error(post(address, "[1, 2]"), 400, 3, "not an object")
    assert_error(post(address, "{}"), 400, 3, 'no "payload" with an "@type"')
    assert_error(post(address, '{"payload": {"value": 5}}'), 400, 3, '"@type"')
    message = assert_error(post(address, query(valu=5)), 400, 3, "not a valid QueryRequest", '"valu"')
    assert "'value'" in message  # protobuf lists the fields there are
    assert_error(post(address, query(value="many")), 400, 3, "value")
    assert_error(post(address, json.dumps({"payload": {"@type": PROBE}, "options": {"bogus": 1}})), 400, 3, "bogus")
    assert_error(post(address, "[" * 60_000), 400, 3, "not JSON")  # nesting deeper than the parser goes
    # The leaf's verdict on a well-formed request passes through: INVALID_ARGUMENT is 400 as well.
    assert_error(post(address, query(value=str(2**64 - 1))), 400, 3, "too large")
    assert_serving(address)


def test_an_unknown_type_is_400_saying_how_to_make_it_known(probe: Deployment) -> None:
    address = probe.children["root"].http_address
    body = json.dumps({"payload": {"@type": "type.googleapis.com/probe.v1.Nope", "value": 1}})
    message = assert_error(post(address, body), 400, 3, "unknown message type 'probe.v1.Nope'")
    # What was searched (the merge's reflection by default), and how to make the type known.
    for phrase in ("generated code", "server reflection of", "proto_files", "types_from", "imports"):
        assert phrase in message, message
    assert_serving(address)


def test_an_oversized_body_is_413_before_it_is_read(probe: Deployment) -> None:
    address = probe.children["root"].http_address
    big = query(value=1, markerDir="x" * MAX_MESSAGE_BYTES)
    assert_error(post(address, big), 413, 8, f"over the limit of {MAX_MESSAGE_BYTES}", "max_message_bytes")
    # Within the body limit, but a payload larger than the root can forward with its framing: 413 too.
    near = query(value=1, markerDir="x" * (MAX_MESSAGE_BYTES - 120))
    assert len(near) < MAX_MESSAGE_BYTES
    assert_error(post(address, near), 413, 8, "this root forwards at most", "max_message_bytes")
    # Announced, never sent: the answer comes at once, without waiting for a gigabyte.
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/query HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 413 ")
    # Chunked bodies are not read: 411, send a Content-Length.
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/query HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 411 ")
    assert_serving(address)


def test_the_deadline_header_is_honoured_and_capped(probe: Deployment) -> None:
    address = probe.children["root"].http_address
    # Shard 0 takes 5 s; with 500 ms and partial results allowed, the others' answer comes back
    # with the time each leaf was given: within 500 ms, not the 2 s default.
    slow = query(value=1, shardDelays={"0": "5s"}, options={"minCoverage": 0})
    status, _, body = post(address, slow, {"grpc-timeout": "500m"})
    assert status == 200, body
    assert body["shards"][0]["status"] == "SHARD_STATUS_TIMEOUT"
    assert 0 < body["payload"]["maxRemainingMs"] <= 500, body
    # An hour is capped at max_deadline_ms: above the default, never above the cap.
    status, _, body = post(address, query(value=1), {"grpc-timeout": "1H"})
    assert status == 200, body
    assert DEFAULT_DEADLINE_MS < body["payload"]["maxRemainingMs"] <= MAX_DEADLINE_MS, body
    # No header: the root's default.
    status, _, body = post(address, query(value=1))
    assert 0 < body["payload"]["maxRemainingMs"] <= DEFAULT_DEADLINE_MS, body
    # Too short for anything: DEADLINE_EXCEEDED, 504, before any leaf is called.
    assert_error(post(address, query(value=1), {"grpc-timeout": "1m"}), 504, 4, "no time for the shards")
    assert_error(post(address, query(value=1), {"grpc-timeout": "soon"}), 400, 3, "grpc-timeout", "500m")
    assert_serving(address)


def test_requests_over_max_in_flight_are_shed_429_on_either_door(probe: Deployment) -> None:
    root = probe.children["root"]
    address = root.http_address
    metrics = root.metrics_address

    def held_over_grpc() -> None:
        client = Client(root.address)
        try:
            client.query(probe_pb2.ProbeRequest(value=1, delay=ms(2000)), timeout=10)
        finally:
            client.close()

    def held_over_http() -> None:
        post(address, query(value=1, delay="2s"))

    def in_flight() -> float:
        return sample(fetch(metrics, "/metrics"), "scatter_root_in_flight")

    for hold in (held_over_grpc, held_over_http):
        threads = [threading.Thread(target=hold) for _ in range(MAX_IN_FLIGHT)]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: in_flight() == MAX_IN_FLIGHT, 10, "the root holds max_in_flight requests")
            status, headers, body = post(address, query(value=1))
            assert_error((status, headers, body), 429, 8, f"limit of {MAX_IN_FLIGHT} requests in flight")
            assert headers["retry-after"] == "1"
            client = Client(root.address)
            try:
                with pytest.raises(grpc.RpcError) as refused:
                    client.probe(value=1)
                assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            finally:
                client.close()
        finally:
            for thread in threads:
                thread.join(timeout=15)
        wait_until(lambda: in_flight() == 0, 10, "the held requests ended")
    assert_serving(address)


def test_wrong_method_or_path(probe: Deployment) -> None:
    address = probe.children["root"].http_address
    answer = request(address, "GET", "/v1/query")
    assert_error(answer, 405, 12, "takes POST")
    assert answer[1]["allow"] == "POST"
    assert_error(request(address, "PUT", "/v1/query", query(value=1)), 405, 12, "takes POST")
    assert_error(post(address, query(value=1), path="/v1/search"), 404, 5, "POST a QueryRequest", "/v1/query")
    assert_error(request(address, "GET", "/"), 404, 5)
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")  # a TLS hello, say
        assert sock.recv(1024).startswith(b"HTTP/1.1 400 ")
    assert_serving(address)
    log = probe.children["root"].log_path.read_text()
    assert "Traceback" not in log, log


# -- types from .proto files and from reflection: the stock application -----------------------------

PROTO_DIR = FIXTURES / "proto"
STOCK_PROTO = PROTO_DIR / "stock" / "v1" / "stock.proto"


@pytest.fixture(scope="module")
def stock() -> Iterator[Deployment]:
    document = tomllib.loads((FIXTURES / "stock.toml").read_text())
    # Reflection off: the types can come only from the .proto file.
    document["http"] = {
        "listen": "127.0.0.1:0",
        "proto_files": [str(STOCK_PROTO)],
        "proto_paths": [str(PROTO_DIR)],
        "types_from": "",
    }
    with Deployment(parse_deployment(document, FIXTURES)) as deployment:
        yield deployment


STOCK_QUERY = json.dumps({"payload": {"@type": "type.googleapis.com/stock.v1.StockRequest", "skuPrefix": "sku-1"}})


def test_types_from_a_proto_file(stock: Deployment) -> None:
    status, _, body = post(stock.children["root"].http_address, STOCK_QUERY)
    assert status == 200, body
    assert body["payload"]["@type"] == "type.googleapis.com/stock.v1.StockResponse"
    assert body["payload"]["total"] == "33"
    assert [item["sku"] for item in body["payload"]["items"]] == ["sku-1-0", "sku-1-1", "sku-1-2"]


def test_types_from_the_merges_reflection_cached(stock: Deployment) -> None:
    merge = stock.children["merge"].address

    async def find() -> None:
        types = HttpTypes(HttpConfig(listen="127.0.0.1:0", types_from=merge), None)
        try:
            found, why = await types.find("stock.v1.StockResponse", 10)
            assert found is not None and found.DESCRIPTOR.full_name == "stock.v1.StockResponse", why
            again, _ = await types.find("stock.v1.StockResponse", 10)
            assert again is found  # the cache's
            missing, why = await types.find("stock.v1.Nope", 10)
            assert missing is None and f"server reflection of {merge} (its reflection does not know it)" in why, why
        finally:
            types.close()

    asyncio.run(find())
