"""A deterministic synthetic corpus for scale: text whose statistics look like language.

* Vocabulary: ``vocab_size`` made-up words, word ``r`` (0-based rank) spelled
  from CV syllables in bijective base 50, so frequent words are short
  ("ba", "be", ...) as in natural language, and every word is distinct.
* Term frequencies: Zipf's law, P(rank r) proportional to 1 / (r + 1) ** s,
  s = 1.07 (close to what English corpora measure).
* Document lengths: log-normal, mean ``mean_length`` tokens, clipped to
  [MIN_LENGTH, MAX_LENGTH]; long-tailed like real documents.

Determinism: documents are generated in fixed blocks of ``BLOCK_DOCS``, each
from its own random stream seeded by ``(seed, block number)``. Document ``i``
therefore depends only on the seed and ``i``: the first N documents of a
larger corpus are the corpus of N documents, whatever the batch size.

Speed: sampling and spelling are vectorised with numpy per block; only the
final ``bytes.decode`` is per document. A million documents take well under a
minute to generate.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from demo_search.corpus import Document

__all__ = ["BLOCK_DOCS", "DEFAULT_DOCS", "synthetic_corpus", "vocabulary"]

DEFAULT_DOCS = 10_000
BLOCK_DOCS = 10_000
VOCAB_SIZE = 200_000
ZIPF_S = 1.07
MEAN_LENGTH = 150
SIGMA_LENGTH = 0.6  # log-normal shape; 0.6 gives a tail a few times the mean, like web pages
MIN_LENGTH = 5
MAX_LENGTH = 5_000
TITLE_WORDS = 6

_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"][:50]


@lru_cache(maxsize=4)
def vocabulary(vocab_size: int = VOCAB_SIZE) -> tuple[str, ...]:
    """The words, most frequent first."""
    base = len(_SYLLABLES)
    words = []
    for rank in range(vocab_size):
        # Bijective numeration: 0..49 one syllable, 50..2549 two, ... all distinct.
        n, parts = rank + 1, []
        while n > 0:
            n, digit = divmod(n - 1, base)
            parts.append(_SYLLABLES[digit])
        words.append("".join(reversed(parts)))
    return tuple(words)


class _Speller:
    """Turns arrays of word ranks into UTF-8 text, vectorised."""

    def __init__(self, words: tuple[str, ...]) -> None:
        encoded = [w.encode("ascii") + b" " for w in words]
        # Each word is stored followed by its space so one gather copies both.
        self.blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self.sizes = np.fromiter((len(w) for w in encoded), dtype=np.int64, count=len(encoded))
        self.starts = np.zeros(len(encoded), dtype=np.int64)
        np.cumsum(self.sizes[:-1], out=self.starts[1:])

    def spell(self, ranks: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        """Bytes of the words (each followed by a space) and the byte end of each word."""
        sizes = self.sizes[ranks]
        ends = np.cumsum(sizes)
        # Source position of every output byte: the word's start plus the
        # byte's offset inside the word (the classic repeat/arange gather).
        shift = np.repeat(self.starts[ranks] - (ends - sizes), sizes)
        shift += np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64)
        return self.blob[shift], ends


def _block(
    block: int,
    seed: int,
    cdf: npt.NDArray[np.float64],
    speller: _Speller,
    words: tuple[str, ...],
    mean_length: float,
) -> Iterator[Document]:
    rng = np.random.default_rng([seed, block])
    mu = np.log(mean_length) - SIGMA_LENGTH**2 / 2  # so that the mean is mean_length
    lengths = np.clip(rng.lognormal(mu, SIGMA_LENGTH, BLOCK_DOCS), MIN_LENGTH, MAX_LENGTH).astype(np.int64)
    ranks = np.searchsorted(cdf, rng.random(int(lengths.sum())), side="right").astype(np.int64)
    np.minimum(ranks, len(cdf) - 1, out=ranks)  # guard the float round-off at the top of the cdf
    text, word_ends = speller.spell(ranks)
    raw = text.tobytes()
    doc_word_ends = np.cumsum(lengths)
    byte_ends = word_ends[doc_word_ends - 1]
    byte_starts = np.concatenate(([0], byte_ends[:-1]))
    first = block * BLOCK_DOCS
    for i in range(BLOCK_DOCS):
        start_word = int(doc_word_ends[i] - lengths[i])
        title = " ".join(words[r] for r in ranks[start_word : start_word + TITLE_WORDS]).capitalize()
        # [:-1] drops the trailing space of the last word.
        body = raw[int(byte_starts[i]) : int(byte_ends[i]) - 1].decode("ascii")
        yield Document(f"syn-{first + i:08d}", title, body)


def synthetic_corpus(
    docs: int,
    *,
    seed: int = 0,
    vocab_size: int = VOCAB_SIZE,
    zipf_s: float = ZIPF_S,
    mean_length: float = MEAN_LENGTH,
) -> Iterator[Document]:
    """``docs`` documents with ids ``syn-00000000``, ``syn-00000001``, ...

    The title repeats the first words of the text (so it adds no new terms
    and titles look like the documents they name).
    """
    if docs < 0:
        raise ValueError(f"docs must be >= 0, got {docs}")
    words = vocabulary(vocab_size)
    weights = 1.0 / np.arange(1, vocab_size + 1, dtype=np.float64) ** zipf_s
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    speller = _Speller(words)
    produced = 0
    block = 0
    while produced < docs:
        for document in _block(block, seed, cdf, speller, words, mean_length):
            if produced == docs:
                return
            produced += 1
            yield document
        block += 1
