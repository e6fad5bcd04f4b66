"""Tantivy as the reference engine of ``scatter bench demo-scale``: the same documents, BM25 top-k, in process.

Rules:

- Optional: ``pip install 'scatter-gather[bench]'`` (PyPI ``tantivy``). Without it
  :func:`available` says how to install it and the benchmark skips the column.
- Documents: one indexed text field ``body`` = title + newline + text (our index
  also scores title and text as one field), tantivy's ``default`` tokenizer
  (split on non-alphanumerics, lowercase), frequencies without positions,
  stored; a fast, stored u64 ``n`` = the document's number in the corpus. On
  the synthetic corpus (lowercase ASCII words) that gives our tokens exactly.
- Two searches: :meth:`TantivyIndex.search` returns scores and addresses
  only (tantivy's own search, what its benchmarks time); :meth:`TantivyIndex.documents`
  also reads each hit's stored document and cuts a snippet of ``SNIPPET_CHARS``
  from it with tantivy's ``SnippetGenerator``: the same work as our search,
  whose hits carry id, title and snippet. Compare ours with the second.
- Query: our tokenizer, then one SHOULD term query per token (repeats kept, as
  our scorer counts a repeated term once per occurrence): BM25 over the OR of
  the terms, k1 = 1.2, b = 0.75 as ours.
- Not identical rankings: tantivy stores each document's length in one lossy
  byte and scores in float32, so near-ties reorder. Compare with overlap@10.
- Cache: the index is built once into ``PATH`` (beside ours), its build record
  in ``PATH.build.json``; a rerun reuses both.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from demo_search import SNIPPET_CHARS, synthetic_corpus, tokenize

__all__ = ["INDEX_SUFFIX", "INSTALL_HINT", "TantivyIndex", "available", "build_or_reuse"]

# Beside our index, named after it with this suffix; a new schema takes a new suffix, so an
# index of an older one is not reused (".tantivy": body not stored).
INDEX_SUFFIX = ".tantivy-stored"

INSTALL_HINT = "tantivy is not installed: pip install 'scatter-gather[bench]' (or pip install tantivy==0.27.*)"
HEAP_BYTES = 512 * 2**20


def available() -> bool:
    try:
        import tantivy  # noqa: F401
    except ImportError:
        return False
    return True


def _schema() -> Any:
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("body", stored=True, tokenizer_name="default", index_option="freq")
    builder.add_unsigned_field("n", stored=True, fast=True, indexed=False)
    return builder.build()


def build_or_reuse(path: Path, *, docs: int, seed: int) -> dict[str, Any]:
    """Index the synthetic corpus into ``path`` (or reuse it); the build record (seconds, peak RSS of this process)."""
    import resource

    import tantivy

    record_path = path.with_name(path.name + ".build.json")
    if record_path.exists() and (path / "meta.json").exists():
        record: dict[str, Any] = json.loads(record_path.read_text())
        return record | {"reused": True}
    shutil.rmtree(path, ignore_errors=True)  # a build cut short leaves no record: start again
    path.mkdir(parents=True)
    print(f"bench: building tantivy index {path} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    index = tantivy.Index(_schema(), path=str(path))
    writer = index.writer(HEAP_BYTES, 2)
    for n, document in enumerate(synthetic_corpus(docs, seed=seed)):
        doc = tantivy.Document()
        doc.add_text("body", f"{document.title}\n{document.text}")
        doc.add_unsigned("n", n)
        writer.add_document(doc)
    writer.commit()
    writer.wait_merging_threads()
    record = {
        "path": str(path),
        "documents": docs,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mib_of_bench_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "bytes_on_disk": sum(f.stat().st_size for f in path.rglob("*") if f.is_file()),
        "load_average": os.getloadavg(),
        "reused": False,
    }
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record


class TantivyIndex:
    """A searcher over an index written by :func:`build_or_reuse`."""

    def __init__(self, path: Path) -> None:
        import tantivy

        self._tantivy = tantivy
        self.index = tantivy.Index.open(str(path))
        self.schema = self.index.schema
        self.searcher = self.index.searcher()

    def query(self, text: str) -> Any:
        t = self._tantivy
        clauses = [(t.Occur.Should, t.Query.term_query(self.schema, "body", token)) for token in tokenize(text)]
        return t.Query.boolean_query(clauses)

    def search(self, text: str, k: int) -> list[tuple[float, Any]]:
        """(score, address) of the best ``k``; counting matches too, as our search does."""
        return list(self.searcher.search(self.query(text), k, count=True).hits)

    def top_numbers(self, text: str, k: int) -> list[int]:
        """Corpus document numbers of the best ``k``."""
        return [int(self.searcher.doc(address)["n"][0]) for _, address in self.search(text, k)]

    def documents(self, text: str, k: int) -> list[tuple[int, str, str]]:
        """The best ``k`` as our hits are: (number, title, snippet), from each hit's stored document."""
        query = self.query(text)
        hits = self.searcher.search(query, k, count=True).hits
        snippets = self._tantivy.SnippetGenerator.create(self.searcher, query, self.schema, "body")
        snippets.set_max_num_chars(SNIPPET_CHARS)
        out = []
        for _, address in hits:
            doc = self.searcher.doc(address)
            title = doc["body"][0].partition("\n")[0]
            out.append((int(doc["n"][0]), title, snippets.snippet_from_doc(doc).fragment()))
        return out

    def latencies(self, queries: list[str], k: int, *, documents: bool = False) -> list[float]:
        """Each query's seconds, one at a time; with ``documents``, :meth:`documents` instead of :meth:`search`."""
        search = self.documents if documents else self.search
        out = []
        for text in queries:
            start = time.perf_counter()
            search(text, k)
            out.append(time.perf_counter() - start)
        return out

    def throughput(self, queries: list[str], k: int, threads: int) -> tuple[list[float], float]:
        """Latencies and wall seconds of ``queries`` run by ``threads`` threads, each taking the next."""
        began = time.perf_counter()

        def one(text: str) -> float:
            start = time.perf_counter()
            self.search(text, k)
            return time.perf_counter() - start

        with ThreadPoolExecutor(threads) as pool:
            latencies = list(pool.map(one, queries))
        return latencies, time.perf_counter() - began
