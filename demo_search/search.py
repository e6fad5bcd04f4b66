"""The search engine of one shard (and of a whole index, in process): BM25 with numpy and numba.

No gRPC here: the leaf (:mod:`demo_search.leaf`) only translates messages
to and from :meth:`ShardSearcher.search`, and the tests and benchmarks call
this module directly.

Scoring is Lucene's BM25 (the Elasticsearch default), per query term t and
document d::

    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    score(t, d) = idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl(d) / avgdl))
    score(d)    = sum over the query terms

with k1 = 1.2, b = 0.75 and N, df and avgdl over the whole corpus (stored in
every shard by the builder), so a score never depends on the sharding. The
builder stores the second factor, the posting's *impact*, in ``impacts.npy``
(float64, see ``format.bm25_impacts``); a query multiplies it by the term's
weight (idf times its repeats in the query) and adds per document. The
query is tokenized like the documents; each token is one SHOULD clause, as
in Lucene's ``QueryBuilder``, so a term repeated in the query counts once per
occurrence. Two differences from Lucene, both deliberate: scores are float64
(Lucene uses float32) and dl is the exact token count (Lucene stores it in one
lossy byte), which is what makes the sharded-equals-unsharded check exact.
Lucene >= 8 also drops the constant factor (k1 + 1); it does not change a
ranking, and we keep the textbook formula.

Ranking: descending score, ties by ascending document id. Local document
numbers follow id order (see :mod:`demo_search.format`), so ties are broken
on numbers. ``total_matches`` counts documents with at least one query term,
which are exactly those with a score > 0 (idf > 0 always).

Stopping early: :meth:`ShardSearcher.search` takes a ``stop`` callable (the
leaf passes its call's ``cancelled``, which is also true past the deadline)
and raises :class:`Stopped` as soon as it returns true. It is polled between
the phases (terms, scoring, selection, hits), for every chunk of
``CHUNK_TERMS`` terms or ``CHUNK_POSTINGS`` postings (a chunk's last term
may take it past that), for every kernel call and for every hit; so no step
between two polls costs more than one chunk, one term's postings, one pass
over the shard's block bounds, bitsets or documents, or one hit. A hit's snippet work is bounded too: it
reads at most ``SNIPPET_SCAN_CHARS`` characters of the document's text
(whatever the number of query terms) and returns at most ``SNIPPET_CHARS``
plus two ellipses. A new scorer keeps these rules: poll ``stop`` at least
once per bounded step.

The scorer of :meth:`ShardSearcher.search` for up to ``TERM_LOOP_MAX``
known terms (longer queries take the numpy chunked paths of :meth:`score`)
runs in the compiled kernels of :mod:`demo_search.kernels`, one call per
bounded step above, compiled (or loaded from numba's cache) when the
searcher is built, so a leaf is SERVING only with its kernels ready:

- With no *long* term (fewer than ``LONG_RATIO`` of the documents), it adds
  every posting into a reused zeroed dense array, term by term in query
  order, one kernel call per chunk of terms; a document whose value was 0.0
  before a term adds is new and is listed, so the matches and their count
  come without a sort, and a heap of the best n selects the top.
- With a long term, it prunes by blocks of ``2 ** BLOCK_SHIFT`` documents
  (block-max MaxScore over the impacts). At load, every long term gets its
  maximum impact per block and a bitset of its documents; other terms get
  their block maxima per query. The bound of a block sums weight * maximum
  in query term order, so it bounds the exact float64 scores bit for bit
  (rounding is monotone). Blocks are scored exactly in descending bound
  order, ``FIRST_BLOCKS`` and then twice as many per round, until no block
  left has a bound >= the n-th best exact score so far (a tie could still win
  by id), the root of a heap of the n best kept across rounds; a round is
  cut into kernel calls of at most ``CHUNK_POSTINGS`` postings. Inside a
  block, once the heap is full, MaxScore: the terms whose block maxima
  cannot reach the root together only bound the candidates of the others,
  and only a candidate whose bound can win gets its exact score
  (:func:`demo_search.kernels.score_blocks`). There is no fallback to every
  posting: where the bounds prune nothing (a query of the most frequent
  terms), scoring every block costs about what the exhaustive path costs.
  ``total_matches`` stays exact: the popcount of the union of the terms'
  bitsets (short terms set theirs).
- Exact scores are the same sums in the same order as :meth:`score`, so the
  top-k, scores, ties and totals are bit-identical to the exhaustive path
  (tests/unit/test_demo_pruning.py). ``stop`` is polled per kernel call: the
  bounds, the count, the order, and each piece of a round.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from demo_search import format as fmt
from demo_search.tokenizer import find_first_term, tokenize

__all__ = [
    "BLOCK_SHIFT",
    "K1",
    "SNIPPET_CHARS",
    "SNIPPET_SCAN_CHARS",
    "B",
    "Hit",
    "IndexSearcher",
    "Ranking",
    "SearchResult",
    "ShardSearcher",
    "StopCheck",
    "Stopped",
    "merge_results",
]

K1 = fmt.K1  # 1.2, the Lucene / Elasticsearch default
B = fmt.B  # 0.75, the Lucene / Elasticsearch default
SNIPPET_CHARS = 160  # about two lines of a result page, like web search engines
SNIPPET_LEAD = 50  # context kept before the first matching word
# Text read per hit to place its snippet: a query term first seen later is not
# looked for (the snippet is the start of the text). About 30 lines; bounds a
# hit's cost (tens of microseconds) whatever the document's length. Lucene's
# UnifiedHighlighter has the same kind of cap (maxLength, 10,000 characters).
SNIPPET_SCAN_CHARS = 2000
# Below this ratio of postings to documents the scores are summed over the
# matching documents only (a sort); above it, into a dense array of all
# documents (no sort). Both sum each document's terms in the same order.
DENSE_RATIO = 1 / 8
# Up to this many distinct terms, a dense query adds term by term straight
# from the memory-mapped slices (no gather of positions); beyond it, chunks of
# concatenated postings (below) beat a Python loop per term.
TERM_LOOP_MAX = 32
# Beyond the term loop, postings are gathered and added in chunks of this
# many terms or postings, whichever comes first, with a poll of ``stop``
# between chunks: a chunk costs a few milliseconds, and the temporaries of a
# 10,000-term query stay a few MiB instead of its whole postings.
CHUNK_TERMS = 256
CHUNK_POSTINGS = 1 << 18
# The pruned scorer (see the module docstring). Documents are cut into blocks
# of 2 ** BLOCK_SHIFT consecutive local numbers; a term with at least
# LONG_RATIO * documents postings (and at least one) is *long*: its maximum
# impact per block and its bitset of documents are computed at load (for the
# 1M-document synthetic corpus: 352 terms, 44 MiB of maxima, 44 MiB of bits).
# Blocks of 64 measured best on its zipf and head mixes (256: 1.8x the mean
# time on head-term queries, whose bounds are loose in large blocks; 32: a
# slower median, more blocks to bound and order).
BLOCK_SHIFT = 6
LONG_RATIO = 1 / 32
# Blocks scored exactly in the first round of the pruned scorer; each later
# round takes twice as many as the one before.
FIRST_BLOCKS = 4

StopCheck = Callable[[], bool]
"""Returns True once the caller no longer wants the answer (cancelled, or past its deadline)."""


class Stopped(Exception):
    """The search stopped early because its ``stop`` check said so; there is no partial result."""


def _never() -> bool:
    return False


def _poll(stop: StopCheck) -> None:
    if stop():
        raise Stopped


class Hit(NamedTuple):
    """One result. A named tuple rather than a frozen dataclass: as immutable, and built in a
    third of the time (0.4 against 1.3 us), which every shard pays for each of its top k."""

    doc_id: str
    score: float
    title: str
    snippet: str
    shard_index: int = 0


@dataclass(frozen=True, slots=True)
class SearchResult:
    hits: list[Hit]
    total_matches: int


@dataclass(frozen=True, slots=True)
class Ranking:
    """A page of the ranking before its hits are built: local document numbers and scores, best first."""

    docs: list[int]
    scores: list[float]
    total_matches: int
    terms: frozenset[str]  # the query's terms, for the snippets (empty when the page is)


def _check(condition: bool, path: Path, message: str) -> None:
    if not condition:
        raise fmt.IndexFormatError(f"{path}: {message}")


class _Blob:
    """Variable-length UTF-8 records: a byte blob plus int64 offsets."""

    def __init__(self, directory: Path, names: tuple[str, str], count: int) -> None:
        blob_path, offsets_path = directory / names[0], directory / names[1]
        self.offsets = fmt.load_array(offsets_path, np.int64, count + 1)
        # Offsets are read whole at load: a corrupt one must fail now, not on a query.
        _check(count == 0 or bool(np.all(np.diff(self.offsets) >= 0)), offsets_path, "offsets not ascending")
        _check(len(self.offsets) == 0 or int(self.offsets[0]) == 0, offsets_path, "offsets must start at 0")
        self.blob = fmt.load_array(blob_path, np.uint8, int(self.offsets[-1]))
        # A record is read through memoryviews: slicing one and copying the bytes costs a
        # fraction of numpy's memmap slice + tobytes, and indexing gives Python ints.
        self._bytes = self.blob.data.cast("B") if len(self.blob) else memoryview(b"")
        self._bounds = np.ascontiguousarray(self.offsets).data.cast("B").cast("q")

    def __getitem__(self, i: int) -> str:
        return bytes(self._bytes[self._bounds[i] : self._bounds[i + 1]]).decode("utf-8", "replace")

    def prefix(self, i: int, chars: int) -> tuple[str, bool]:
        """The first ``chars`` characters of record ``i``, and whether the record is longer.

        Decodes at most ``4 * chars`` bytes (a character is 1-4 bytes in UTF-8).
        """
        start, end = self._bounds[i], self._bounds[i + 1]
        if end - start <= chars:  # no more characters than bytes: the whole record
            return bytes(self._bytes[start:end]).decode("utf-8", "replace"), False
        cut = min(end, start + 4 * chars)
        # Back up to a character boundary (UTF-8 continuation bytes are 0b10xxxxxx).
        while start < cut < end and self._bytes[cut] & 0xC0 == 0x80:
            cut -= 1
        text = bytes(self._bytes[start:cut]).decode("utf-8", "replace")
        return text[:chars], cut < end or len(text) > chars


class ShardSearcher:
    """One shard, memory-mapped and validated at construction.

    Raises ``IndexFormatError`` naming the file when anything is missing,
    truncated or inconsistent: a leaf fails at start, never on a query.
    """

    def __init__(self, path: str | os.PathLike[str], *, block_shift: int | None = None) -> None:
        """``block_shift``: the pruned scorer's blocks are ``2 ** block_shift`` documents
        (default ``BLOCK_SHIFT``; ``scatter bench demo-scorer`` compares sizes)."""
        self.path = directory = Path(path)
        if not directory.is_dir():
            raise fmt.IndexFormatError(f"{directory}: shard directory missing")
        m = self.manifest = fmt.read_shard_manifest(directory)
        self.shard_index = m.shard_index
        self.shard_count = m.shard_count
        self.n_docs = m.documents
        self.avgdl = m.avgdl

        terms_path = directory / fmt.TERMS
        try:
            words = terms_path.read_text(encoding="utf-8").split("\n")
        except FileNotFoundError as exc:
            raise fmt.IndexFormatError(f"{terms_path}: missing") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise fmt.IndexFormatError(f"{terms_path}: unreadable ({exc})") from exc
        _check(words[-1] == "", terms_path, "must end with a newline")
        words.pop()
        _check(len(words) == m.terms, terms_path, f"{len(words)} terms, manifest says {m.terms}")
        _check(all(a < b for a, b in itertools.pairwise(words)), terms_path, "terms not sorted/unique")
        # The term dictionary lives in memory, like Lucene's terms index: one
        # dict lookup per query term, while the postings stay memory-mapped.
        self._term_ids = {word: i for i, word in enumerate(words)}

        self._df = fmt.load_array(directory / fmt.DF, np.int64, m.terms)
        _check(
            m.terms == 0 or (int(self._df.min()) >= 1 and int(self._df.max()) <= m.corpus_documents),
            directory / fmt.DF,
            "document frequencies out of range",
        )
        df = self._df.astype(np.float64)
        n = float(m.corpus_documents)
        self._idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))  # per term, computed once
        self._indptr = fmt.load_array(directory / fmt.INDPTR, np.int64, m.terms + 1)
        indptr_path = directory / fmt.INDPTR
        _check(int(self._indptr[0]) == 0 and int(self._indptr[-1]) == m.postings, indptr_path, "bad bounds")
        _check(bool(np.all(np.diff(self._indptr) > 0)), indptr_path, "every term needs >= 1 posting")
        self._docs = fmt.load_array(directory / fmt.DOCS, np.int32, m.postings)
        _check(
            m.postings == 0 or (int(self._docs.min()) >= 0 and int(self._docs.max()) < m.documents),
            directory / fmt.DOCS,
            "document number out of range",
        )
        manifest_path = directory / fmt.SHARD_MANIFEST
        _check((m.k1, m.b) == (K1, B), manifest_path, f"built with k1={m.k1}, b={m.b}; this searcher uses {K1}, {B}")
        impacts_path = directory / fmt.IMPACTS
        self._impacts = fmt.load_array(impacts_path, np.float64, m.postings)
        # tf >= 1 gives an impact in [(k1 + 1) / (1 + k1 * (1 - b + b * dl / avgdl)), k1 + 1).
        _check(
            m.postings == 0 or (float(self._impacts.min()) > 0.0 and float(self._impacts.max()) < K1 + 1.0),
            impacts_path,
            f"impact out of range (0, {K1 + 1})",
        )
        fmt.load_array(directory / fmt.DOC_LENGTHS, np.int32, m.documents)  # checked, not needed to score
        self._load_blocks(BLOCK_SHIFT if block_shift is None else block_shift)
        self._warm()  # a leaf reports SERVING only once its kernels are compiled
        self._ids = _Blob(directory, fmt.IDS, m.documents)
        self._titles = _Blob(directory, fmt.TITLES, m.documents)
        self._texts = _Blob(directory, fmt.TEXTS, m.documents)

    def _load_blocks(self, shift: int) -> None:
        """The pruned scorer's metadata: per long term, its block maxima and its bitset of documents."""
        if not 0 <= shift <= 20:
            raise ValueError(f"block_shift must be in [0, 20], got {shift}")
        self._shift = shift
        self._n_blocks = n_blocks = (self.n_docs + (1 << shift) - 1) >> shift
        words = (self.n_docs + 63) // 64
        counts = np.diff(self._indptr)
        long_terms = np.flatnonzero(counts >= max(1.0, LONG_RATIO * self.n_docs))
        self._long_row = {int(t): row for row, t in enumerate(long_terms.tolist())}
        # Per term, its row in the arrays below, or -1 (not long).
        self._row_of = np.full(len(counts), -1, dtype=np.int64)
        self._row_of[long_terms] = np.arange(len(long_terms))
        self._block_max = np.zeros((len(long_terms), n_blocks), dtype=np.float64)
        self._bits = np.zeros((len(long_terms), words), dtype=np.uint64)
        marks = np.zeros(words * 64, dtype=np.bool_)
        for row, t in enumerate(long_terms.tolist()):
            start, end = int(self._indptr[t]), int(self._indptr[t + 1])
            docs = self._docs[start:end]
            blocks, firsts = _block_runs(docs, shift)
            self._block_max[row, blocks] = np.maximum.reduceat(self._impacts[start:end], firsts)
            marks[docs] = True
            self._bits[row] = np.packbits(marks, bitorder="little").view("<u8")
            marks[docs] = False
        # Zeroed dense score arrays, one per concurrent search, reused: a
        # search takes one, zeroes what it touched and gives it back (one that
        # stopped early is dropped). list.pop and list.append are atomic.
        self._scratch: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.int32]]] = []

    def __repr__(self) -> str:
        where = f"shard {self.shard_index}/{self.shard_count}"
        return f"ShardSearcher({str(self.path)!r}, {where}, {self.n_docs} docs)"

    def query_terms(self, query: str) -> dict[str, int]:
        """Query tokens with their number of occurrences, in order of first appearance."""
        return dict(Counter(tokenize(query)))  # Counter counts in C and keeps first-appearance order

    def score(self, query: str, stop: StopCheck = _never) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Matching local document numbers (ascending) and their BM25 scores."""
        docs, scores = self._scores(self.query_terms(query), stop)
        if docs is None:  # dense: scores of every document, 0.0 where none matched
            docs = np.flatnonzero(scores)
            return docs, scores[docs]
        return docs, scores

    def _scores(
        self, query_terms: dict[str, int], stop: StopCheck
    ) -> tuple[npt.NDArray[np.int64] | None, npt.NDArray[np.float64]]:
        """``(matched, their scores)``, or ``(None, dense)``: one score per document, 0.0 for no match."""
        ids = self._term_ids
        known = [(i, n) for t, n in query_terms.items() if (i := ids.get(t)) is not None]
        if not known:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        terms = np.array([t for t, _ in known], dtype=np.int64)
        repeats = np.array([n for _, n in known], dtype=np.float64)
        starts = self._indptr[terms]
        ends = self._indptr[terms + 1]
        # A term's weight: idf times its number of occurrences in the query.
        weights = repeats * self._idf[terms]
        total = int((ends - starts).sum())
        # Every path below adds each document's contributions weight * impact
        # in query term order, starting from 0.0, so the float64 sums are
        # bit-identical whichever path a shard takes, in every sharding.
        if total >= DENSE_RATIO * self.n_docs:
            dense = np.zeros(self.n_docs, dtype=np.float64)
            if len(known) <= TERM_LOOP_MAX:
                # The common case of a short query with frequent terms: add each
                # term's contiguous postings (memory-mapped slices, no copy of
                # the documents) into a dense array of all the shard's documents.
                for start, end, weight in zip(starts.tolist(), ends.tolist(), weights.tolist(), strict=True):
                    _poll(stop)
                    # Documents are unique within a term, so the fancy-index add is a plain scatter.
                    dense[self._docs[start:end]] += weight * self._impacts[start:end]
                return None, dense
            # Many terms: np.add.at adds in input order (one document's terms in
            # query order), chunk after chunk, like the loop above.
            for docs, contributions in self._chunks(starts, ends, weights, stop):
                np.add.at(dense, docs, contributions)
            return None, dense
        # Few postings (fewer than DENSE_RATIO of the documents, so this is cheap
        # whatever the query): sum over the matching documents only.
        chunks = list(self._chunks(starts, ends, weights, stop))
        docs = np.concatenate([d for d, _ in chunks])
        contributions = np.concatenate([c for _, c in chunks])
        # bincount adds in input order, i.e. each document's terms in query order.
        matched, inverse = np.unique(docs, return_inverse=True)
        sums = np.bincount(inverse, weights=contributions).astype(np.float64, copy=False)
        return matched.astype(np.int64, copy=False), sums

    def _chunks(
        self,
        starts: npt.NDArray[np.int64],
        ends: npt.NDArray[np.int64],
        weights: npt.NDArray[np.float64],
        stop: StopCheck,
    ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]:
        """The query's (document, weight * impact) pairs in query term order, in bounded chunks.

        ``stop`` is polled before each chunk: a chunk is at most ``CHUNK_TERMS``
        terms, and at most ``CHUNK_POSTINGS`` postings plus those of its last term.
        """
        counts = ends - starts
        # Cut before every CHUNK_TERMS-th term, and after each term where the
        # running total of postings passes a multiple of CHUNK_POSTINGS.
        passed = np.cumsum(counts) // CHUNK_POSTINGS
        cuts = np.union1d(
            np.arange(CHUNK_TERMS, len(counts), CHUNK_TERMS), np.flatnonzero(np.diff(passed)) + 1
        ).tolist()
        bounds = list(zip(starts.tolist(), ends.tolist(), strict=True))
        for first, last in itertools.pairwise([0, *cuts, len(counts)]):
            _poll(stop)
            chunk = bounds[first:last]
            docs = np.concatenate([self._docs[a:b] for a, b in chunk]).astype(np.int64)
            impacts = np.concatenate([self._impacts[a:b] for a, b in chunk])
            yield docs, np.repeat(weights[first:last], counts[first:last]) * impacts

    def search(self, query: str, k: int, offset: int = 0, *, stop: StopCheck = _never) -> SearchResult:
        """The best ``offset + k`` hits, minus the first ``offset``; and the number of matches.

        Raises :class:`Stopped` as soon as ``stop()`` is true when polled (see the module's rules).
        """
        return self.hits(self.rank(query, k, offset, stop=stop), stop=stop)

    def rank(self, query: str, k: int, offset: int = 0, *, stop: StopCheck = _never) -> Ranking:
        """``search`` without its hits: which documents, their scores, the number of matches."""
        if k < 0 or offset < 0:
            raise ValueError(f"k and offset must be >= 0, got k={k}, offset={offset}")
        query_terms = self.query_terms(query)
        _poll(stop)
        known = [(i, n) for t, n in query_terms.items() if (i := self._term_ids.get(t)) is not None]
        if 0 < len(known) <= TERM_LOOP_MAX:
            found, top_scores, total = self._search_few_terms(known, offset + k, stop)
            _poll(stop)
            found, top_scores = found[offset:], top_scores[offset:]
            terms = frozenset(query_terms) if len(found) else frozenset()
            return Ranking(found.tolist(), top_scores.tolist(), total, terms)
        docs, scores = self._scores(query_terms, stop)
        _poll(stop)
        if docs is None:
            # Dense: select straight from the scores of all documents (every
            # match scores > 0, so the best min(n, matches) are all matches).
            total = int(np.count_nonzero(scores))
            chosen = top_n(scores, min(offset + k, total))[offset:]
            found = chosen
        else:
            total = len(docs)
            chosen = top_n(scores, offset + k)[offset:]
            found = docs[chosen]
        terms = frozenset(query_terms) if len(chosen) else frozenset()
        return Ranking(found.tolist(), scores[chosen].tolist(), total, terms)

    def hits(self, ranking: Ranking, *, stop: StopCheck = _never) -> SearchResult:
        """The hits (id, title, snippet) of a ranking's documents, polling ``stop`` before each."""
        hits = []
        for d, score in zip(ranking.docs, ranking.scores, strict=True):
            _poll(stop)
            hits.append(self._hit(d, score, ranking.terms))
        return SearchResult(hits, ranking.total_matches)

    def _weights(
        self, known: list[tuple[int, int]]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int64], int]:
        """Per known query term, in query order: postings start and end, weight, long row; the long ones."""
        from demo_search import kernels

        terms = np.array([t for t, _ in known], dtype=np.int64)
        repeats = np.array([n for _, n in known], dtype=np.float64)
        return kernels.prepare(terms, repeats, self._indptr, self._idf, self._row_of)

    def _search_few_terms(
        self, known: list[tuple[int, int]], n: int, stop: StopCheck
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], int]:
        """The best ``n`` documents (best first), their scores, and the number of matches.

        Exhaustive over the postings when no query term is long; otherwise
        pruned by block upper bounds (see the module docstring).
        """
        from demo_search import kernels

        starts, ends, weights, rows, longs = self._weights(known)
        if not longs:
            return self._exhaustive(self._take_scratch(), starts, ends, weights, n, stop)
        docs, impacts, shift = self._docs, self._impacts, self._shift
        # Upper bound per block, summed in query term order like the exact
        # scores (float rounding is monotone, so it bounds them bit for bit).
        upper = kernels.block_bounds(self._n_blocks, self._block_max, rows, docs, impacts, starts, ends, weights, shift)
        _poll(stop)
        total = kernels.count_matches(self._bits, rows, docs, starts, ends)
        _poll(stop)
        if n <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float64), total
        # The n best so far, as a heap: its root is the threshold once it holds n documents.
        heap_scores = np.empty(min(n, total), dtype=np.float64)
        heap_docs = np.empty(min(n, total), dtype=np.int64)
        # A call scores at most CHUNK_POSTINGS postings: blocks of 2 ** shift documents, per term.
        step = max(1, (CHUNK_POSTINGS >> shift) // len(known))
        # Blocks in descending bound order (ties by block number), the empty ones never.
        scored = np.zeros(self._n_blocks, dtype=np.bool_)
        batch = FIRST_BLOCKS
        chosen, _ = kernels.next_blocks(upper, scored, 0.0, batch)
        size = 0
        while len(chosen):
            for first in range(0, len(chosen), step):
                _poll(stop)
                size, threshold = kernels.score_blocks(
                    docs, impacts, starts, ends, weights, rows, self._block_max,
                    chosen[first : first + step], shift, heap_scores, heap_docs, size, n,
                )  # fmt: skip
            _poll(stop)
            # Only blocks whose bound reaches the n-th best exact score so far
            # can hold a top-n document (a tie at the threshold can, by id).
            batch *= 2
            chosen, _ = kernels.next_blocks(upper, scored, threshold, batch)
        _poll(stop)
        found, values = kernels.finish(heap_scores, heap_docs, size)
        return found, values, total

    def _exhaustive(
        self,
        scratch: tuple[npt.NDArray[np.float64], npt.NDArray[np.int32]],
        starts: npt.NDArray[np.int64],
        ends: npt.NDArray[np.int64],
        weights: npt.NDArray[np.float64],
        n: int,
        stop: StopCheck,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], int]:
        """Every posting of the query into ``scratch`` (zeroed), term by term; the best ``n``.

        One kernel call per group of terms of at most ``CHUNK_POSTINGS``
        postings (or one term), with a poll of ``stop`` before each.
        """
        from demo_search import kernels

        scores, touched = scratch
        count, first, size = 0, 0, 0
        lengths = (ends - starts).tolist()
        for t, length in enumerate(lengths):
            if size and size + length > CHUNK_POSTINGS:
                _poll(stop)
                count = kernels.accumulate(
                    scores, touched, count, self._docs, self._impacts, starts[first:t], ends[first:t], weights[first:t]
                )
                first, size = t, 0
            size += length
        _poll(stop)
        count = kernels.accumulate(
            scores, touched, count, self._docs, self._impacts, starts[first:], ends[first:], weights[first:]
        )
        _poll(stop)
        found, values = kernels.top(scores, touched, count, n)
        self._scratch.append(scratch)
        return found, values, count

    def _take_scratch(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int32]]:
        """Zeroed scores of every document, and room to list those a query touches."""
        try:
            return self._scratch.pop()
        except IndexError:
            return np.zeros(self.n_docs, dtype=np.float64), np.empty(self.n_docs, dtype=np.int32)

    def _warm(self) -> None:
        """Compiles (or loads from numba's cache) every kernel for this shard's array types."""
        from demo_search import kernels

        none = np.zeros(0, dtype=np.int64)
        scratch = self._take_scratch()
        scores, touched = scratch
        docs, impacts, weights = self._docs, self._impacts, np.zeros(0, dtype=np.float64)
        kernels.prepare(none, weights, self._indptr, self._idf, self._row_of)
        count = kernels.accumulate(scores, touched, 0, docs, impacts, none, none, weights)
        kernels.top(scores, touched, count, 1)
        upper = kernels.block_bounds(
            self._n_blocks, self._block_max, none, docs, impacts, none, none, weights, self._shift
        )
        kernels.count_matches(self._bits, none, docs, none, none)
        chosen, _ = kernels.next_blocks(upper, np.zeros(self._n_blocks, dtype=np.bool_), 0.0, FIRST_BLOCKS)
        heap_scores, heap_docs = np.empty(0, dtype=np.float64), np.empty(0, dtype=np.int64)
        kernels.score_blocks(
            docs, impacts, none, none, weights, none, self._block_max, chosen, self._shift, heap_scores, heap_docs, 0, 1
        )
        kernels.reset(scores, touched, 0)
        kernels.finish(heap_scores, heap_docs, 0)
        self._scratch.append(scratch)

    def _hit(self, doc: int, score: float, terms: frozenset[str]) -> Hit:
        text, cut = self._texts.prefix(doc, SNIPPET_SCAN_CHARS)
        return Hit(self._ids[doc], score, self._titles[doc], snippet(text, terms, cut=cut), self.shard_index)


def _block_runs(docs: npt.NDArray[np.int32], shift: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """For ascending ``docs``: the blocks they fall in (each once), and where each block's run starts."""
    blocks = docs >> shift
    firsts = np.flatnonzero(np.diff(blocks, prepend=-1))
    return blocks[firsts].astype(np.int64), firsts


def top_n(scores: npt.NDArray[np.float64], n: int, docs: npt.NDArray[np.int32] | None = None) -> npt.NDArray[np.int64]:
    """Indices of the ``n`` best scores, best first, ties by ascending index (or ``docs[index]``).

    ``argpartition`` alone would cut a run of equal scores at the n-th place
    arbitrarily; the cut is made explicit instead: everything strictly above
    the n-th best score, then the lowest-numbered of those equal to it.
    """
    n = min(n, len(scores))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if n < len(scores):
        threshold = np.partition(scores, len(scores) - n)[len(scores) - n]
        above = np.flatnonzero(scores > threshold)
        tied = np.flatnonzero(scores == threshold)
        if docs is not None:
            tied = tied[np.argsort(docs[tied], kind="stable")]
        candidates = np.concatenate([above, tied[: n - len(above)]])
    else:
        candidates = np.arange(len(scores), dtype=np.int64)
    keys = candidates if docs is None else docs[candidates]
    return candidates[np.lexsort((keys, -scores[candidates]))]


def snippet(text: str, terms: frozenset[str], width: int = SNIPPET_CHARS, *, cut: bool = False) -> str:
    """About ``width`` characters of ``text`` around the first query term, on one line.

    Starts at the beginning of the text when no query term occurs in it (the
    match was in the title). Cuts at spaces and marks cuts with an ellipsis;
    ``cut`` says that ``text`` is only the start of the document's text, so
    its end is a cut too. Runs of whitespace are one space, and the text is
    stripped: the snippet is cut from ``" ".join(text.split())``.

    The cost is linear in ``text`` (the searcher passes at most
    ``SNIPPET_SCAN_CHARS`` of it) and does not grow with the number of terms.
    ASCII text that is already flat up to the window (single spaces, no tab
    or newline) is not copied: the term is found in it (str.find, in C) and
    only ``text[:first + width + 2]`` is checked, which is a few microseconds
    instead of the tens that splitting and joining 2,000 characters costs.
    """
    if width >= 0 and text.isascii():
        if len(text) <= width and not cut and _flat(text, whole=True):
            return text
        found = find_first_term(text, terms)
        # If text[:n] is flat, text[:n - 1] is the start of the flattened text (a space
        # in it is followed by a word), so that is at least n - 1 = found + width + 1
        # long, more than _window reads or compares with: cutting ``text`` itself
        # gives the same snippet.
        head = text[: (0 if found is None else found) + width + 2]
        if _flat(head, whole=len(head) == len(text)):
            return _window(text, found, width, cut)
    flat = " ".join(text.split())
    if len(flat) <= width and not cut:
        return flat
    return _window(flat, find_first_term(flat, terms), width, cut)


# Every byte but the ASCII separators of str.split() other than the space (tab, newline,
# \x0b, \x0c, \r, \x1c-\x1f): deleting them leaves nothing when there is none. One
# bytes.translate is a third of the time of str.isprintable(), the next fastest check.
_NOT_SEPARATORS = bytes(sorted(set(range(256)) - {*range(0x09, 0x0E), *range(0x1C, 0x20)}))


def _flat(ascii_text: str, *, whole: bool) -> bool:
    """Whether ASCII text (all of a text when ``whole``, else its start) is unchanged by flattening."""
    return (
        not ascii_text.encode("ascii").translate(None, _NOT_SEPARATORS)
        and "  " not in ascii_text
        and not ascii_text.startswith(" ")
        and not (whole and ascii_text.endswith(" "))
    )


def _window(flat: str, found: int | None, width: int, cut: bool) -> str:
    """The snippet of a flattened text whose first query term starts at ``found``.

    Reads ``flat[start : found + width + 1]`` with ``start >= found - SNIPPET_LEAD``
    (from 0 when no term was found) and compares ``len(flat)`` only with
    positions up to ``found + width``.
    """
    start = 0 if found is None else max(0, found - SNIPPET_LEAD)
    start = max(0, min(start, len(flat) - width))
    if start > 0:
        space = flat.find(" ", start, found if found is not None else start + width)
        start = space + 1 if space != -1 else start
    end = min(len(flat), start + width)
    if end < len(flat) or cut:
        space = flat.rfind(" ", start, end)
        end = space if space > start else end
    return ("…" if start > 0 else "") + flat[start:end] + ("…" if end < len(flat) or cut else "")


def merge_results(results: list[SearchResult], k: int, offset: int = 0) -> SearchResult:
    """The global page from per-shard results: score descending, ties by doc id."""
    hits = sorted((hit for r in results for hit in r.hits), key=lambda h: (-h.score, h.doc_id))
    return SearchResult(hits[offset : offset + k], sum(r.total_matches for r in results))


class IndexSearcher:
    """Every shard of an index in one process: the unsharded reference and the benchmark baseline."""

    def __init__(self, path: str | os.PathLike[str], *, block_shift: int | None = None) -> None:
        self.manifest = fmt.read_index_manifest(path)
        self.shards = [
            ShardSearcher(fmt.shard_dir(path, s), block_shift=block_shift) for s in range(self.manifest.shard_count)
        ]
        for s, shard in enumerate(self.shards):
            m = shard.manifest
            if (m.shard_index, m.shard_count, m.corpus_documents, m.corpus_total_length) != (
                s,
                self.manifest.shard_count,
                self.manifest.documents,
                self.manifest.total_length,
            ):
                raise fmt.IndexFormatError(f"{shard.path}: manifest does not belong to the index at {path}")

    def search(self, query: str, k: int, offset: int = 0, *, stop: StopCheck = _never) -> SearchResult:
        return merge_results([s.search(query, offset + k, stop=stop) for s in self.shards], k, offset)
