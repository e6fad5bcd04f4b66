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


def test_document_is_a_value() -> None:
    assert Document("i", "t", "x") == Document("i", "t", "x")
