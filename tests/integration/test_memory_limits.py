"""What a request may cost the root in memory, against real processes.

- Admission counts request bytes in flight: over ``max_in_flight_bytes`` a
  request is refused with RESOURCE_EXHAUSTED naming the limit, and the root
  keeps serving.
- The root holds a payload about once, whatever the fan-out and the attempts,
  and gives the memory back: concurrent 4 MiB requests raise its RSS by a
  bounded multiple of the bytes admitted, and RSS returns near its start.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest

from loadtest.memory import padded_request, reset_peak, send
from loadtest.procfs import memory_kib
from scatter.runtime import Deployment
from tests._cluster import probe_cluster
from tests._procs import wait_until

KIB = 1024
MIB = 1024 * KIB
QUERY = "/scatter_gather.v1.Root/Query"


@pytest.fixture(scope="module")
def small_budget() -> Iterator[Deployment]:
    with probe_cluster(
        shards=2, replicas=1, root={"max_message_bytes": 64 * KIB, "max_in_flight_bytes": 100 * KIB}
    ) as dep:
        yield dep


async def _one_held_one_refused(address: str) -> tuple[str, grpc.aio.AioRpcError | None, str]:
    held_body = padded_request(60 * KIB, 4000)  # the leaves hold it 4 s: long past the refusal below, on a busy machine
    quick_body = padded_request(60 * KIB, 0)
    async with grpc.aio.insecure_channel(address) as channel:
        query: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(QUERY)
        held = asyncio.ensure_future(query(held_body, timeout=10))
        await asyncio.sleep(1.0)  # admitted, at the leaves
        refused: grpc.aio.AioRpcError | None = None
        try:
            await query(quick_body, timeout=5)
        except grpc.aio.AioRpcError as exc:
            refused = exc
        await held
        await query(quick_body, timeout=5)  # and the root keeps serving
        small = await send(address, [padded_request(200, 0)] * 3, True, 5)
    return "OK", refused, str(dict(small))


def test_bytes_in_flight_over_the_budget_are_refused_with_the_limit_named(small_budget: Deployment) -> None:
    held, refused, small = asyncio.run(_one_held_one_refused(small_budget.root_address))
    assert held == "OK"
    assert refused is not None, "a second 60 KiB request beside one in flight was admitted over a 100 KiB budget"
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = refused.details() or ""
    assert "max_in_flight_bytes" in details and str(100 * KIB) in details, details
    assert small == str({"OK": 3})


@pytest.fixture(scope="module")
def large_messages() -> Iterator[Deployment]:
    with probe_cluster(shards=3, replicas=2, root={"max_message_bytes": 4 * MIB, "default_deadline_ms": 30_000}) as dep:
        yield dep


@pytest.mark.slow
def test_concurrent_4_mib_requests_cost_a_bounded_multiple_of_their_bytes(large_messages: Deployment) -> None:
    """16 concurrent near-4 MiB requests at fan-out 3 x 2 (hedges included).

    Before the fix the root kept a copy per attempt for each call's duration
    and glibc kept the freed buffers: the peak was 6-7x the bytes admitted
    and RSS stayed hundreds of MB above its start. The bound is 2x (the
    issue's target) with a margin for a busy machine: 2.5x; after, within a
    quarter of the bytes admitted above the start (16 MiB; usually 1-3% of
    the start, 0.5-1 MiB; seen 10-13 MiB in 2 of 25 runs, on a busy machine).
    """
    pid = large_messages.children["root"].pid
    assert pid is not None
    address = large_messages.root_address
    body = padded_request(4 * MIB - 64 * KIB, 300)
    asyncio.run(send(address, [padded_request(1024, 0)] * 10 + [body], False, 30))  # warm: channels, one large
    start = memory_kib(pid)["VmRSS"]
    assert reset_peak(pid), "cannot reset VmHWM through /proc/PID/clear_refs"
    codes: Counter[str] = asyncio.run(send(address, [body] * 16, True, 30))
    assert codes == Counter({"OK": 16})
    peak = memory_kib(pid)["VmHWM"]
    admitted_kib = 16 * len(body) / KIB
    assert peak - start <= 2.5 * admitted_kib, f"RSS rose {peak - start} KiB for {admitted_kib:.0f} KiB admitted"
    settled = start + 0.25 * admitted_kib
    wait_until(
        lambda: memory_kib(pid)["VmRSS"] <= settled,
        10,
        f"root RSS back within a quarter of the bytes admitted of its start ({start} KiB, bound {settled:.0f} KiB;"
        f" now {memory_kib(pid)['VmRSS']} KiB)",
    )
