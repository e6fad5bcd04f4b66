"""Query workloads: what a load-test user sends, as seeded streams of payloads.

Pure code (no grpc, no locust): the Locust user and the tests both use it.

The demo workload draws real terms from the stdlib index that `scatter demo`
serves. Real query logs are Zipf-like: a few terms are very common, most are
rare. Sampling terms in proportion to their document frequency gives that
shape from the corpus itself, with two cuts a search engineer would make:

- terms in more than ``MAX_DOC_FRACTION`` of the documents ("the", "to",
  "a") are dropped: users rarely type them on their own, and weighted by df
  they would make almost every query a scan of most postings;
- terms without a letter or shorter than ``MIN_TERM_CHARS`` are dropped
  (numbers and single letters from code samples).

A query has 1 to 3 terms with ``TERMS_PER_QUERY_WEIGHTS`` (web search logs
have about 1/3 one-term, 1/3 two-term queries and a tail of longer ones:
Jansen, Spink & Saracevic, "Real life, real users, and real needs", 2000).
Every user gets its own seeded stream, so a run is reproducible from its
seed and user count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from demo_search import read_document_frequencies, read_index_manifest
from protos.demo_search.v1 import search_pb2
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import root_pb2

__all__ = [
    "MAX_DOC_FRACTION",
    "TERMS_PER_QUERY_WEIGHTS",
    "QueryStream",
    "Vocabulary",
    "load_vocabulary",
    "probe_requests",
]

MAX_DOC_FRACTION = 0.10  # Lucene-era stop lists hold the terms above ~10% of documents
MIN_TERM_CHARS = 2
TERMS_PER_QUERY_WEIGHTS = (0.40, 0.35, 0.25)  # 1, 2 and 3 terms
DEFAULT_K = 10  # one result page
_BATCH = 4096  # queries drawn at once per user (numpy draws are cheap in bulk)


@dataclass(frozen=True)
class Vocabulary:
    terms: tuple[str, ...]
    weights: np.ndarray  # probabilities, sum 1, aligned with terms
    documents: int

    def __len__(self) -> int:
        return len(self.terms)


def load_vocabulary(index: Path) -> Vocabulary:
    """The searchable terms of a demo index with their sampling weights (df, after the cuts above)."""
    terms, dfs = read_document_frequencies(index)
    if not terms:
        raise ValueError(f"{index}: no shard terms found (is it a demo index?)")
    documents = read_index_manifest(index).documents
    limit = MAX_DOC_FRACTION * documents
    kept = [
        (term, df)
        for term, df in zip(terms, dfs.tolist(), strict=True)
        if df <= limit and len(term) >= MIN_TERM_CHARS and any(c.isalpha() for c in term)
    ]
    weights = np.array([df for _, df in kept], dtype=np.float64)
    return Vocabulary(tuple(term for term, _ in kept), weights / weights.sum(), documents)


class QueryStream:
    """An endless, seeded stream of demo ``SearchRequest`` payloads packed in ``QueryRequest``s."""

    def __init__(self, vocabulary: Vocabulary, seed: int, k: int = DEFAULT_K) -> None:
        self.vocabulary = vocabulary
        self.k = k
        self._rng = np.random.default_rng(seed)
        self._queue: list[str] = []

    def _refill(self) -> None:
        rng = self._rng
        lengths = rng.choice(len(TERMS_PER_QUERY_WEIGHTS), size=_BATCH, p=TERMS_PER_QUERY_WEIGHTS) + 1
        picks = rng.choice(len(self.vocabulary), size=int(lengths.sum()), p=self.vocabulary.weights)
        terms = self.vocabulary.terms
        queries, at = [], 0
        for n in lengths.tolist():
            queries.append(" ".join(terms[i] for i in picks[at : at + n]))
            at += n
        queries.reverse()  # pop() from the end keeps draw order
        self._queue = queries

    def next_text(self) -> str:
        if not self._queue:
            self._refill()
        return self._queue.pop()

    def next_request(self) -> root_pb2.QueryRequest:
        request = root_pb2.QueryRequest()
        request.payload.Pack(search_pb2.SearchRequest(query=self.next_text(), k=self.k))
        return request


def probe_requests() -> root_pb2.QueryRequest:
    """The probe workload's request: no delay of its own, so the leaves' injected latency is all there is."""
    request = root_pb2.QueryRequest()
    request.payload.Pack(probe_pb2.ProbeRequest(value=1))
    return request
