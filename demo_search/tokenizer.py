"""The one tokenizer of the demo: documents and queries go through the same code.

Rules (also in docs/demo.md; changing any of them changes the index format, so
bump ``FORMAT_VERSION`` in :mod:`demo_search.format` when you do):

1. Unicode NFKC normalisation, so compatibility forms index as their plain
   letters (the ligature U+FB01 is "fi", full-width U+FF21 is "A").
2. ``str.casefold()``: lowercase for every script, plus the caseless
   foldings ("Straße" and "STRASSE" are both "strasse").
3. Tokens are the maximal runs of Unicode word characters, ``\\w+`` with
   ``re.UNICODE``: letters, digits, marks and the underscore of any script.
   The underscore is kept on purpose: ``get_docstring`` is one identifier in
   the corpus of Python documentation and should be one term.
4. Tokens longer than ``MAX_TOKEN_CHARS`` characters are dropped (base64
   blobs, hashes, long runs of one letter). They would bloat the vocabulary
   and nobody types them as a query.

No stemming and no stop words: BM25's idf already gives "the" a weight near
zero, and an exact, explainable term model is what the equality tests need.

The module is named ``tokenizer`` rather than ``tokenize`` so that it can never
shadow the standard library module of that name (``linecache`` imports it).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_TOKEN_CHARS", "find_first_term", "normalize", "tokenize"]

# Lucene's StandardTokenizer splits tokens at 255 chars; 64 is plenty for
# identifiers and words, and keeps the term dictionary of a shard small.
MAX_TOKEN_CHARS = 64

_WORD = re.compile(r"\w+", re.UNICODE)


def normalize(text: str) -> str:
    """NFKC then casefold: the form in which text is split into tokens."""
    # is_normalized is a fast check that skips the copy for the (common) text
    # that is already NFKC, like all-ASCII docstrings.
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    return text.casefold()


def tokenize(text: str) -> list[str]:
    """Return the terms of ``text`` in order, repeats included."""
    tokens = _WORD.findall(normalize(text))
    if any(len(token) > MAX_TOKEN_CHARS for token in tokens):
        tokens = [token for token in tokens if len(token) <= MAX_TOKEN_CHARS]
    return tokens


def find_first_term(text: str, terms: set[str] | frozenset[str]) -> int | None:
    """Offset in the *original* ``text`` of the first word whose term is in ``terms``.

    Used for snippets, which must cut the original text. Normalising word by
    word can differ from normalising the whole text in rare cases (a
    combining mark at a word boundary); a snippet is best effort, so that is
    acceptable, while the index always uses :func:`tokenize`.
    """
    if not terms:
        return None
    if text.isascii():
        # Fast path, same answer: ASCII is already NFKC and casefolds to its
        # lowercase, offset for offset, so one regex scan of the lowered text
        # finds the first whole word (a full \w+ run) equal to a term.
        pattern = "|".join(sorted(re.escape(t) for t in terms if t.isascii()))
        if not pattern:
            return None
        found = re.search(rf"(?<!\w)(?:{pattern})(?!\w)", text.lower())
        return found.start() if found else None
    for match in _WORD.finditer(text):
        if normalize(match.group()) in terms:
            return match.start()
    return None
