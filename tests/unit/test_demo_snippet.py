"""The cheap snippet path gives, byte for byte, what the plain definition gives.

``snippet`` skips flattening the text when its start is already flat, and
``find_first_term`` looks for ASCII terms with ``str.find``. The reference
below is the definition they must agree with: the implementation before those
shortcuts, kept here verbatim. Texts are drawn from a seeded generator (no
hypothesis on this project): ASCII words, words holding a term ("kaba" for
"ba"), runs of spaces, tabs, newlines and the other separators of
``str.split``, non-ASCII words and spaces, terms at the start, the middle,
the end or absent, texts shorter and longer than the width and the scan limit,
``cut`` true and false, and odd term sets (empty, over 16 terms, uppercase,
with a space, empty string).
"""

from __future__ import annotations

import random
import re

import pytest

from demo_search import tokenizer
from demo_search.search import SNIPPET_CHARS, SNIPPET_LEAD, SNIPPET_SCAN_CHARS, snippet
from demo_search.tokenizer import find_first_term, tokenize

# --- the reference: the definitions, as they were before the fast paths -------------------------

_REF_ASCII_WORD = re.compile(r"[0-9_a-z]+")


def _ref_alternation(terms: frozenset[str]) -> re.Pattern[str] | None:
    pattern = "|".join(sorted(re.escape(t) for t in terms if t.isascii()))
    return re.compile(rf"(?<![0-9_a-z])(?:{pattern})(?![0-9_a-z])") if pattern else None


def ref_find_first_term(text: str, terms: frozenset[str]) -> int | None:
    if not terms:
        return None
    if text.isascii():
        lowered = text.lower()
        if len(terms) <= 16:
            pattern = _ref_alternation(frozenset(terms))
            found = pattern.search(lowered) if pattern is not None else None
            return found.start() if found else None
        return next((m.start() for m in _REF_ASCII_WORD.finditer(lowered) if m.group() in terms), None)
    for match in tokenizer._text_word().finditer(text):
        word = match.group()
        if (word.lower() in terms) if word.isascii() else any(t in terms for t in tokenize(word)):
            return match.start()
    return None


def ref_snippet(text: str, terms: frozenset[str], width: int = SNIPPET_CHARS, *, cut: bool = False) -> str:
    flat = " ".join(text.split())
    if len(flat) <= width and not cut:
        return flat
    found = ref_find_first_term(flat, terms)
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


# --- the generator -------------------------------------------------------------------------------

TERMS = ["ba", "kemo", "a", "x_1", "dabadu", "9"]
# Words that hold a term without being it, or are it behind punctuation or in capitals.
NEAR = ["kaba", "bak", "baba", "ba_", "_ba", "ba1", "Ba", "BA", "(ba)", "ba.", "ba-ba", "kemos", "aaaa", "x_12", "99"]
PLAIN = ["lorem", "ipsum", "do", "sit", "amet", "q", "z9", "foo_bar", "e.g.", "--", "x", "abc123", "tail", "q" * 55]
NON_ASCII = ["ωμέγα", "ﬁle", "Straße", "İstanbul", "café", "٤٢", "日本語", "🙂", "BA\u0301"]
SPACES = [" "] * 30 + ["  ", "   ", "\t", "\n", " \n ", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\n\n"]
NON_ASCII_SPACES = ["\xa0", "\u2028", "\u3000", "\x85", "\u2003"]
ODD_TERMS = ["", "a b", "A", "ωμέγα", "x.y", "ba.", "file", "strasse", "42"]


def _text(rng: random.Random, terms: frozenset[str]) -> str:
    flavour = rng.random()
    messy = rng.random() < 0.35  # separators other than single spaces
    non_ascii = rng.random() < 0.2
    size = rng.choice([0, 1, 3, 10, 30, 60, 200, 400, 600, 800])
    words = []
    for _ in range(rng.randint(0, size)):
        r = rng.random()
        pool = NEAR if r < 0.25 else NON_ASCII if (non_ascii and r < 0.35) else PLAIN
        words.append(rng.choice(pool))
    # The term at the start, the middle, the end, in many places, or absent.
    if flavour < 0.8:
        where = rng.choice(["start", "middle", "end", "late", "many"])
        term = rng.choice(sorted(terms)) if terms and rng.random() < 0.8 else rng.choice(TERMS)
        spots = {
            "start": [0],
            "middle": [len(words) // 2],
            "end": [len(words)],
            "late": [max(0, len(words) - rng.randint(0, 5))],
            "many": [rng.randint(0, len(words)) for _ in range(5)],
        }[where]
        for spot in sorted(spots, reverse=True):
            words.insert(spot, rng.choice([term, term.upper(), f"{term},", f"'{term}'"]))
    seps = SPACES + (NON_ASCII_SPACES if non_ascii else []) if messy else [" "]
    parts = [rng.choice(seps) if rng.random() < 0.1 else ""]
    for word in words:
        parts += [word, rng.choice(seps)]
    if parts and rng.random() < 0.6:
        parts.pop()  # usually no trailing separator
    elif rng.random() < 0.5:
        parts.append(rng.choice(["  ", " \n", "\t ", " " * 5]))
    return "".join(parts)


def _terms(rng: random.Random) -> frozenset[str]:
    r = rng.random()
    if r < 0.05:
        return frozenset()
    if r < 0.12:  # more than 16 terms: the word loop
        return frozenset(rng.sample(TERMS + PLAIN + [f"w{i}" for i in range(20)], 18))
    terms = set(rng.sample(TERMS, rng.randint(1, 3)))
    if r < 0.25:
        terms.add(rng.choice(ODD_TERMS))
    return frozenset(terms)


def _cases(seed: int, count: int) -> list[tuple[str, frozenset[str], int, bool]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        terms = _terms(rng)
        text = _text(rng, terms)
        width = SNIPPET_CHARS if rng.random() < 0.6 else rng.choice([0, 1, 5, 20, 80, 300])
        if rng.random() < 0.2:
            # Right at the edges the window compares with: the flat text's length, from its start
            # or from the first term.
            flat = " ".join(text.split())
            found = ref_find_first_term(flat, terms) or 0
            width = max(0, rng.choice([len(flat), len(flat) - found]) + rng.randint(-2, 2))
        cut = rng.random() < 0.3
        if rng.random() < 0.15:  # as the searcher passes long texts: the scanned prefix, cut
            cut, text = len(text) > SNIPPET_SCAN_CHARS, text[:SNIPPET_SCAN_CHARS]
        cases.append((text, terms, width, cut))
    return cases


CASES = _cases(seed=19, count=12_000)


def test_the_generator_covers_the_cases_that_matter() -> None:
    texts = [text for text, _, _, _ in CASES]
    assert sum(len(t) > SNIPPET_SCAN_CHARS for t in texts) > 100
    assert sum(len(t) <= SNIPPET_CHARS for t in texts) > 1000
    assert sum(not t.isascii() for t in texts) > 1000
    assert sum(t.isascii() and t != " ".join(t.split()) for t in texts) > 1000
    found = [ref_find_first_term(" ".join(t.split()), terms) for t, terms, _, _ in CASES]
    assert sum(f is None for f in found) > 1000 and sum(f is not None and f > 1000 for f in found) > 100


def test_snippet_is_the_reference_byte_for_byte() -> None:
    for text, terms, width, cut in CASES:
        expected = ref_snippet(text, terms, width, cut=cut)
        assert snippet(text, terms, width, cut=cut) == expected, (text, terms, width, cut)


def test_find_first_term_is_the_reference() -> None:
    for text, terms, _, _ in CASES:
        assert find_first_term(text, terms) == ref_find_first_term(text, terms), (text, terms)


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("a" * 500 + " a", {"a"}),  # hundreds of misses: the alternation takes over
        ("kaba " * 30 + "ba", {"ba", "kemo"}),
        ("x ", {""}),  # no token is empty, but the answer stays the same
        ("", {""}),
        ("ab", {"", "b"}),
    ],
)
def test_find_first_term_edge_cases(text: str, terms: set[str]) -> None:
    assert find_first_term(text, frozenset(terms)) == ref_find_first_term(text, frozenset(terms))
