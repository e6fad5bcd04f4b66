"""Probe combiner: the merge of a lower root in a two-level tree.

It answers in the leaves' partial type (ProbePartial), so the root above
merges its answer like any leaf's: the sum of sums is the sum.

python examples/probe/combine.py --port 50049
"""

from merge_sdk import InvalidRequest, MergeContext, Partial, ok_shards, serve_merge, sum_field
from protos.probe.v1 import probe_pb2

UINT64_MAX = 2**64 - 1


async def combine(
    request: probe_pb2.ProbeRequest, partials: list[Partial[probe_pb2.ProbePartial]], ctx: MergeContext
) -> probe_pb2.ProbePartial:
    answered = ok_shards(partials)
    total = sum_field(partials, lambda partial: partial.value)
    if total > UINT64_MAX:
        raise InvalidRequest(f"value {request.value} is too large: the sum over the shards is over the uint64 maximum")
    return probe_pb2.ProbePartial(
        shard_index=answered[0] if answered else 0,
        value=total,
        replica="combined",
        remaining_ms=max((p.payload.remaining_ms for p in partials if p.payload), default=0.0),
    )


if __name__ == "__main__":
    serve_merge(combine)
