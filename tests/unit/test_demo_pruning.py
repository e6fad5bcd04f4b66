"""The pruned scorer of :meth:`ShardSearcher.search` against the exhaustive one, bit for bit.

Random corpora over tiny vocabularies (so equal scores are common), random
queries, ``k`` and ``offset``; every block size and long-term threshold the
searcher can be given, from "every term long, blocks of 4 documents, one
block per round" to "no long term". The reference is :meth:`ShardSearcher.score`
(every match, the pre-pruning scorer) ranked by :func:`top_n`.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from demo_search import search
from demo_search.corpus import Document
from demo_search.index import build_index
from demo_search.search import IndexSearcher, ShardSearcher, top_n

# (BLOCK_SHIFT, LONG_RATIO, FIRST_BLOCKS).
CONFIGS = [
    (2, 0.0, 1),
    (3, 1 / 32, 1),
    (5, 0.2, 2),
    (8, 0.0, 4),
    (search.BLOCK_SHIFT, search.LONG_RATIO, search.FIRST_BLOCKS),
]
CORPORA = 6


def _corpus(seed: int) -> list[Document]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(rng.choice([3, 8, 30]))]
    weights = [1 / (i + 1) for i in range(len(vocab))]  # zipf-like: a few long terms
    return [
        Document(f"d{i:05d}", "", " ".join(rng.choices(vocab, weights, k=rng.randint(1, 12))))
        for i in range(rng.randint(1, 700))
    ]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[list[Document], Path, Path]]:
    root = tmp_path_factory.mktemp("pruning")
    built = []
    for seed in range(CORPORA):
        docs = _corpus(seed)
        one, three = root / f"c{seed}-1", root / f"c{seed}-3"
        build_index(docs, one, shards=1, corpus="random")
        build_index(docs, three, shards=3, corpus="random")
        built.append((docs, one, three))
    return built


def _expected(shard: ShardSearcher, query: str, k: int, offset: int) -> tuple[list[str], list[float], int]:
    docs, scores = shard.score(query)
    chosen = top_n(scores, offset + k)[offset:]
    return [shard._ids[int(d)] for d in docs[chosen]], scores[chosen].tolist(), len(docs)


def _queries(docs: list[Document], rng: random.Random) -> list[str]:
    words = sorted({w for d in docs for w in d.text.split()})
    return [" ".join(rng.choices([*words, "unknown"], k=rng.randint(1, 5))) for _ in range(25)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"shift{c[0]}-long{c[1]:.3f}-first{c[2]}")
def test_pruned_search_equals_the_exhaustive_ranking(
    corpora: list[tuple[list[Document], Path, Path]],
    config: tuple[int, float, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shift, ratio, first = config
    monkeypatch.setattr(search, "BLOCK_SHIFT", shift)
    monkeypatch.setattr(search, "LONG_RATIO", ratio)
    monkeypatch.setattr(search, "FIRST_BLOCKS", first)
    rng = random.Random(shift)
    for docs, one, three in corpora:
        single, sharded = IndexSearcher(one), IndexSearcher(three)
        shard = single.shards[0]
        for query in _queries(docs, rng):
            k, offset = rng.choice([0, 1, 3, 10, 50, 1000]), rng.choice([0, 0, 1, 7, 30])
            ids, scores, total = _expected(shard, query, k, offset)
            got = shard.search(query, k, offset)
            # Bit for bit: == on floats, and the order of ties by id.
            assert ([h.doc_id for h in got.hits], [h.score for h in got.hits]) == (ids, scores), (query, k, offset)
            assert got.total_matches == total, query
            merged = sharded.search(query, k, offset)
            assert [(h.doc_id, h.score) for h in merged.hits] == list(zip(ids, scores, strict=True)), query
            assert merged.total_matches == total, query


def test_long_terms_get_block_maxima_and_bitsets(corpora: list[tuple[list[Document], Path, Path]]) -> None:
    _, one, _ = max(corpora, key=lambda c: len(c[0]))
    shard = IndexSearcher(one).shards[0]
    assert shard._long_row, "the default threshold makes the frequent terms of a zipf corpus long"
    for term, row in shard._long_row.items():
        start, end = int(shard._indptr[term]), int(shard._indptr[term + 1])
        postings = shard._docs[start:end]
        for block in range(shard._n_blocks):
            inside = (postings >> shard._shift) == block
            want = float(shard._impacts[start:end][inside].max()) if inside.any() else 0.0
            assert shard._block_max[row, block] == want
        bits = np.unpackbits(shard._bits[row].view(np.uint8), bitorder="little")[: shard.n_docs]
        assert np.array_equal(np.flatnonzero(bits), postings)


def test_kernel_selection_equals_top_n_with_ties() -> None:
    from demo_search import kernels

    rng = np.random.default_rng(3)
    for size in [0, 1, 2, 5, 40, 300]:
        # Few distinct scores, documents listed in no particular order: ties everywhere.
        touched = rng.permutation(1000)[:size].astype(np.int32)
        scores = np.zeros(1000)
        scores[touched] = rng.integers(1, 4, size) / 8
        values = scores[touched].copy()
        for n in [0, 1, 3, 10, 299, 1000]:
            want = top_n(values, n, touched)
            scratch = scores.copy()
            docs, got = kernels.top(scratch, touched, size, n)
            assert docs.tolist() == touched[want].tolist(), (size, n)
            assert got.tolist() == values[want].tolist()
            assert not scratch.any(), "top zeroes the scratch it read"
