"""The BM25 engine and the index format: exact scores, edge cases, sharded == unsharded.

Indexes are built once per module (tmp_path_factory) and shared by the tests.
"""

from __future__ import annotations

import itertools
import math
import random
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from demo_search import format as fmt
from demo_search.corpus import CorpusError, Document, stdlib_corpus
from demo_search.index import build_index
from demo_search.search import (
    CHUNK_TERMS,
    K1,
    B,
    IndexSearcher,
    SearchResult,
    ShardSearcher,
    Stopped,
    snippet,
    top_n,
)
from demo_search.synthetic import synthetic_corpus, vocabulary
from demo_search.tokenizer import tokenize

SHARD_COUNTS = (1, 3, 8)
TINY = [
    Document("a", "", "apple apple banana"),
    Document("b", "", "banana cherry"),
    Document("c", "", "cherry cherry cherry durian"),
]


def _build(root: Path, name: str, docs: list[Document], shards: int) -> Path:
    out = root / f"{name}-{shards}"
    build_index(docs, out, shards=shards, corpus=name, batch_docs=500)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> IndexSearcher:
    return IndexSearcher(_build(tmp_path_factory.mktemp("tiny"), "tiny", TINY, 1))


# --- BM25 by hand ---------------------------------------------------------------------------


def test_bm25_matches_the_formula_by_hand(tiny: IndexSearcher) -> None:
    # N = 3 documents, avgdl = (3 + 2 + 4) / 3 = 3.
    result = tiny.search("apple", 10)
    assert [h.doc_id for h in result.hits] == ["a"] and result.total_matches == 1
    # df(apple) = 1, tf = 2, dl = 3.
    expected = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5)) * (2 * 2.2) / (2 + 1.2 * (1 - 0.75 + 0.75 * 3 / 3))
    assert expected == pytest.approx(1.3486402228911236, abs=1e-15)
    assert result.hits[0].score == pytest.approx(expected, rel=1e-12)

    result = tiny.search("banana cherry", 10)
    idf_2 = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))  # banana and cherry are in 2 documents each
    b = 2 * idf_2 * 2.2 / (1 + 1.2 * (1 - 0.75 + 0.75 * 2 / 3))
    c = idf_2 * 3 * 2.2 / (3 + 1.2 * (1 - 0.75 + 0.75 * 4 / 3))
    a = idf_2 * 2.2 / (1 + 1.2 * (1 - 0.75 + 0.75 * 3 / 3))
    assert [(h.doc_id, h.score) for h in result.hits] == [
        ("b", pytest.approx(b, rel=1e-12)),
        ("c", pytest.approx(c, rel=1e-12)),
        ("a", pytest.approx(a, rel=1e-12)),
    ]
    assert (K1, B) == (1.2, 0.75)


def test_a_repeated_query_term_counts_per_occurrence(tiny: IndexSearcher) -> None:
    # Lucene's QueryBuilder makes one SHOULD clause per token, repeats included.
    once = tiny.search("apple", 1).hits[0].score
    assert tiny.search("apple APPLE", 1).hits[0].score == pytest.approx(2 * once, rel=1e-12)


def _brute_force(docs: list[Document], query: str) -> dict[str, float]:
    """BM25 with dicts and floats, no numpy: an independent reference."""
    tokenized = {d.id: tokenize(f"{d.title}\n{d.text}") for d in docs}
    n = len(docs)
    avgdl = sum(len(t) for t in tokenized.values()) / n
    df = Counter(term for tokens in tokenized.values() for term in set(tokens))
    scores: dict[str, float] = {}
    for doc_id, tokens in tokenized.items():
        tf = Counter(tokens)
        score = 0.0
        for term in tokenize(query):
            if tf[term]:
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                score += idf * tf[term] * (K1 + 1) / (tf[term] + K1 * (1 - B + B * len(tokens) / avgdl))
        if score > 0:
            scores[doc_id] = score
    return scores


# --- sharded == unsharded ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def stdlib_docs() -> list[Document]:
    # A seeded sample of 2,000 documents keeps the module fast; order kept.
    docs = list(stdlib_corpus())
    keep = sorted(random.Random(3).sample(range(len(docs)), 2000))
    return [docs[i] for i in keep]


@pytest.fixture(scope="module")
def synthetic_docs() -> list[Document]:
    return list(synthetic_corpus(3000, seed=11))


@pytest.fixture(scope="module")
def indexes(
    tmp_path_factory: pytest.TempPathFactory, stdlib_docs: list[Document], synthetic_docs: list[Document]
) -> dict[tuple[str, int], IndexSearcher]:
    root = tmp_path_factory.mktemp("indexes")
    return {
        (name, shards): IndexSearcher(_build(root, name, docs, shards))
        for (name, docs), shards in itertools.product(
            [("stdlib", stdlib_docs), ("synthetic", synthetic_docs)], SHARD_COUNTS
        )
    }


def _queries(docs: list[Document], count: int, seed: int) -> list[str]:
    """1-3 terms each, drawn from random documents (so frequent and rare terms both occur)."""
    rng = random.Random(seed)
    queries = []
    while len(queries) < count:
        tokens = tokenize(rng.choice(docs).text)
        if tokens:
            queries.append(" ".join(rng.choice(tokens) for _ in range(rng.randint(1, 3))))
    return queries


@pytest.mark.parametrize("corpus", ["stdlib", "synthetic"])
@pytest.mark.parametrize("shards", SHARD_COUNTS)
def test_sharded_top10_equals_unsharded(
    indexes: dict[tuple[str, int], IndexSearcher],
    stdlib_docs: list[Document],
    synthetic_docs: list[Document],
    corpus: str,
    shards: int,
) -> None:
    docs = stdlib_docs if corpus == "stdlib" else synthetic_docs
    single, sharded = indexes[(corpus, 1)], indexes[(corpus, shards)]
    assert len(sharded.shards) == shards
    for query in _queries(docs, 300, seed=shards):
        expected, got = single.search(query, 10), sharded.search(query, 10)
        assert [h.doc_id for h in got.hits] == [h.doc_id for h in expected.hits], query
        for g, e in zip(got.hits, expected.hits, strict=True):
            assert abs(g.score - e.score) <= 1e-9, query
            assert (g.title, g.snippet) == (e.title, e.snippet)
        assert got.total_matches == expected.total_matches > 0


@pytest.fixture(scope="module")
def small(
    tmp_path_factory: pytest.TempPathFactory, stdlib_docs: list[Document], synthetic_docs: list[Document]
) -> dict[str, tuple[list[Document], IndexSearcher]]:
    root = tmp_path_factory.mktemp("small")
    return {
        name: (docs[:400], IndexSearcher(_build(root, name, docs[:400], 2)))
        for name, docs in [("stdlib", stdlib_docs), ("synthetic", synthetic_docs)]
    }


@pytest.mark.parametrize("corpus", ["stdlib", "synthetic"])
def test_scores_match_a_brute_force_reference(
    small: dict[str, tuple[list[Document], IndexSearcher]], corpus: str
) -> None:
    docs, index = small[corpus]
    for query in _queries(docs, 40, seed=5):
        expected = _brute_force(docs, query)
        result = index.search(query, len(docs))
        assert result.total_matches == len(expected)
        # The reference sums in another order, so scores may differ in the last
        # bit: compare them with a tolerance, and the ranking where they differ.
        assert {h.doc_id: h.score for h in result.hits} == pytest.approx(expected, rel=1e-12)
        ranking = sorted(expected, key=lambda i: (-expected[i], i))
        for got, want in zip((h.doc_id for h in result.hits), ranking, strict=True):
            assert got == want or expected[got] == pytest.approx(expected[want], rel=1e-12)


def test_paging_is_exact_across_shards(indexes: dict[tuple[str, int], IndexSearcher]) -> None:
    single, sharded = indexes[("synthetic", 1)], indexes[("synthetic", 8)]
    full = single.search("ba be", 100)
    for offset in (0, 1, 7, 40, 49, 50, 60):
        page = sharded.search("ba be", 10, offset=offset)
        assert [h.doc_id for h in page.hits] == [h.doc_id for h in full.hits[offset : offset + 10]]
        assert page.total_matches == full.total_matches


@pytest.mark.parametrize("corpus", ["stdlib", "synthetic"])
def test_every_scoring_path_gives_bit_identical_scores(
    indexes: dict[tuple[str, int], IndexSearcher],
    stdlib_docs: list[Document],
    synthetic_docs: list[Document],
    corpus: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The searcher picks a path by query shape (dense term loop, dense
    # bincount, sparse bincount); force each one and compare exactly.
    from demo_search import search

    shard = indexes[(corpus, 1)].shards[0]
    queries = _queries(stdlib_docs if corpus == "stdlib" else synthetic_docs, 60, seed=9)
    paths = {"loop": (0.0, 10**6), "dense": (0.0, 0), "sparse": (2.0, 10**6)}  # (DENSE_RATIO, TERM_LOOP_MAX)
    results = {}
    for name, (ratio, loop_max) in paths.items():
        monkeypatch.setattr(search, "DENSE_RATIO", ratio)
        monkeypatch.setattr(search, "TERM_LOOP_MAX", loop_max)
        results[name] = [shard.score(q) for q in queries]
    for name in ("dense", "sparse"):
        for (docs, scores), (want_docs, want_scores), query in zip(
            results[name], results["loop"], queries, strict=True
        ):
            assert np.array_equal(docs, want_docs) and np.array_equal(scores, want_scores), (name, query)


# --- stopping early ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "k", "paths"),
    [
        ("ba be di", 40, "term loop"),
        (" ".join(vocabulary()[:2000]), 40, "chunks of terms"),
        (" ".join(vocabulary()[-600:]), 40, "few postings"),
        (" ".join(vocabulary()[:2000]), 0, "k = 0"),
    ],
)
def test_search_polls_stop_per_term_chunk_and_hit_and_stops_at_once(
    indexes: dict[tuple[str, int], IndexSearcher], query: str, k: int, paths: str
) -> None:
    shard = indexes[("synthetic", 1)].shards[0]
    polls = 0

    def counting() -> bool:
        nonlocal polls
        polls += 1
        return False

    result = shard.search(query, k, stop=counting)
    assert result == shard.search(query, k)  # polling changes nothing
    known = sum(t in shard._term_ids for t in shard.query_terms(query))
    # At least: after the terms, each term (loop) or chunk of terms, after scoring, each hit.
    assert polls >= 2 + min(known, -(-known // CHUNK_TERMS)) + len(result.hits), paths
    for n in range(1, polls + 1):
        seen = 0

        def stop_at(n: int = n) -> bool:
            nonlocal seen
            seen += 1
            return seen >= n

        with pytest.raises(Stopped):
            shard.search(query, k, stop=stop_at)
        assert seen == n, "no more work (and no more polls) once stop said so"


# --- edge cases ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> IndexSearcher:
    docs = [
        *TINY,
        Document("twin-2", "Twin", "identical words here"),
        Document("twin-1", "Twin", "identical words here"),
        Document("de", "Straße in München", "Grüße aus Köln. Die ﬁle ist groß."),
        Document("ja", "日本語", "日本語 の テキスト を 検索 する"),
        Document("long", "Long", " ".join(["filler"] * 200) + " needle " + " ".join(["tail"] * 50)),
    ]
    return IndexSearcher(_build(tmp_path_factory.mktemp("edge"), "edge", docs, 3))


@pytest.mark.parametrize("query", ["", "   ", "!!! ... ---", "zzzunknown", "nope neither"])
def test_empty_and_unknown_queries_match_nothing(edge: IndexSearcher, query: str) -> None:
    assert edge.search(query, 10) == SearchResult([], 0)


def test_k_zero_returns_only_the_count(edge: IndexSearcher) -> None:
    assert edge.search("banana cherry", 0) == SearchResult([], 3)


def test_k_larger_than_the_corpus_returns_every_match_in_order(edge: IndexSearcher) -> None:
    result = edge.search("cherry banana identical", 1000)
    assert result.total_matches == len(result.hits) == 5
    keys = [(-h.score, h.doc_id) for h in result.hits]
    assert keys == sorted(keys)
    assert edge.search("cherry", 10, offset=1000) == SearchResult([], 2)


def test_equal_scores_are_ordered_by_doc_id(edge: IndexSearcher) -> None:
    hits = edge.search("identical", 10).hits
    assert [h.doc_id for h in hits] == ["twin-1", "twin-2"] and hits[0].score == hits[1].score
    assert [h.doc_id for h in edge.search("identical", 1).hits] == ["twin-1"]


def test_negative_k_or_offset_is_rejected(edge: IndexSearcher) -> None:
    with pytest.raises(ValueError, match="k and offset must be >= 0"):
        edge.shards[0].search("x", -1)


def test_non_ascii_text_and_queries(edge: IndexSearcher) -> None:
    for query in ["STRASSE", "münchen", "MÜNCHEN", "file", "grüsse", "日本語", "検索"]:
        hits = edge.search(query, 5).hits
        assert hits and hits[0].doc_id in {"de", "ja"}, query
    assert edge.search("groß", 1).hits[0].snippet == "Grüße aus Köln. Die ﬁle ist groß."


def test_a_10000_term_query_works_and_is_bounded(edge: IndexSearcher) -> None:
    words = [f"unknown{i}" for i in range(9990)] + ["needle", "apple", "cherry", "banana"] * 3
    started = time.perf_counter()
    result = edge.search(" ".join(words), 10)
    assert time.perf_counter() - started < 5.0
    assert result.total_matches == 4 and {h.doc_id for h in result.hits} == {"a", "b", "c", "long"}


def test_snippet_is_cut_around_the_first_query_term(edge: IndexSearcher) -> None:
    hit = edge.search("needle", 1).hits[0]
    assert "needle" in hit.snippet and hit.snippet.startswith("…") and hit.snippet.endswith("…")
    assert len(hit.snippet) <= 162
    assert snippet("short text", frozenset({"x"})) == "short text"
    # No query term in the text (the match was in the title): the start of the text.
    assert snippet("word " * 100, frozenset({"absent"})).startswith("word word")


def test_top_n_breaks_ties_by_index() -> None:
    scores = np.array([1.0, 3.0, 2.0, 3.0, 2.0, 2.0])
    assert top_n(scores, 3).tolist() == [1, 3, 2]
    assert top_n(scores, 4).tolist() == [1, 3, 2, 4]
    assert top_n(scores, 10).tolist() == [1, 3, 2, 4, 5, 0]
    assert top_n(scores, 0).tolist() == []


# --- builder ----------------------------------------------------------------------------------


def test_documents_live_in_the_shard_of_their_id_hash(edge: IndexSearcher) -> None:
    assert [fmt.shard_of(i, 4) for i in ("json.dumps", "topic:assert", "syn-00000000")] == [0, 0, 3]
    for shard in edge.shards:
        for hit in shard.search("apple banana cherry identical needle straße 日本語", 100).hits:
            assert fmt.shard_of(hit.doc_id, 3) == shard.shard_index


def test_more_shards_than_documents_leaves_empty_shards_that_work(tmp_path: Path) -> None:
    index = IndexSearcher(_build(tmp_path, "few", TINY, 8))
    assert sum(s.n_docs for s in index.shards) == 3 and any(s.n_docs == 0 for s in index.shards)
    assert [h.doc_id for h in index.search("banana", 5).hits] == ["b", "a"]


def test_builder_rejects_duplicates_empty_corpora_and_existing_output(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="duplicate document id 'a'"):
        build_index([*TINY, Document("a", "", "again")], tmp_path / "dup")
    with pytest.raises(CorpusError, match="no documents"):
        build_index([], tmp_path / "empty")
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left behind
    build_index(TINY, tmp_path / "ok")
    with pytest.raises(FileExistsError, match="already exists"):
        build_index(TINY, tmp_path / "ok")
    summary = build_index(TINY, tmp_path / "ok", overwrite=True, shards=2)
    assert (summary.documents, summary.terms, summary.postings, summary.shards) == (3, 4, 6, 2)
    assert summary.bytes_on_disk > 0 and "3 documents" in str(summary)


# --- corrupt indexes fail at load, naming the file ---------------------------------------------

SHARD_FILES = [
    fmt.SHARD_MANIFEST,
    fmt.TERMS,
    fmt.DF,
    fmt.INDPTR,
    fmt.DOCS,
    fmt.IMPACTS,
    fmt.DOC_LENGTHS,
    *fmt.IDS,
    *fmt.TITLES,
    *fmt.TEXTS,
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("pristine"), "tiny", TINY, 1)


def _copy(pristine: Path, tmp_path: Path) -> Path:
    shutil.copytree(pristine, tmp_path / "index")
    return fmt.shard_dir(tmp_path / "index", 0)


def test_the_shard_directory_lists_exactly_the_format_files(pristine: Path) -> None:
    assert sorted(p.name for p in fmt.shard_dir(pristine, 0).iterdir()) == sorted(SHARD_FILES)


@pytest.mark.parametrize("name", SHARD_FILES)
def test_a_missing_file_fails_at_load_naming_it(pristine: Path, tmp_path: Path, name: str) -> None:
    shard = _copy(pristine, tmp_path)
    (shard / name).unlink()
    with pytest.raises(fmt.IndexFormatError, match=rf"{name}: missing"):
        ShardSearcher(shard)


@pytest.mark.parametrize("name", SHARD_FILES)
def test_a_truncated_file_fails_at_load_naming_it(pristine: Path, tmp_path: Path, name: str) -> None:
    shard = _copy(pristine, tmp_path)
    data = (shard / name).read_bytes()
    (shard / name).write_bytes(data[: len(data) - 3])
    with pytest.raises(fmt.IndexFormatError, match=rf"{name}: "):
        ShardSearcher(shard)


@pytest.mark.parametrize(
    ("name", "array", "message"),
    [
        (fmt.DOCS, np.array([0, 1, 9, 0, 1, 2], np.int32), "document number out of range"),
        (fmt.IMPACTS, np.array([2.0, 1.0, 0.0, 1.0, 1.0, 1.5]), r"impact out of range"),
        (fmt.IMPACTS, np.array([2.0, 1.0, 2.2, 1.0, 1.0, 1.5]), r"impact out of range"),
        (fmt.DF, np.array([1, 9, 2, 1], np.int64), "document frequencies out of range"),
        (fmt.INDPTR, np.array([0, 1, 1, 3, 6], np.int64), "every term needs >= 1 posting"),
        (fmt.DOCS, np.array([0, 1, 2], np.int64), r"expected int32\[6\], found int64\[3\]"),
    ],
)
def test_inconsistent_arrays_fail_at_load(
    pristine: Path, tmp_path: Path, name: str, array: np.ndarray, message: str
) -> None:
    shard = _copy(pristine, tmp_path)
    np.save(shard / name, array)
    with pytest.raises(fmt.IndexFormatError, match=rf"{name}: {message}"):
        ShardSearcher(shard)


def test_a_foreign_format_version_is_refused(pristine: Path, tmp_path: Path) -> None:
    shard = _copy(pristine, tmp_path)
    manifest = (shard / fmt.SHARD_MANIFEST).read_text(encoding="utf-8")
    (shard / fmt.SHARD_MANIFEST).write_text(
        manifest.replace(f'"version": {fmt.FORMAT_VERSION}', '"version": 99'), encoding="utf-8"
    )
    with pytest.raises(fmt.IndexFormatError, match=rf"version 99, expected .* version {fmt.FORMAT_VERSION}"):
        ShardSearcher(shard)
    with pytest.raises(fmt.IndexFormatError, match=r"index\.json: missing"):
        IndexSearcher(tmp_path / "nothing")


def test_an_index_built_with_other_bm25_parameters_is_refused(pristine: Path, tmp_path: Path) -> None:
    shard = _copy(pristine, tmp_path)
    manifest = (shard / fmt.SHARD_MANIFEST).read_text(encoding="utf-8")
    (shard / fmt.SHARD_MANIFEST).write_text(manifest.replace('"k1": 1.2', '"k1": 2.0'), encoding="utf-8")
    with pytest.raises(fmt.IndexFormatError, match=r"manifest\.json: built with k1=2\.0"):
        ShardSearcher(shard)


def test_the_vocabulary_of_the_synthetic_corpus_round_trips(
    indexes: dict[tuple[str, int], IndexSearcher],
) -> None:
    # Every synthetic word is its own single term, so queries by word find documents.
    assert indexes[("synthetic", 1)].search(vocabulary()[0], 1).total_matches > 2000


def test_the_benchmark_query_mixes_are_seeded_and_in_their_df_bands(
    indexes: dict[tuple[str, int], IndexSearcher],
) -> None:
    from loadtest.demo_scale import HEAD_TERMS, MID_DF, make_queries

    single = indexes[("synthetic", 1)]
    path = single.shards[0].path.parent
    shard = single.shards[0]
    n = single.manifest.documents
    for mix in ("mid", "zipf", "head"):
        queries = make_queries(path, mix, 50, seed=1)
        assert queries == make_queries(path, mix, 50, seed=1) != make_queries(path, mix, 50, seed=2)
        assert all(1 <= len(q.split()) <= 3 for q in queries)
    df = {t: int(shard._df[i]) for t, i in shard._term_ids.items()}
    assert all(MID_DF[0] * n <= df[t] <= MID_DF[1] * n for q in make_queries(path, "mid", 50, 1) for t in q.split())
    head = set(sorted(df, key=lambda t: -df[t])[:HEAD_TERMS])
    assert all(t in head for q in make_queries(path, "head", 50, 1) for t in q.split())


def test_the_ascii_fast_paths_of_find_first_term_agree_with_the_word_loop(stdlib_docs: list[Document]) -> None:
    from demo_search.tokenizer import _text_word, find_first_term

    def reference(text: str, terms: frozenset[str]) -> int | None:
        return next((m.start() for m in _text_word().finditer(text) if set(tokenize(m.group())) & terms), None)

    rng = random.Random(4)
    checked = 0
    for doc in rng.sample(stdlib_docs, 300):
        tokens = tokenize(doc.text)
        if not tokens or not doc.text.isascii():
            continue
        few = frozenset([*rng.sample(tokens, min(2, len(tokens))), "zzz_not_there", "é"])
        # More terms than the alternation takes: the set lookup per word.
        many = few | {f"zzz{i}" for i in range(100)}
        for terms in (few, many):
            assert find_first_term(doc.text, terms) == reference(doc.text, terms), (doc.id, terms)
        assert find_first_term(doc.text, frozenset({"zzz_not_there"})) is None
        checked += 1
    assert checked > 100
    assert find_first_term("Foo_bar foo BAR", frozenset({"bar"})) == 12  # whole words only
    assert find_first_term("x ﬁle", frozenset({"file"})) == 2  # non-ASCII text: the word loop
    assert find_first_term("Die Stadt İSTANBUL", frozenset(tokenize("İstanbul"))) == 10
    assert find_first_term("Wert x² = ٤٢", frozenset({"42"})) == 10  # a word's tokens after NFKC and digit folding


def test_a_hit_reads_a_bounded_prefix_of_long_texts(tmp_path: Path) -> None:
    from demo_search.search import SNIPPET_CHARS, SNIPPET_SCAN_CHARS

    early = "needle " + "hay " * 10_000
    late = "hay " * 10_000 + "needle"
    greek = "ωω " + "ωμέγα " * 2000  # two-byte characters: the prefix is cut on a character boundary
    docs = [Document("early", "", early), Document("late", "", late), Document("greek", "needle", greek)]
    index = IndexSearcher(_build(tmp_path, "long", docs, 1))
    hits = {h.doc_id: h.snippet for h in index.search("needle", 10).hits}
    assert hits["early"].startswith("needle hay") and hits["early"].endswith("…")
    # The term is beyond the scanned prefix: the snippet is the start of the text, cut.
    assert hits["late"] == "hay " * 39 + "hay…"
    assert hits["greek"].startswith("ωω ωμέγα") and hits["greek"].endswith("ωμέγα…")
    assert all(len(s) <= SNIPPET_CHARS + 2 for s in hits.values())
    assert len(late) // 10 > SNIPPET_SCAN_CHARS
