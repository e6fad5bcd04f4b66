"""The on-disk index format: names, the manifest, the shard assignment, validation.

This module is the contract between the builder (:mod:`demo_search.index`)
and the searcher (:mod:`demo_search.search`); neither may write or read a
file that is not named here. Layout (documented for users in docs/demo.md)::

    INDEX/
      index.json                 corpus-wide manifest (N, total length, shard count, ...)
      shard-0000/
        manifest.json            this shard's counts plus the corpus-wide statistics
        terms.txt                the shard's terms, UTF-8, one per line, sorted by code point
        df.npy          int64    [terms]      document frequency over the WHOLE corpus
        indptr.npy      int64    [terms + 1]  CSR row pointers: postings of term t are
                                              docs[indptr[t]:indptr[t + 1]]
        docs.npy        int32    [postings]   local document numbers, ascending per term
        impacts.npy     float64  [postings]   the BM25 term-frequency part of the posting,
                                              tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))
        doc_lengths.npy int32    [docs]       tokens per document (title + text)
        ids.npy / titles.npy / texts.npy  uint8  UTF-8 blobs, all documents concatenated
        id_offsets.npy / title_offsets.npy / text_offsets.npy  int64 [docs + 1]

Invariants the searcher relies on (checked at load, so a bad file fails at
start, not on the first query): local document numbers are assigned in
ascending order of the document id (code point order), so "ties by local
number" is "ties by id" and a shard's ranking agrees with the merge's; df,
N and the average length are corpus-wide, so a document's score does not
depend on how the corpus is sharded. The impacts are computed once, by the
builder, from corpus-wide avgdl (:func:`bm25_impacts`), so a query costs one
multiply by idf per posting and one scatter-add, and every shard (and the
unsharded index) holds bit-identical impacts for the same (document, term).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "K1",
    "B",
    "IndexFormatError",
    "IndexManifest",
    "ShardManifest",
    "bm25_impacts",
    "load_array",
    "read_document_frequencies",
    "read_index_manifest",
    "read_shard_manifest",
    "shard_dir",
    "shard_of",
]

FORMAT_NAME = "scatter-demo-bm25"
# Bump on any change to the files, their meaning or the tokenizer rules; the
# `scatter demo` cache is keyed by it.
# v2: impacts.npy (float64 BM25 tf part) replaces tfs.npy; k1 and b in the shard manifest.
# v3: the tokenizer keeps combining marks inside tokens, folds every script's decimal
#     digits to ASCII and no longer counts other numerals (No) as word characters.
FORMAT_VERSION = 3

K1 = 1.2  # Lucene / Elasticsearch default
B = 0.75  # Lucene / Elasticsearch default

INDEX_MANIFEST = "index.json"
SHARD_MANIFEST = "manifest.json"
TERMS = "terms.txt"
DF = "df.npy"
INDPTR = "indptr.npy"
DOCS = "docs.npy"
IMPACTS = "impacts.npy"
DOC_LENGTHS = "doc_lengths.npy"
# (blob, offsets) pairs of the document store.
IDS = ("ids.npy", "id_offsets.npy")
TITLES = ("titles.npy", "title_offsets.npy")
TEXTS = ("texts.npy", "text_offsets.npy")


_M = TypeVar("_M", "IndexManifest", "ShardManifest")


class IndexFormatError(Exception):
    """A missing, truncated or inconsistent index file; the message names it."""


def shard_dir(index: str | os.PathLike[str], shard_index: int) -> Path:
    return Path(index, f"shard-{shard_index:04d}")


def shard_of(doc_id: str, shard_count: int) -> int:
    """The shard of a document: a stable hash of its id, never Python's ``hash()``.

    ``hash(str)`` is salted per process (PYTHONHASHSEED); blake2b is the same
    everywhere, so any tool can recompute where a document lives.
    """
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % shard_count


@dataclass(frozen=True)
class IndexManifest:
    """``index.json``: what the whole index is."""

    shard_count: int
    documents: int  # N over the whole corpus
    total_length: int  # sum of document lengths over the whole corpus (avgdl = total_length / N)
    terms: int  # distinct terms over the whole corpus
    postings: int
    corpus: str
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION

    @property
    def avgdl(self) -> float:
        return self.total_length / self.documents if self.documents else 0.0


@dataclass(frozen=True)
class ShardManifest:
    """``manifest.json`` of one shard: its own counts and the corpus-wide statistics."""

    shard_index: int
    shard_count: int
    documents: int  # documents in this shard
    terms: int  # distinct terms in this shard
    postings: int
    corpus_documents: int  # N
    corpus_total_length: int
    k1: float  # the BM25 parameters the impacts were computed with
    b: float
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION

    @property
    def avgdl(self) -> float:
        return self.corpus_total_length / self.corpus_documents if self.corpus_documents else 0.0


def bm25_impacts(
    tfs: npt.NDArray[Any], lengths: npt.NDArray[Any], avgdl: float, k1: float = K1, b: float = B
) -> npt.NDArray[np.float64]:
    """The BM25 term-frequency part of each posting: ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))``.

    ``lengths`` is the document length of each posting (dl). A posting's
    score is ``idf * impact``; computed here once, by the builder, with the
    corpus-wide avgdl, so the same (document, term) has the same float64
    impact in every sharding.
    """
    tf = tfs.astype(np.float64)
    norm = k1 * (1.0 - b + b * lengths.astype(np.float64) / (avgdl or 1.0))
    impacts: npt.NDArray[np.float64] = tf * (k1 + 1.0) / (tf + norm)
    return impacts


def write_json(path: Path, manifest: IndexManifest | ShardManifest) -> None:
    path.write_text(json.dumps(asdict(manifest), indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise IndexFormatError(
            f"{path}: missing (is this a demo search index? build one with 'scatter demo index')"
        ) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexFormatError(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(data, dict):
        raise IndexFormatError(f"{path}: manifest must be a JSON object")
    if data.get("format") != FORMAT_NAME or data.get("version") != FORMAT_VERSION:
        raise IndexFormatError(
            f"{path}: format {data.get('format')!r} version {data.get('version')!r}, "
            f"expected {FORMAT_NAME!r} version {FORMAT_VERSION} (rebuild the index)"
        )
    return data


def _construct(cls: type[_M], data: dict[str, Any], path: Path) -> _M:
    try:
        return cls(**data)
    except TypeError as exc:
        raise IndexFormatError(f"{path}: unexpected manifest fields ({exc})") from exc


def read_index_manifest(index: str | os.PathLike[str]) -> IndexManifest:
    path = Path(index, INDEX_MANIFEST)
    return _construct(IndexManifest, _read_json(path), path)


def read_shard_manifest(shard: str | os.PathLike[str]) -> ShardManifest:
    path = Path(shard, SHARD_MANIFEST)
    return _construct(ShardManifest, _read_json(path), path)


def read_document_frequencies(index: str | os.PathLike[str]) -> tuple[list[str], npt.NDArray[np.int64]]:
    """Every term of the index, sorted by code point, with its corpus-wide document frequency (df).

    For tools that draw queries from an index (the benchmarks' workloads), so
    they never open the index's files by name. df is corpus-wide, so a term
    held by several shards has one value; for a one-shard index this is that
    shard's term dictionary, in its order.
    """
    df_by_term: dict[str, int] = {}
    for shard_index in range(read_index_manifest(index).shard_count):
        shard = shard_dir(index, shard_index)
        count = read_shard_manifest(shard).terms
        path = shard / TERMS
        try:
            terms = path.read_text(encoding="utf-8").split("\n")[:-1]
        except FileNotFoundError as exc:
            raise IndexFormatError(f"{path}: missing") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise IndexFormatError(f"{path}: unreadable ({exc})") from exc
        if len(terms) != count:
            raise IndexFormatError(f"{path}: {len(terms)} terms, manifest says {count}")
        df_by_term.update(zip(terms, load_array(shard / DF, np.int64, count).tolist(), strict=True))
    terms = sorted(df_by_term)
    return terms, np.array([df_by_term[term] for term in terms], dtype=np.int64)


def load_array(path: Path, dtype: type[np.generic], length: int) -> npt.NDArray[Any]:
    """Memory-map one ``.npy`` file and check its dtype and length.

    Memory-mapping keeps a leaf's resident memory to the pages queries touch
    and lets replicas of a shard on one machine share the page cache.
    """
    try:
        array: npt.NDArray[Any] = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError as exc:
        raise IndexFormatError(f"{path}: missing") from exc
    except (OSError, ValueError) as exc:  # bad header, truncated data
        raise IndexFormatError(f"{path}: corrupt or truncated ({exc})") from exc
    if array.dtype != np.dtype(dtype) or array.shape != (length,):
        raise IndexFormatError(f"{path}: expected {np.dtype(dtype)}[{length}], found {array.dtype}{list(array.shape)}")
    # A plain ndarray over the same mapping: np.memmap's Python-level
    # __getitem__ and __array_finalize__ cost microseconds on every slice.
    return array.view(np.ndarray)
