"""Probe merge: sums the values of the shards that answered and lists them.

python examples/probe/merge.py --port 50050
"""

from merge_sdk import InvalidRequest, MergeContext, Partial, ok_shards, serve_merge, sum_field
from protos.probe.v1 import probe_pb2

UINT64_MAX = 2**64 - 1


# async because it never blocks: it runs on the event loop, with no thread hop.
async def merge(
    request: probe_pb2.ProbeRequest, partials: list[Partial[probe_pb2.ProbePartial]], ctx: MergeContext
) -> probe_pb2.ProbeResponse:
    total = sum_field(partials, lambda partial: partial.value)
    if total > UINT64_MAX:
        # The request's value, added by every shard, makes a sum that no uint64 holds:
        # the client's to fix (INVALID_ARGUMENT), not a crash of the merge (INTERNAL).
        raise InvalidRequest(f"value {request.value} is too large: the sum over the shards is over the uint64 maximum")
    return probe_pb2.ProbeResponse(
        sum=total,
        shard_indices=ok_shards(partials),
        max_remaining_ms=max((p.payload.remaining_ms for p in partials if p.payload), default=0.0),
    )


if __name__ == "__main__":
    serve_merge(merge)
