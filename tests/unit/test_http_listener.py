"""The HTTP listener's framing and the JSON door's pure parts, in process on loopback.

The listener (scatter_common.http_server.HttpListener) runs on this test's
loop with a handler that echoes what it read; requests are raw bytes on a
socket, so every refusal the listener gives itself (413 before the body is
read, 411, 400, 431, 408) and the ``Expect: 100-continue`` exchange are seen
as a client sees them. The door's ``grpc-timeout`` parser and error body
are pure and checked exactly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest

from root.http_ingress import error_response, parse_grpc_timeout
from scatter_common.http_server import HttpLimits, HttpListener, Request, Response


async def echo(request: Request) -> Response:
    body = json.dumps({"method": request.method, "path": request.path, "body": request.body.decode(),
                       "expect": request.headers.get("expect", "")}).encode()  # fmt: skip
    return Response(200, "application/json", body, (("X-Seen", "1"),))


def serve(limits: HttpLimits, test: Callable[[str], Awaitable[None]]) -> None:
    async def main() -> None:
        listener = HttpListener(echo, limits)
        address = await listener.start("127.0.0.1:0")
        try:
            await test(address)
        finally:
            await listener.stop(1.0)

    asyncio.run(main())


async def exchange(address: str, data: bytes, *, then: bytes = b"", wait: float = 5.0) -> bytes:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        if then:
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait)
            writer.write(then)
            return interim + await asyncio.wait_for(reader.read(), wait)
        return await asyncio.wait_for(reader.read(), wait)
    finally:
        writer.close()


LIMITS = HttpLimits(max_body_bytes=100, read_timeout=0.5)


def test_a_body_within_the_limit_reaches_the_handler() -> None:
    async def test(address: str) -> None:
        answer = await exchange(address, b"POST /v1/query?x=1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"X-Seen: 1\r\n" in head and b"Connection: close" in head
        assert json.loads(body) == {"method": "POST", "path": "/v1/query", "body": "hello", "expect": ""}

    serve(LIMITS, test)


def test_expect_100_continue_is_answered_before_the_body_is_sent() -> None:
    async def test(address: str) -> None:
        head = b"POST / HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        answer = await exchange(address, head, then=b"ok")
        assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")

    serve(LIMITS, test)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", b"413"),  # refused before the body comes
        (b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello", b"400"),
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"411"),
        (b"POST / HTTP/1.1\r\n folded: header\r\n\r\n", b"400"),
        (b"GET / SPDY/3\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nX: " + b"x" * 9000 + b"\r\n\r\n", b"431"),
        (b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nhalf", b"408"),  # the body never completes
    ],
)
def test_the_listener_refuses_what_it_does_not_read(request_bytes: bytes, status: bytes) -> None:
    async def test(address: str) -> None:
        answer = await exchange(address, request_bytes)
        assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:200]

    serve(LIMITS, test)


def test_a_handler_that_raises_is_500_without_detail() -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("secret internals")

    async def main() -> None:
        listener = HttpListener(broken)
        address = await listener.start("127.0.0.1:0")
        try:
            answer = await exchange(address, b"GET / HTTP/1.1\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 500 ") and b"secret" not in answer
        finally:
            await listener.stop()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500m", 0.5), ("2S", 2.0), ("1H", 3600.0), ("3M", 180.0), ("1500u", 0.0015), ("99999999n", 0.099999999)],
)
def test_grpc_timeout_values(text: str, seconds: float) -> None:
    assert parse_grpc_timeout(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "500", "m", "500ms", "123456789S", "-1S", "1.5S", "\u0661S"])
def test_bad_grpc_timeout_values_say_the_format(text: str) -> None:
    with pytest.raises(ValueError, match=r"grpc-timeout header must be 1 to 8 digits and a unit .* 500m"):
        parse_grpc_timeout(text)


def test_the_error_body_is_grpc_gateways() -> None:
    response = error_response("RESOURCE_EXHAUSTED", "slow down", headers=(("Retry-After", "1"),))
    assert (response.status, response.content_type, response.headers) == (
        429,
        "application/json",
        (("Retry-After", "1"),),
    )
    assert json.loads(response.body) == {"code": 8, "message": "slow down", "details": []}
    assert error_response("RESOURCE_EXHAUSTED", "too big", 413).status == 413
