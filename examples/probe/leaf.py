"""Probe leaf: a shard whose behaviour each request controls, for tests and benchmarks.

The request says how long every shard works (``delay``, overridden per shard
by ``shard_delays``) and which shards fail (``fail_shards``). Flags of this
script add a latency tail for load tests; every other flag (``--port``,
``--shard-index``, ...) goes to the SDK:

    python examples/probe/leaf.py --shard-index 1 --shard-count 4 --stall-probability 0.01
"""

import argparse
import asyncio
import os
import random
from pathlib import Path

from google.protobuf import duration_pb2

from leaf_sdk import InvalidRequest, LeafContext, LeafInfo, serve_leaf
from protos.probe.v1 import probe_pb2

parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
parser.add_argument("--base-latency-ms", type=float, default=0.0, help="added to every call's delay")
parser.add_argument("--stall-probability", type=float, default=0.0, help="chance that a call stalls")
parser.add_argument("--stall-ms", type=float, default=100.0, help="extra delay of a stalled call")
parser.add_argument("--seed", type=int, default=0, help="seed of the stall draws")
parser.add_argument("--start-delay-ms", type=float, default=0.0, help="startup time before SERVING")
args, sdk_argv = parser.parse_known_args()

UINT64_MAX = 2**64 - 1
# google.protobuf.Duration's range (duration.proto): about 10,000 years either way.
MAX_DURATION_SECONDS = 315_576_000_000
REPLICA = os.environ.get("SCATTER_REPLICA_ID") or str(os.getpid())
rng = random.Random()


async def on_start(info: LeafInfo) -> None:
    # One stream of draws per shard and replica, so replicas stall independently.
    rng.seed(f"{args.seed}:{info.shard_index}:{REPLICA}")
    await asyncio.sleep(args.start_delay_ms / 1000)  # stands in for loading an index


def seconds_of(name: str, duration: duration_pb2.Duration) -> float:
    """A Duration of the request in seconds; one outside Duration's range is the client's to fix."""
    # nanos is an int32: out of its canonical range (as some clients write it), still a few seconds at most.
    if abs(duration.seconds) > MAX_DURATION_SECONDS:
        raise InvalidRequest(
            f"{name} is out of range ({duration.seconds} s): a google.protobuf.Duration is at most "
            f"{MAX_DURATION_SECONDS} s either way"
        )
    return duration.seconds + duration.nanos / 1e9


async def handle(request: probe_pb2.ProbeRequest, ctx: LeafContext) -> probe_pb2.ProbePartial:
    remaining = ctx.time_remaining()
    if ctx.shard_index in request.shard_delays:
        seconds = seconds_of(f"shard_delays[{ctx.shard_index}]", request.shard_delays[ctx.shard_index])
    else:
        seconds = seconds_of("delay", request.delay)
    seconds += args.base_latency_ms / 1000
    if REPLICA in request.replica_delays:
        seconds += seconds_of(f"replica_delays[{REPLICA!r}]", request.replica_delays[REPLICA])
    if rng.random() < args.stall_probability:
        seconds += args.stall_ms / 1000
    if request.stall_probability and rng.random() < request.stall_probability:
        seconds += seconds_of("stall", request.stall)
    await asyncio.sleep(seconds)  # cancelled, not finished, when the root gives up on this call
    if ctx.shard_index in request.fail_shards:
        raise RuntimeError(f"shard {ctx.shard_index} was asked to fail")
    value = ctx.shard_index + 1 + request.value
    if value > UINT64_MAX:
        raise InvalidRequest(
            f"value {request.value} is too large: shard {ctx.shard_index} answers value + {ctx.shard_index + 1}, "
            "over the uint64 maximum"
        )
    if request.marker_dir:
        Path(request.marker_dir, f"{request.value}-{ctx.shard_index}-{REPLICA}.done").touch()  # noqa: ASYNC240 (test hook, tiny)
    return probe_pb2.ProbePartial(
        shard_index=ctx.shard_index, value=value, replica=REPLICA, remaining_ms=(remaining or 0.0) * 1000
    )


if __name__ == "__main__":
    serve_leaf(handle, on_start=on_start, argv=sdk_argv)
