"""The shard scorer's compiled loops (numba): accumulate, bound, count and select.

:mod:`demo_search.search` decides what to score and polls ``stop``; the
kernels here do the arithmetic, each over a bounded piece of work the caller
chose (a group of terms, a round of blocks). Rules of this module:

- Exact: every kernel is compiled with numba's defaults (no ``fastmath``, so
  no reassociation and no fused multiply-add). A document's score is
  ``0.0 + w1 * impact1 + w2 * impact2 ...`` in the caller's term order,
  the same float64 operations as numpy's ``scores[docs] += w * impacts``, so
  the compiled and the numpy scorers agree bit for bit.
- No polling and no Python objects inside a kernel: the caller polls between
  calls, so it must size each call (see ``search``'s module docstring).
- Scratch scores are 0.0 for every document no term has touched (every
  contribution is > 0); ``touched[:count]`` lists the documents that are
  not, in the order they were first touched. A kernel that reads the final
  scores (:func:`top`) zeroes them again, :func:`reset` too. The pruned
  scorer (:func:`score_blocks`) needs no scratch: it scores a block at a
  time in arrays of the block's size.
- Ranking: score descending, ties by ascending document number. The
  selection is a heap of the ``n`` best (its root is the worst of them),
  so it costs one comparison per candidate that does not enter.
- In a loop over postings or candidates, call a kernel that takes arrays
  only when there is work for it: numba does not inline such a call and
  counts references to its arrays, about 20 ns a call, which is 20 times
  the comparison. So a full heap's root is tested with scalars before
  :func:`_push` is called (:func:`_offer`, :func:`next_blocks`,
  :func:`score_blocks`). A call per block and term (:func:`_lower_bound`)
  is cheap next to the block's postings.
- Compiled once per machine: ``cache=True`` writes the machine code next to
  this file (``__pycache__``) or, when that is read-only, in numba's user
  cache directory. ``nogil=True``: concurrent searches in threads run in
  parallel. Only :mod:`demo_search.search` imports this module, lazily, since
  importing numba takes about 0.4 s and processes that never score (a merge)
  need not pay it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

__all__ = [
    "accumulate",
    "block_bounds",
    "compile_all",
    "count_matches",
    "finish",
    "next_blocks",
    "prepare",
    "reset",
    "score_blocks",
    "top",
]

_F = TypeVar("_F", bound=Callable[..., Any])

Scores = npt.NDArray[np.float64]
Docs = npt.NDArray[np.int32]
Numbers = npt.NDArray[np.int64]


def _kernel(function: _F) -> _F:
    """numba's ``njit`` with this module's options, keeping the Python signature for mypy.

    Without a writable cache directory (a read-only install, no
    ``NUMBA_CACHE_DIR``) numba refuses ``cache=True``: compile per process then.
    """
    try:
        return cast(_F, numba.njit(cache=True, nogil=True)(function))
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return cast(_F, numba.njit(nogil=True)(function))


# Constants of the 64-bit population count (numba mixes uint64 with int64 into float64: all uint64).
_U1, _U2, _U4, _U56 = np.uint64(1), np.uint64(2), np.uint64(4), np.uint64(56)
_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
_U63 = np.uint64(63)


@_kernel
def _popcount(x: np.uint64) -> int:
    x = x - ((x >> _U1) & _M1)
    x = (x & _M2) + ((x >> _U2) & _M2)
    x = (x + (x >> _U4)) & _M4
    return int((x * _H01) >> _U56)


@_kernel
def _add_range(
    scores: Scores, touched: Docs, count: int, docs: Docs, impacts: Scores, lo: int, hi: int, weight: float
) -> int:
    for i in range(lo, hi):
        d = docs[i]
        current = scores[d]
        if current == 0.0:
            touched[count] = d
            count += 1
        scores[d] = current + weight * impacts[i]
    return count


@_kernel
def accumulate(
    scores: Scores,
    touched: Docs,
    count: int,
    docs: Docs,
    impacts: Scores,
    starts: Numbers,
    ends: Numbers,
    weights: Scores,
) -> int:
    """Adds ``weights[t] * impacts[i]`` for every posting i of every term t, in term order; the new count."""
    for t in range(len(starts)):
        count = _add_range(scores, touched, count, docs, impacts, starts[t], ends[t], weights[t])
    return count


@_kernel
def prepare(
    terms: Numbers, repeats: Scores, indptr: Numbers, idf: Scores, row_of: Numbers
) -> tuple[Numbers, Numbers, Scores, Numbers, int]:
    """Per query term: postings start and end, weight (repeats * idf), row of long term or -1; and how many are long."""
    starts, ends = np.empty(len(terms), dtype=np.int64), np.empty(len(terms), dtype=np.int64)
    weights, rows = np.empty(len(terms), dtype=np.float64), np.empty(len(terms), dtype=np.int64)
    longs = 0
    for i in range(len(terms)):
        term = terms[i]
        starts[i], ends[i] = indptr[term], indptr[term + 1]
        weights[i] = repeats[i] * idf[term]
        rows[i] = row_of[term]
        longs += rows[i] >= 0
    return starts, ends, weights, rows, longs


@_kernel
def _worse(score_a: float, doc_a: int, score_b: float, doc_b: int) -> bool:
    return score_a < score_b or (score_a == score_b and doc_a > doc_b)


@_kernel
def _sift_down(heap_scores: Scores, heap_docs: Numbers, size: int, i: int) -> None:
    score, doc = heap_scores[i], heap_docs[i]
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        right = child + 1
        if right < size and _worse(heap_scores[right], heap_docs[right], heap_scores[child], heap_docs[child]):
            child = right
        if not _worse(heap_scores[child], heap_docs[child], score, doc):
            break
        heap_scores[i], heap_docs[i] = heap_scores[child], heap_docs[child]
        i = child
    heap_scores[i], heap_docs[i] = score, doc


@_kernel
def _push(heap_scores: Scores, heap_docs: Numbers, size: int, score: float, doc: int) -> int:
    """Offers one (score, doc) to the heap (capacity ``len(heap_scores)``); its new size."""
    if size < len(heap_scores):
        i = size
        size += 1
        while i > 0:
            parent = (i - 1) // 2
            if not _worse(score, doc, heap_scores[parent], heap_docs[parent]):
                break
            heap_scores[i], heap_docs[i] = heap_scores[parent], heap_docs[parent]
            i = parent
        heap_scores[i], heap_docs[i] = score, doc
    elif size > 0 and _worse(heap_scores[0], heap_docs[0], score, doc):
        heap_scores[0], heap_docs[0] = score, doc
        _sift_down(heap_scores, heap_docs, size, 0)
    return size


@_kernel
def _offer(heap_scores: Scores, heap_docs: Numbers, size: int, scores: Scores, touched: Docs, lo: int, hi: int) -> int:
    """Offers the documents ``touched[lo:hi]`` to the heap; its new size."""
    capacity = len(heap_scores)
    for j in range(lo, hi):
        doc = touched[j]
        score = scores[doc]
        # A full heap turns away most candidates: test with scalars before the call (the module's rules).
        if size == capacity and (capacity == 0 or not _worse(heap_scores[0], heap_docs[0], score, doc)):
            continue
        size = _push(heap_scores, heap_docs, size, score, doc)
    return size


@_kernel
def _sort_heap(heap_scores: Scores, heap_docs: Numbers, size: int) -> None:
    """Heapsort: the worst goes last, so the heap ends best first."""
    for end in range(size - 1, 0, -1):
        heap_scores[0], heap_scores[end] = heap_scores[end], heap_scores[0]
        heap_docs[0], heap_docs[end] = heap_docs[end], heap_docs[0]
        _sift_down(heap_scores, heap_docs, end, 0)


@_kernel
def reset(scores: Scores, touched: Docs, count: int) -> None:
    """Zeroes the scores of ``touched[:count]``."""
    for j in range(count):
        scores[touched[j]] = 0.0


@_kernel
def top(scores: Scores, touched: Docs, count: int, n: int) -> tuple[Numbers, Scores]:
    """The best ``n`` of ``touched[:count]`` (best first) and their scores; zeroes the scratch."""
    capacity = max(0, min(n, count))
    heap_scores = np.empty(capacity, dtype=np.float64)
    heap_docs = np.empty(capacity, dtype=np.int64)
    size = _offer(heap_scores, heap_docs, 0, scores, touched, 0, count)
    _sort_heap(heap_scores, heap_docs, size)
    reset(scores, touched, count)
    return heap_docs[:size], heap_scores[:size]


@_kernel
def block_bounds(
    n_blocks: int,
    block_max: npt.NDArray[np.float64],
    rows: Numbers,
    docs: Docs,
    impacts: Scores,
    starts: Numbers,
    ends: Numbers,
    weights: Scores,
    shift: int,
) -> Scores:
    """Per block, the sum in term order of weight * the term's maximum impact in the block.

    A term with ``rows[t] >= 0`` reads its maxima from ``block_max[rows[t]]``;
    the others' come from their postings (ascending documents). Adding
    ``w * 0.0`` changes no sum, so blocks a term misses are skipped.
    """
    upper = np.zeros(n_blocks, dtype=np.float64)
    for t in range(len(rows)):
        weight, row = weights[t], rows[t]
        if row >= 0:
            for b in range(n_blocks):
                upper[b] += weight * block_max[row, b]
            continue
        i, end = starts[t], ends[t]
        while i < end:
            block = docs[i] >> shift
            best = impacts[i]
            i += 1
            while i < end and docs[i] >> shift == block:
                best = max(best, impacts[i])
                i += 1
            upper[block] += weight * best
    return upper


@_kernel
def next_blocks(upper: Scores, scored: npt.NDArray[np.bool_], threshold: float, batch: int) -> tuple[Numbers, int]:
    """The next ``batch`` blocks to score (ascending numbers), marked in ``scored``; and how many could be.

    Candidates are the blocks not scored yet whose bound is > 0 and >=
    ``threshold``; the chosen are the best ``batch`` of them by descending
    bound, ties by block number: the next ones of a stable sort by bound,
    without sorting every block. The count is of every candidate.
    """
    heap_bounds = np.empty(batch, dtype=np.float64)
    heap_blocks = np.empty(batch, dtype=np.int64)
    size = candidates = 0
    for b in range(len(upper)):
        bound = upper[b]
        if bound > 0.0 and bound >= threshold and not scored[b]:
            candidates += 1
            if size == batch and (batch == 0 or not _worse(heap_bounds[0], heap_blocks[0], bound, b)):
                continue
            size = _push(heap_bounds, heap_blocks, size, bound, b)
    chosen = np.sort(heap_blocks[:size])
    for b in chosen:
        scored[b] = True
    return chosen, candidates


@_kernel
def count_matches(bits: npt.NDArray[np.uint64], rows: Numbers, docs: Docs, starts: Numbers, ends: Numbers) -> int:
    """Documents in at least one term: the popcount of the union of the rows of ``bits`` and the postings."""
    union = np.zeros(bits.shape[1], dtype=np.uint64)
    for t in range(len(rows)):
        row = rows[t]
        if row >= 0:
            for w in range(len(union)):
                union[w] |= bits[row, w]
        else:
            for i in range(starts[t], ends[t]):
                d = np.uint64(docs[i])
                union[d >> np.uint64(6)] |= _U1 << (d & _U63)
    total = 0
    for w in range(len(union)):
        total += _popcount(union[w])
    return total


@_kernel
def _lower_bound(docs: Docs, lo: int, hi: int, value: int) -> int:
    """The first position in ``docs[lo:hi]`` (ascending) holding ``value`` or more, else ``hi``.

    Galloping from ``lo``: steps of 1, 2, 4 ... to pass ``value``, then a binary
    search of the last step. So it costs the log of the distance, not of the
    range: the blocks of a round are ascending and close together.
    """
    step = 1
    while lo + step < hi and docs[lo + step - 1] < value:
        lo += step
        step *= 2
    hi = min(hi, lo + step)
    while lo < hi:
        mid = (lo + hi) >> 1
        if docs[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@_kernel
def score_blocks(
    docs: Docs,
    impacts: Scores,
    starts: Numbers,
    ends: Numbers,
    weights: Scores,
    rows: Numbers,
    block_max: npt.NDArray[np.float64],
    blocks: Numbers,
    shift: int,
    heap_scores: Scores,
    heap_docs: Numbers,
    size: int,
    n: int,
) -> tuple[int, float]:
    """Offers every document of ``blocks`` (ascending) that can enter the heap of the ``n`` best.

    Block-max MaxScore inside each block, once the heap is full: a term's
    *cap* is its weight times its maximum impact in the block; the terms
    with the smallest caps whose sum stays below the heap's root are
    *non-essential*, since a document with none of the others cannot enter.
    Candidates are the documents of the essential terms; a candidate's bound
    adds, in query term order, its essential contributions and the
    non-essential caps, so it bounds its exact score bit for bit (rounding
    is monotone); only a candidate whose bound can beat the root gets its
    exact score, the sum in query term order of its postings, found by walking
    each term's postings in the block once. With every term essential the bound
    is the exact score.
    Returns the heap's size and the threshold: the n-th best score once the
    heap holds ``n`` documents, else 0.0 (every block).
    """
    terms, width, capacity = len(starts), 1 << shift, len(heap_scores)
    bounds = np.empty(width, dtype=np.float64)
    marked = np.empty(width, dtype=np.bool_)
    lo, hi = np.empty(terms, dtype=np.int64), np.empty(terms, dtype=np.int64)
    caps = np.empty(terms, dtype=np.float64)
    order = np.empty(terms, dtype=np.int64)
    essential = np.empty(terms, dtype=np.bool_)
    cursor = starts.copy()  # per term: its postings before this are in earlier blocks
    for b in blocks:
        base = b << shift
        for t in range(terms):
            lo[t] = _lower_bound(docs, cursor[t], ends[t], base)
            hi[t] = cursor[t] = _lower_bound(docs, lo[t], ends[t], base + width)
            essential[t] = True
        every = True
        if size == capacity and capacity > 0:
            for t in range(terms):
                best = 0.0
                if rows[t] >= 0:
                    best = block_max[rows[t], b]
                else:
                    for i in range(lo[t], hi[t]):
                        best = max(best, impacts[i])
                caps[t] = weights[t] * best
                # Insertion sort by ascending cap (a query has at most a few dozen terms).
                k = t
                while k > 0 and caps[order[k - 1]] > caps[t]:
                    order[k] = order[k - 1]
                    k -= 1
                order[k] = t
            # The plain sum of the smallest caps, with room for the rounding of
            # any order of adding them (a relative 1e-12 is far more than 32 terms need).
            below, root = 0.0, heap_scores[0]
            for k in range(terms):
                below += caps[order[k]]
                if below * (1.0 + 1e-12) >= root:
                    break
                essential[order[k]] = False
                every = False
        bounds[:] = 0.0
        marked[:] = False
        for t in range(terms):
            weight = weights[t]
            if essential[t]:
                for i in range(lo[t], hi[t]):
                    j = docs[i] - base
                    bounds[j] += weight * impacts[i]
                    marked[j] = True
            else:
                cap = caps[t]
                for j in range(width):
                    bounds[j] += cap
        for j in range(width):
            if not marked[j]:
                continue
            doc, score = base + j, bounds[j]
            if size == capacity and not _worse(heap_scores[0], heap_docs[0], score, doc):
                continue
            if not every:
                score = 0.0
                for t in range(terms):
                    p = lo[t]  # candidates ascend: each term's postings are walked once per block
                    while p < hi[t] and docs[p] < doc:
                        p += 1
                    lo[t] = p
                    if p < hi[t] and docs[p] == doc:
                        score += weights[t] * impacts[p]
                if size == capacity and not _worse(heap_scores[0], heap_docs[0], score, doc):
                    continue
            size = _push(heap_scores, heap_docs, size, score, doc)
    threshold = heap_scores[0] if size == n else 0.0
    return size, threshold


@_kernel
def finish(heap_scores: Scores, heap_docs: Numbers, size: int) -> tuple[Numbers, Scores]:
    """The heap of :func:`score_blocks`, best first."""
    _sort_heap(heap_scores, heap_docs, size)
    return heap_docs[:size].copy(), heap_scores[:size].copy()


def compile_all() -> None:
    """Compiles every kernel for a shard's array types (read-only memory maps), filling numba's cache.

    A searcher warms its own kernels at load (``ShardSearcher``); this is for
    a build step (CI, an image) so that no process pays the compilation.
    """
    docs, impacts, indptr = np.zeros(1, np.int32), np.ones(1, np.float64), np.array([0, 1], np.int64)
    for array in (docs, impacts, indptr):
        array.flags.writeable = False
    terms, weights = np.zeros(1, np.int64), np.ones(1, np.float64)
    starts, ends, weights, rows, _ = prepare(terms, weights, indptr, np.ones(1), np.zeros(1, np.int64))
    scores, touched = np.zeros(1, np.float64), np.empty(1, np.int32)
    count = accumulate(scores, touched, 0, docs, impacts, starts, ends, weights)
    top(scores, touched, count, 1)
    upper = block_bounds(1, np.ones((1, 1)), rows, docs, impacts, starts, ends, weights, 8)
    total = count_matches(np.ones((1, 1), np.uint64), rows, docs, starts, ends)
    chosen, _ = next_blocks(upper, np.zeros(1, np.bool_), 0.0, 4)
    heap_scores, heap_docs = np.empty(total, np.float64), np.empty(total, np.int64)
    size, _ = score_blocks(
        docs, impacts, starts, ends, weights, rows, np.ones((1, 1)), chosen, 8, heap_scores, heap_docs, 0, 1
    )
    finish(heap_scores, heap_docs, size)


if __name__ == "__main__":
    compile_all()
