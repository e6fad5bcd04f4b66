"""Corpora and tokenizer of the demo search: what documents and terms are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from demo_search.corpus import (
    CorpusError,
    Document,
    directory_corpus,
    jsonl_corpus,
    load_corpus,
    stdlib_corpus,
)
from demo_search.synthetic import synthetic_corpus, vocabulary
from demo_search.tokenizer import MAX_TOKEN_CHARS, tokenize


def test_stdlib_corpus_is_large_unique_and_deterministic() -> None:
    docs = list(stdlib_corpus())
    ids = [d.id for d in docs]
    assert len(docs) >= 6000
    assert len(set(ids)) == len(ids)
    by_id = {d.id: d for d in docs}
    # Qualified names, signatures first, topics from pydoc_data, no tests or idlelib.
    assert by_id["json.decoder.JSONDecoder.decode"].title == "json.decoder.JSONDecoder.decode"
    assert by_id["json.dumps"].text.startswith("dumps(obj, *, skipkeys=False")
    assert by_id["topic:assert"].title == "topic: assert"
    assert not any(i.startswith(("test.", "idlelib.", "lib2to3.")) or ".tests." in i for i in ids)
    assert [d.id for d in stdlib_corpus()][:500] == ids[:500]


def test_stdlib_corpus_skips_files_that_do_not_parse(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text('"""Good module."""\ndef f(x):\n    """Eff."""\n', encoding="utf-8")
    (tmp_path / "bad.py").write_text("def (:\n", encoding="utf-8")
    (tmp_path / "latin.py").write_bytes(b'"""caf\xe9"""\n')
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text('"""Not documentation."""\n', encoding="utf-8")
    ids = [d.id for d in stdlib_corpus(tmp_path) if not d.id.startswith("topic:")]
    assert ids == ["good", "good.f"]


def test_jsonl_corpus_reads_records_and_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    good = json.dumps({"id": "1", "title": "One", "text": "first"})
    path.write_text(f"{good}\n\n{json.dumps({'id': '2', 'title': 'Two', 'text': 'second'})}\n", encoding="utf-8")
    assert [d.id for d in jsonl_corpus(path)] == ["1", "2"]

    for line, message in [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"id": 3, "title": "t", "text": "x"}), "field 'id' must be a string, got a int"),
        (json.dumps({"id": "3", "text": "x"}), "field 'title' must be a string, got missing"),
    ]:
        path.write_text(f"{good}\n{line}\n", encoding="utf-8")
        with pytest.raises(CorpusError, match=rf"c\.jsonl:2: {message}"):
            list(jsonl_corpus(path))


def test_directory_corpus_uses_relative_paths_and_first_lines(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("\n# Heading B\n\nbody", encoding="utf-8")
    (tmp_path / "a.txt").write_text("Title A\nbody", encoding="utf-8")
    (tmp_path / "ignored.py").write_text("x = 1", encoding="utf-8")
    docs = list(directory_corpus(tmp_path))
    assert [(d.id, d.title) for d in docs] == [("a.txt", "Title A"), ("sub/b.md", "Heading B")]
    (tmp_path / "c.txt").write_bytes(b"\xff\xfe")
    with pytest.raises(CorpusError, match=r"c\.txt: not valid UTF-8"):
        list(directory_corpus(tmp_path))


def test_load_corpus_dispatches_and_rejects_unknown_paths(tmp_path: Path) -> None:
    assert len(list(load_corpus("synthetic", docs=3))) == 3
    assert len(list(load_corpus("stdlib", docs=5))) == 5
    with pytest.raises(CorpusError, match="no such file or directory"):
        load_corpus(str(tmp_path / "nope"))


def test_synthetic_corpus_is_deterministic_prefix_stable_and_zipfian() -> None:
    docs = list(synthetic_corpus(12_000, seed=7))
    assert docs[:5] == list(synthetic_corpus(5, seed=7))
    assert docs[11_999] == list(synthetic_corpus(12_001, seed=7))[11_999]  # crosses a block boundary
    assert docs[0] != next(iter(synthetic_corpus(1, seed=8)))
    assert docs[0].id == "syn-00000000" and docs[-1].id == "syn-00011999"
    lengths = np.array([len(d.text.split()) for d in docs])
    assert 130 < lengths.mean() < 170 and lengths.max() > 3 * lengths.mean()
    counts: dict[str, int] = {}
    for d in docs[:2000]:
        for w in d.text.split():
            counts[w] = counts.get(w, 0) + 1
    words = vocabulary()
    # Zipf: the most frequent word is the rank-0 word, about twice as frequent as rank 1.
    assert max(counts, key=counts.__getitem__) == words[0]
    assert 1.6 < counts[words[0]] / counts[words[1]] < 2.6
    assert len(set(words)) == len(words)
    assert all(tokenize(w) == [w] for w in words[:3000])


def test_tokenizer_rules() -> None:
    assert tokenize("Hello, World! get_docstring() x2") == ["hello", "world", "get_docstring", "x2"]
    # NFKC: the ligature U+FB01 and full-width letters become plain letters; casefold: ß is ss.
    assert tokenize("Straße STRASSE \ufb01le \uff26\uff55\uff4c\uff4c") == ["strasse"] * 2 + ["file", "full"]
    assert tokenize("Grüße aus München — 日本語 テキスト") == [
        "grüsse",
        "aus",
        "münchen",
        "日本語",
        "テキスト",
    ]
    longest, too_long = "a" * MAX_TOKEN_CHARS, "b" * (MAX_TOKEN_CHARS + 1)
    assert tokenize(f"{longest} {too_long} c") == [longest, "c"]
    assert tokenize("") == [] and tokenize("... --- !!!") == []


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        # Greek and Cyrillic: casefold, final sigma folds to sigma, accents stay.
        ("Ελληνικά ΣΟΦΊΑ σοφία", ["ελληνικά", "σοφία", "σοφία"]),
        ("Москва ЁЛКА ёлка", ["москва", "ёлка", "ёлка"]),
        # Devanagari: vowel signs (Mc) and the virama (Mn) are marks inside the word, not separators.
        ("हिन्दी भाषा", ["हिन्दी", "भाषा"]),
        ("क्षत्रिय", ["क्षत्रिय"]),
        # A combining acute accent: NFKC composes it; one without a precomposed form stays in the token.
        ("cafe\u0301 café", ["café", "café"]),
        ("q\u0307uark", ["q\u0307uark"]),
        # Turkish dotted capital I folds to i + U+0307 (Unicode's casefold): one token, not "i" + "stanbul".
        ("İstanbul İSTANBUL", ["i\u0307stanbul", "i\u0307stanbul"]),
        # CJK: a run of letters is one token (no word segmentation); the ideographic full stop separates.
        ("日本語のテキスト。中文", ["日本語のテキスト", "中文"]),
        # Numerals: NFKC makes superscripts and circled numbers digits; every script's decimal digits are ASCII.
        ("E=mc² x₁ ①", ["e", "mc2", "x1", "1"]),
        ("٢٠٢٤ ۲۰۲۴ २०२४ 2024", ["2024"] * 4),
        # Other numbers NFKC leaves alone are separators; letter numbers (Nl) are kept.
        ("½ ௰ ৴ \u3007 Ⅻ", ["1", "2", "\u3007", "xii"]),
        # Above U+FFFF: math letters normalise to ASCII, emoji separate, Adlam digits fold.
        ("\U0001d518\U0001d52b\U0001d526code😀emoji 𞥑𞥒", ["unicode", "emoji", "12"]),  # Fraktur "Uni"
        ("ok👍done_now", ["ok", "done_now"]),
    ],
)
def test_tokenizer_on_non_latin_text_marks_and_numerals(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


def test_the_ascii_path_of_the_tokenizer_agrees_with_the_unicode_class() -> None:
    from demo_search.tokenizer import _token_pattern, is_word_char, normalize

    # The Unicode class, run on ASCII text, gives what the ASCII fast path gives.
    rng = np.random.default_rng(7)
    ascii_chars = np.array([chr(c) for c in range(128)])
    for _ in range(200):
        text = "".join(rng.choice(ascii_chars, size=int(rng.integers(0, 80))))
        assert tokenize(text) == [t for t in _token_pattern().findall(normalize(text)) if len(t) <= MAX_TOKEN_CHARS]
    # Every character the class admits below U+FFFF is a word character by rule 4, and the other way round.
    pattern = _token_pattern()
    for code in range(0, 0x10000, 7):
        char = chr(code)
        assert bool(pattern.fullmatch(char)) == is_word_char(char), hex(code)


def test_document_is_a_value() -> None:
    assert Document("i", "t", "x") == Document("i", "t", "x")
