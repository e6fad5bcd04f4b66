"""The one tokenizer of the demo: documents and queries go through the same code.

Rules (also in docs/demo.md; changing any of them changes the index format, so
bump ``FORMAT_VERSION`` in :mod:`demo_search.format` when you do):

1. Unicode NFKC normalisation, so compatibility forms index as their plain
   letters and digits (the ligature U+FB01 is "fi", full-width U+FF21 is
   "A", the superscript "²" is "2", the circled "①" is "1").
2. ``str.casefold()``: lowercase for every script, plus the caseless
   foldings ("Straße" and "STRASSE" are both "strasse"). Turkish "İ"
   (U+0130) folds to "i" plus the combining dot above U+0307, as Unicode
   says; so "İstanbul" and "İSTANBUL" are one term, which is not "istanbul".
3. Every decimal digit of any script (Unicode category Nd) is its ASCII
   digit: Arabic-Indic "٢٠٢٤" and Devanagari "२०२४" are "2024", as Lucene's
   ``DecimalDigitFilter`` does.
4. Tokens are the maximal runs of *word characters*: letters (categories
   L*), marks (M*: combining accents, the vowel signs and viramas of Indic
   scripts), decimal digits (Nd), letter numbers (Nl: the ideographic zero U+3007,
   runic and Roman numerals) and the underscore. A combining mark stays inside its word
   ("हिन्दी" is one term, and "cafe" + U+0301 is "café" after NFKC).
   Everything else separates tokens: spaces, punctuation, symbols and emoji,
   and the other numbers (category No) that NFKC leaves alone ("½" is
   "1", U+2044 FRACTION SLASH, "2" after NFKC, so the tokens "1" and "2"). The underscore is kept on purpose:
   ``get_docstring`` is one identifier in the corpus of Python
   documentation and should be one term.
5. Tokens longer than ``MAX_TOKEN_CHARS`` characters are dropped (base64
   blobs, hashes, long runs of one letter). They would bloat the vocabulary
   and nobody types them as a query.

Scripts written without spaces (Chinese, Japanese, Thai) are not segmented
into words: a run of letters is one token, so such text is found by its
whole runs only.

No stemming and no stop words: BM25's idf already gives "the" a weight near
zero, and an exact, explainable term model is what the equality tests need.

How it is fast: ASCII text (most of the stdlib corpus, almost every query)
takes a regex over ``[0-9_a-z]``, which the rules give for ASCII. Other text
takes one character class of the word characters of the Basic Multilingual
Plane, built from ``unicodedata`` the first time it is needed (tens of
milliseconds, once per process); Python's regex engine looks such a class up
in a table, while a class with ranges above U+FFFF is checked range by range,
ten times slower. The rare token with a character above U+FFFF is split by
looking up the category of each such character.

The module is named ``tokenizer`` rather than ``tokenize`` so that it can never
shadow the standard library module of that name (``linecache`` imports it).
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata

__all__ = ["MAX_TOKEN_CHARS", "WORD_CATEGORIES", "find_first_term", "is_word_char", "normalize", "tokenize"]

# Lucene's StandardTokenizer splits tokens at 255 chars; 64 is plenty for
# identifiers and words, and keeps the term dictionary of a shard small.
MAX_TOKEN_CHARS = 64

# Rule 4: the Unicode general categories of word characters (plus "_").
WORD_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl"})

# After rules 1-3, ASCII text has exactly these word characters.
_ASCII_WORD = re.compile(r"[0-9_a-z]+")
# The first code point above the Basic Multilingual Plane.
_ASTRAL = "\U00010000"


def is_word_char(char: str) -> bool:
    """Whether one (normalised) character belongs to a token: rule 4."""
    return char == "_" or unicodedata.category(char) in WORD_CATEGORIES


@functools.cache
def _bmp_categories() -> tuple[str, ...]:
    """The general category of every code point of the Basic Multilingual Plane (one scan, shared)."""
    return tuple(map(unicodedata.category, map(chr, range(0x10000))))


def _ranges(categories: frozenset[str], start: int) -> str:
    """A regex class body: every code point from ``start`` to U+FFFF whose category is in ``categories``."""
    parts = []
    for keep, run in itertools.groupby(_bmp_categories()[start:], categories.__contains__):
        end = start + sum(1 for _ in run)
        if keep:
            first, last = re.escape(chr(start)), re.escape(chr(end - 1))
            parts.append(first if end - start == 1 else f"{first}-{last}")
        start = end
    return "".join(parts)


@functools.cache
def _token_pattern() -> re.Pattern[str]:
    # Characters above U+FFFF are let through as one range and sorted out per token (_split_astral).
    return re.compile(f"[_{_ranges(WORD_CATEGORIES, 0)}{_ASTRAL}-\U0010ffff]+")


@functools.cache
def _non_ascii_digit() -> re.Pattern[str]:
    # Above U+FFFF every character is let through and looked up (_ascii_digit): astral text is rare.
    return re.compile(f"[{_ranges(frozenset({'Nd'}), 0x80)}{_ASTRAL}-\U0010ffff]")


@functools.cache
def _text_word() -> re.Pattern[str]:
    # A word of the original text, before normalisation: anything that may hold a word
    # character after NFKC (every letter and number, Python's \w) or is a mark.
    marks = _ranges(frozenset({"Mn", "Mc", "Me"}), 0x80)
    return re.compile(rf"[\w{marks}{_ASTRAL}-\U0010ffff]+")


def _ascii_digit(match: re.Match[str]) -> str:
    char = match.group()
    value = unicodedata.decimal(char, None)
    return char if value is None else str(value)


def normalize(text: str) -> str:
    """Rules 1-3: NFKC, casefold, ASCII digits. The form in which text is split into tokens."""
    # is_normalized is a fast check that skips the copy for the (common) text
    # that is already NFKC, like all-ASCII docstrings.
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    text = text.casefold()
    if text.isascii():
        return text
    return _non_ascii_digit().sub(_ascii_digit, text)


def _split_astral(token: str) -> list[str]:
    """A token with characters above U+FFFF, cut at those that are not word characters (emoji)."""
    if max(token) < _ASTRAL:
        return [token]
    return ["".join(run) for keep, run in itertools.groupby(token, lambda c: c < _ASTRAL or is_word_char(c)) if keep]


def tokenize(text: str) -> list[str]:
    """Return the terms of ``text`` in order, repeats included."""
    text = normalize(text)
    if text.isascii():
        tokens = _ASCII_WORD.findall(text)
    else:
        tokens = _token_pattern().findall(text)
        if max(text) >= _ASTRAL:
            tokens = [piece for token in tokens for piece in _split_astral(token)]
    if any(len(token) > MAX_TOKEN_CHARS for token in tokens):
        tokens = [token for token in tokens if len(token) <= MAX_TOKEN_CHARS]
    return tokens


# Up to this many terms, ASCII text is searched term by term with str.find,
# which skips to the next occurrence in C (a whole-word check in Python per
# occurrence); beyond it, one set lookup per word is cheaper.
_ALTERNATION_MAX_TERMS = 16
# str.find also stops at a term inside a longer word ("ba" in "kaba"); after
# this many such misses the search goes to one alternation regex of the terms
# instead (compiled once per query), linear in the text whatever it holds. On
# the synthetic corpus str.find takes a fifth of the regex's time (a hit's
# term is found in 1 us instead of 5 us), but "a" in "aaaa..." would cost a
# Python step per character without this bound.
_FIND_MISSES_MAX = 16
_ASCII_WORD_CHARS = "0123456789_abcdefghijklmnopqrstuvwxyz"


@functools.lru_cache(maxsize=64)
def _alternation(terms: frozenset[str]) -> re.Pattern[str] | None:
    """One regex for the whole ASCII words equal to one of ``terms``; made once per query, not per hit."""
    pattern = "|".join(sorted(re.escape(t) for t in terms if t.isascii()))
    return re.compile(rf"(?<![0-9_a-z])(?:{pattern})(?![0-9_a-z])") if pattern else None


def _find_ascii(lowered: str, terms: set[str] | frozenset[str]) -> int | None:
    """The first whole-word occurrence of one of ``terms`` in ``lowered``, by str.find; -1 past the misses bound.

    The same answer as the alternation's ``(?<![0-9_a-z])(?:t1|t2|...)(?![0-9_a-z])``:
    the earliest start at which some term occurs with no word character on either side.
    """
    n = len(lowered)
    best = n + 1
    misses = 0
    for term in terms:
        if not term.isascii():
            continue  # never in ASCII text; the alternation leaves it out too
        if not term:
            return -1  # no token is empty; the alternation has the answer for odd term sets
        size = len(term)
        # Only occurrences that start before the best so far: they end before best - 1 + size.
        i = lowered.find(term, 0, best - 1 + size)
        while i != -1:
            j = i + size
            if (i == 0 or lowered[i - 1] not in _ASCII_WORD_CHARS) and (j == n or lowered[j] not in _ASCII_WORD_CHARS):
                best = i
                break
            misses += 1
            if misses > _FIND_MISSES_MAX:
                return -1
            i = lowered.find(term, i + 1, best - 1 + size)
    return None if best > n else best


def find_first_term(text: str, terms: set[str] | frozenset[str]) -> int | None:
    """Offset in the *original* ``text`` of the first word that has a token in ``terms``.

    Used for snippets, which must cut the original text. A word is split
    from the original text and then tokenized on its own, which can differ
    from tokenizing the whole text in rare cases (a combining mark at a word
    boundary); a snippet is best effort, so that is acceptable, while the
    index always uses :func:`tokenize`. The cost is linear in ``text`` and
    does not grow with the number of terms.
    """
    if not terms:
        return None
    if text.isascii():
        # ASCII is already NFKC and casefolds to its lowercase, offset for
        # offset, so the words of the lowered text are its tokens.
        lowered = text.lower()
        if len(terms) <= _ALTERNATION_MAX_TERMS:
            first = _find_ascii(lowered, terms)
            if first != -1:
                return first
            pattern = _alternation(frozenset(terms))
            found = pattern.search(lowered) if pattern is not None else None
            return found.start() if found else None
        return next((m.start() for m in _ASCII_WORD.finditer(lowered) if m.group() in terms), None)
    for match in _text_word().finditer(text):
        word = match.group()
        if (word.lower() in terms) if word.isascii() else any(t in terms for t in tokenize(word)):
            return match.start()
    return None
