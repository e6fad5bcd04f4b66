"""Helpers for the common merges: global top-k, concatenation, sums.

Pure functions with no gRPC in sight, so they are tested exactly and can be
used outside a merge server (a root-as-leaf, a notebook).

``top_k`` is the one that pays for numpy: the user's ``score`` is called
once per hit to fill one float array, ``argpartition``-style selection finds
the ``offset + k`` best in O(n), and only those (plus every hit tied with the
last of them, so the tie-break stays exact) get their ``tie_key`` computed
and go through a stable ``lexsort``. A pure-Python sort of all hits with a
tuple key costs several times more once shards return hundreds of hits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar, overload

import numpy as np

from merge_sdk._partial import Partial

T = TypeVar("T")
U = TypeVar("U")


def top_k(
    partials_hits: Iterable[Iterable[T]],
    k: int,
    *,
    score: Callable[[T], float],
    tie_key: Callable[[T], str | int],
    offset: int = 0,
) -> list[T]:
    """The global ranks ``offset .. offset + k - 1`` of all hits, best first.

    Order: descending ``score``; equal scores by ascending ``tie_key`` (a
    document id, say), so the result is deterministic whatever the shard
    order. Hits with a NaN score rank below every number. ``tie_key`` must
    return one type (all ``str`` or all ``int``) for the hits compared.
    Returns fewer than ``k`` hits when there are not enough.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    hits: list[T] = [hit for shard_hits in partials_hits for hit in shard_hits]
    count = len(hits)
    want = offset + k
    if k == 0 or offset >= count:
        return []
    # Negated so that ascending sorts (partition, lexsort) put the best first;
    # NaN sorts last in both, which is the documented rank of a NaN score.
    neg_scores = -np.fromiter((score(hit) for hit in hits), dtype=np.float64, count=count)
    candidates = np.arange(count)
    if want < count:
        boundary = np.partition(neg_scores, want - 1)[want - 1]
        # Not argpartition's exact `want`: every hit tied with the boundary
        # must compete on tie_key, or the pick among ties would be arbitrary.
        # A NaN boundary means fewer than `want` numeric scores: all compete.
        if not np.isnan(boundary):
            candidates = np.flatnonzero(neg_scores <= boundary)
    keys = [tie_key(hits[i]) for i in candidates.tolist()]
    key_types = {type(key) for key in keys}
    if len(key_types) > 1:
        names = ", ".join(sorted(t.__name__ for t in key_types))
        raise TypeError(f"tie_key must return one type for all hits, got {names}")
    tie_keys = np.asarray(keys)
    if tie_keys.dtype.kind not in "iuUSb":
        # Ints beyond 64 bits become an object array, which lexsort cannot order.
        order = sorted(range(len(keys)), key=lambda j: (float(neg_scores[candidates[j]]), keys[j]))
        selected = [int(candidates[j]) for j in order[offset:want]]
    else:
        # lexsort sorts by the last key first: score, then tie_key; it is stable.
        order_array = np.lexsort((tie_keys, neg_scores[candidates]))
        selected = candidates[order_array[offset:want]].tolist()
    return [hits[i] for i in selected]


def payloads(partials: Iterable[Partial[T]]) -> list[T]:
    """The payloads of the shards that answered, in shard order."""
    return [p.payload for p in partials if p.ok and p.payload is not None]


def concatenate(partials: Iterable[Partial[T]], items: Callable[[T], Iterable[U]]) -> list[U]:
    """``items(payload)`` of every shard that answered, concatenated in shard order.

    Example: ``concatenate(partials, lambda p: p.hits)``.
    """
    out: list[U] = []
    for payload in payloads(partials):
        out.extend(items(payload))
    return out


@overload
def sum_field(partials: Iterable[Partial[T]], value: Callable[[T], int]) -> int: ...
@overload
def sum_field(partials: Iterable[Partial[T]], value: Callable[[T], float]) -> float: ...
def sum_field(partials: Iterable[Partial[T]], value: Callable[[T], float]) -> float:
    """The sum of ``value(payload)`` over the shards that answered (0 when none did).

    Example: ``sum_field(partials, lambda p: p.total_hits)``.
    """
    return sum((value(payload) for payload in payloads(partials)), 0)


def ok_shards(partials: Sequence[Partial[T]]) -> list[int]:
    """Indices of the shards that answered, ascending."""
    return sorted(p.shard_index for p in partials if p.ok)
