"""merge_sdk's pure helpers: top_k exactly, against a plain sorted() reference, and the small ones."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest

from merge_sdk import Partial, ShardStatus, concatenate, ok_shards, payloads, sum_field, top_k


@dataclass(frozen=True)
class Hit:
    doc: str
    score: float


def rank(shards: list[list[Hit]], k: int, offset: int = 0) -> list[str]:
    hits = top_k(shards, k, score=lambda h: h.score, tie_key=lambda h: h.doc, offset=offset)
    return [h.doc for h in hits]


def reference(shards: list[list[Hit]], k: int, offset: int = 0) -> list[str]:
    every = sorted((h for shard in shards for h in shard), key=lambda h: (-h.score, h.doc))
    return [h.doc for h in every[offset : offset + k]]


SHARDS = [
    [Hit("a", 0.5), Hit("d", 0.9)],
    [Hit("b", 0.9), Hit("e", 0.1)],
    [Hit("c", 0.5)],
]


def test_descending_score_across_shards() -> None:
    assert rank(SHARDS, 5) == ["b", "d", "a", "c", "e"]


def test_ties_break_by_ascending_tie_key_whatever_the_shard_order() -> None:
    assert rank(SHARDS, 2) == ["b", "d"]
    assert rank(list(reversed(SHARDS)), 3) == ["b", "d", "a"]


def test_tie_at_the_cut_is_decided_by_tie_key_not_by_partition_order() -> None:
    # Nine hits tie at the boundary; only tie_key may choose among them.
    shards = [[Hit(f"z{i}", 1.0) for i in range(9, 0, -1)], [Hit("top", 2.0)]]
    assert rank(shards, 3) == ["top", "z1", "z2"]


def test_k_zero_and_empty_inputs() -> None:
    assert rank(SHARDS, 0) == []
    assert rank([], 3) == []
    assert rank([[], []], 3) == []


def test_k_larger_than_the_hits() -> None:
    assert rank(SHARDS, 100) == ["b", "d", "a", "c", "e"]


def test_offset_pages_through_the_ranking() -> None:
    assert rank(SHARDS, 2, offset=1) == ["d", "a"]
    assert rank(SHARDS, 2, offset=4) == ["e"]
    assert rank(SHARDS, 2, offset=5) == []


def test_negative_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="k must be >= 0"):
        rank(SHARDS, -1)
    with pytest.raises(ValueError, match="offset must be >= 0"):
        rank(SHARDS, 1, offset=-1)


def test_integer_tie_keys() -> None:
    hits = [[(3, 1.0), (1, 1.0)], [(2, 1.0), (0, 0.5)]]
    result = top_k(hits, 3, score=lambda h: h[1], tie_key=lambda h: h[0])
    assert result == [(1, 1.0), (2, 1.0), (3, 1.0)]


def test_integer_tie_keys_beyond_64_bits() -> None:
    big = 2**70
    hits = [[(big + 2, 1.0), (big + 1, 1.0), (5, 0.0)]]
    result = top_k(hits, 2, score=lambda h: h[1], tie_key=lambda h: h[0])
    assert result == [(big + 1, 1.0), (big + 2, 1.0)]


def test_mixed_tie_key_types_are_an_error() -> None:
    mixed: list[list[tuple[int | str, float]]] = [[(1, 1.0), ("a", 1.0)]]
    with pytest.raises(TypeError, match="tie_key must return one type"):
        top_k(mixed, 2, score=lambda h: h[1], tie_key=lambda h: h[0])


def test_nan_scores_rank_last() -> None:
    shards = [[Hit("n1", math.nan), Hit("x", -5.0)], [Hit("n0", math.nan), Hit("y", math.inf)]]
    assert rank(shards, 4) == ["y", "x", "n0", "n1"]
    assert rank(shards, 1) == ["y"]
    assert rank(shards, 1, offset=2) == ["n0"]


def test_many_shards() -> None:
    shards = [[Hit(f"s{s:03d}-{i}", float(s % 7) + i / 10) for i in range(5)] for s in range(300)]
    assert rank(shards, 25) == reference(shards, 25)
    assert rank(shards, 25, offset=100) == reference(shards, 25, offset=100)


@pytest.mark.parametrize("seed", range(20))
def test_equals_a_sorted_reference_on_random_data_with_many_ties(seed: int) -> None:
    rng = random.Random(seed)
    shards = [
        [
            Hit(f"d{rng.randrange(10_000):05d}-{s}-{i}", rng.choice([0.0, 0.25, 0.5, 1.0, -1.0]))
            for i in range(rng.randrange(0, 40))
        ]
        for s in range(rng.randrange(1, 12))
    ]
    total = sum(map(len, shards))
    for k in (0, 1, 3, 10, total, total + 5):
        for offset in (0, 1, 7):
            assert rank(shards, k, offset) == reference(shards, k, offset), (k, offset)


def partials() -> list[Partial[Hit]]:
    return [
        Partial(0, ShardStatus.OK, Hit("a", 1.0)),
        Partial(1, ShardStatus.TIMEOUT, None, error="deadline"),
        Partial(2, ShardStatus.OK, Hit("b", 2.5)),
    ]


def test_payloads_concatenate_sum_and_ok_shards_skip_failed_shards() -> None:
    assert payloads(partials()) == [Hit("a", 1.0), Hit("b", 2.5)]
    assert concatenate(partials(), lambda hit: hit.doc) == ["a", "b"]
    assert sum_field(partials(), lambda hit: hit.score) == 3.5
    assert sum_field(partials()[1:2], lambda hit: hit.score) == 0
    assert ok_shards(list(reversed(partials()))) == [0, 2]
