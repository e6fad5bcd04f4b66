"""The index builder: documents in, one directory of memory-mappable shards out.

How it keeps memory bounded for a million documents (two phases):

1. *Accumulate.* Documents are read in batches. Each batch is tokenized (the
   only per-document Python work), its (document, term) pairs are counted
   with one ``np.unique`` over packed int64 keys, and the pairs and the
   document store are appended to per-shard spill files in a scratch
   directory. Memory held across batches: the vocabulary (term -> global
   number), the corpus-wide document frequencies, and a few integers per
   document.
2. *Finalize*, one shard at a time: read that shard's spill files back,
   renumber its documents in id order and its terms in code point order,
   sort the postings into CSR form, compute each posting's BM25 impact
   (corpus-wide avgdl, see ``format.bm25_impacts``) and write the final
   arrays. Peak memory is about 40 bytes per posting of the largest shard.

Documents go to shards by ``format.shard_of`` (a blake2b hash of the id). N,
the total length and every df are counted over the whole corpus before any
shard is written, so each shard stores corpus-wide statistics and a sharded
search scores exactly like the unsharded one.

The index appears atomically: it is written to a sibling ``*.partial-PID``
directory and renamed at the end, so a crash never leaves a half index where
a leaf (or the ``scatter demo`` cache) would find it.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from demo_search import format as fmt
from demo_search.corpus import CorpusError, Document
from demo_search.tokenizer import tokenize

__all__ = ["BATCH_DOCS", "BuildSummary", "build_index"]

# Documents per batch: large enough that the numpy work per batch dwarfs its
# call overhead, small enough that a batch of long documents stays in the
# tens of megabytes.
BATCH_DOCS = 8192
# Postings per step when computing impacts: bounds the float64 temporaries (~100 MiB).
IMPACT_CHUNK = 1 << 22


@dataclass(frozen=True)
class BuildSummary:
    path: Path
    shards: int
    documents: int
    terms: int
    postings: int
    bytes_on_disk: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"indexed {self.documents:,} documents into {self.shards} shard(s) at {self.path}: "
            f"{self.terms:,} terms, {self.postings:,} postings, "
            f"{self.bytes_on_disk / 2**20:,.1f} MiB on disk, {self.seconds:.1f} s"
        )


class _ShardSpill:
    """Append-only scratch files of one shard during the accumulate phase."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True)
        self.directory = directory
        self.documents = 0
        # Postings as (global term, arrival number, tf), int32 each.
        self.files: dict[str, BinaryIO] = {
            name: open(directory / name, "wb")  # noqa: SIM115 (closed in close())
            for name in ("terms", "docs", "tfs", "ids", "titles", "texts")
        }
        # Byte sizes of each stored field and the token count, per document in arrival order.
        self.sizes: dict[str, array[int]] = {name: array("q") for name in ("ids", "titles", "texts")}
        self.lengths = array("q")

    def add_postings(self, terms: npt.NDArray[Any], docs: npt.NDArray[Any], tfs: npt.NDArray[Any]) -> None:
        self.files["terms"].write(terms.astype(np.int32).tobytes())
        self.files["docs"].write(docs.astype(np.int32).tobytes())
        self.files["tfs"].write(tfs.astype(np.int32).tobytes())

    def add_documents(self, documents: list[Document], lengths: list[int]) -> None:
        for field, values in (
            ("ids", [d.id for d in documents]),
            ("titles", [d.title for d in documents]),
            ("texts", [d.text for d in documents]),
        ):
            encoded = [v.encode("utf-8") for v in values]
            self.files[field].write(b"".join(encoded))
            self.sizes[field].extend(len(e) for e in encoded)
        self.lengths.extend(lengths)
        self.documents += len(documents)

    def close(self) -> None:
        for file in self.files.values():
            file.close()

    def read(self, name: str) -> npt.NDArray[Any]:
        dtype = np.uint8 if name in self.sizes else np.int32
        return np.fromfile(self.directory / name, dtype=dtype)


class _Builder:
    def __init__(self, out: Path, shards: int, progress: tqdm[Any] | None) -> None:
        self.out = out
        self.shards = shards
        self.progress = progress
        self.vocab: dict[str, int] = {}
        self.df = np.zeros(1024, dtype=np.int64)
        self.documents = 0
        self.total_length = 0
        self.spills = [_ShardSpill(out / "_spill" / f"{s:04d}") for s in range(shards)]

    def add_batch(self, batch: list[Document]) -> None:
        vocab = self.vocab
        term_ids: list[int] = []
        lengths: list[int] = []
        for document in batch:
            # Title and text are one field: the title (a qualified name for the
            # stdlib) is often the most specific evidence a document has.
            tokens = tokenize(f"{document.title}\n{document.text}")
            lengths.append(len(tokens))
            for token in tokens:
                term = vocab.get(token)
                if term is None:
                    term = vocab[token] = len(vocab)
                term_ids.append(term)
        if len(vocab) > len(self.df):
            self.df = np.concatenate([self.df, np.zeros(max(len(vocab), 2 * len(self.df)) - len(self.df), np.int64)])

        counts = np.array(lengths, dtype=np.int64)
        doc_of_token = np.repeat(np.arange(len(batch), dtype=np.int64), counts)
        # One sort counts every (document, term) pair of the batch: the key
        # packs the batch-local document above the 32-bit term number.
        keys, tfs = np.unique((doc_of_token << 32) | np.array(term_ids, dtype=np.int64), return_counts=True)
        pair_docs = keys >> 32
        pair_terms = keys & 0xFFFFFFFF
        self.df[: len(vocab)] += np.bincount(pair_terms, minlength=len(vocab))

        shard_of_doc = np.array([fmt.shard_of(d.id, self.shards) for d in batch], dtype=np.int64)
        shard_of_pair = shard_of_doc[pair_docs]
        for s, spill in enumerate(self.spills):
            in_shard = shard_of_doc == s
            if not in_shard.any():
                continue
            # Arrival number of each batch document inside its shard.
            arrival = spill.documents + np.cumsum(in_shard) - 1
            mask = shard_of_pair == s
            spill.add_postings(pair_terms[mask], arrival[pair_docs[mask]], tfs[mask])
            members = np.flatnonzero(in_shard)
            spill.add_documents([batch[i] for i in members], [lengths[i] for i in members])
        self.documents += len(batch)
        self.total_length += int(counts.sum())
        if self.progress is not None:
            self.progress.update(len(batch))

    def close(self) -> None:
        for spill in self.spills:
            spill.close()

    def finalize(self, corpus: str) -> tuple[int, int]:
        if self.documents == 0:
            raise CorpusError("the corpus has no documents; nothing to index")
        self.close()
        words = list(self.vocab)  # global term number -> term
        self.vocab.clear()
        df = self.df[: len(words)]
        # Code point order of every term, computed once for all shards.
        order = sorted(range(len(words)), key=words.__getitem__)
        rank = np.empty(len(words), dtype=np.int64)
        rank[np.array(order, dtype=np.int64)] = np.arange(len(words), dtype=np.int64)
        del order
        postings = 0
        for s, spill in enumerate(self.spills):
            if self.progress is not None:
                self.progress.set_description(f"writing shard {s + 1}/{self.shards}")
            postings += self._write_shard(s, spill, words, df, rank)
        fmt.write_json(
            self.out / fmt.INDEX_MANIFEST,
            fmt.IndexManifest(
                shard_count=self.shards,
                documents=self.documents,
                total_length=self.total_length,
                terms=len(words),
                postings=postings,
                corpus=corpus,
            ),
        )
        shutil.rmtree(self.out / "_spill")
        return len(words), postings

    def _write_shard(
        self,
        s: int,
        spill: _ShardSpill,
        words: list[str],
        df: npt.NDArray[np.int64],
        rank: npt.NDArray[np.int64],
    ) -> int:
        directory = fmt.shard_dir(self.out, s)
        directory.mkdir()
        n = spill.documents

        # Documents: number them in id order (the searcher's tie-break).
        id_sizes = np.frombuffer(spill.sizes["ids"], dtype=np.int64)
        id_blob = spill.read("ids").tobytes()
        id_ends = np.cumsum(id_sizes)
        ids = [id_blob[e - z : e].decode("utf-8") for e, z in zip(id_ends.tolist(), id_sizes.tolist(), strict=True)]
        by_id = sorted(range(n), key=ids.__getitem__)
        for a, b in itertools.pairwise(by_id):
            if ids[a] == ids[b]:
                raise CorpusError(f"duplicate document id {ids[a]!r}: ids must be unique")
        new_of_arrival = np.empty(n, dtype=np.int64)
        new_of_arrival[np.array(by_id, dtype=np.int64)] = np.arange(n, dtype=np.int64)
        del ids, id_blob
        lengths = np.frombuffer(spill.lengths, dtype=np.int64)[by_id].astype(np.int32)
        np.save(directory / fmt.DOC_LENGTHS, lengths)
        for field, (blob_name, offsets_name) in (
            ("ids", fmt.IDS),
            ("titles", fmt.TITLES),
            ("texts", fmt.TEXTS),
        ):
            _write_reordered_blob(
                spill.directory / field,
                np.frombuffer(spill.sizes[field], dtype=np.int64),
                by_id,
                directory / blob_name,
                directory / offsets_name,
            )

        # Terms: the shard's own vocabulary in code point order.
        terms = spill.read("terms").astype(np.int64)
        shard_terms = np.unique(terms)
        shard_terms = shard_terms[np.argsort(rank[shard_terms])]
        local = np.full(len(words), -1, dtype=np.int64)
        local[shard_terms] = np.arange(len(shard_terms), dtype=np.int64)
        (directory / fmt.TERMS).write_text("".join(words[t] + "\n" for t in shard_terms.tolist()), encoding="utf-8")
        np.save(directory / fmt.DF, df[shard_terms])

        # Postings: CSR by local term, documents ascending inside each term.
        term_local = local[terms]
        del terms
        docs = new_of_arrival[spill.read("docs")]
        order = np.argsort(term_local * max(n, 1) + docs)
        docs = docs[order].astype(np.int32)
        np.save(directory / fmt.DOCS, docs)
        tfs = spill.read("tfs")[order]
        del order
        _write_impacts(directory / fmt.IMPACTS, tfs, docs, lengths, self.total_length / self.documents)
        del docs, tfs
        indptr = np.zeros(len(shard_terms) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_local, minlength=len(shard_terms)), out=indptr[1:])
        np.save(directory / fmt.INDPTR, indptr)
        postings = int(indptr[-1])

        fmt.write_json(
            directory / fmt.SHARD_MANIFEST,
            fmt.ShardManifest(
                shard_index=s,
                shard_count=self.shards,
                documents=n,
                terms=len(shard_terms),
                postings=postings,
                corpus_documents=self.documents,
                corpus_total_length=self.total_length,
                k1=fmt.K1,
                b=fmt.B,
            ),
        )
        shutil.rmtree(spill.directory)
        return postings


def _write_impacts(
    path: Path, tfs: npt.NDArray[np.int32], docs: npt.NDArray[np.int32], lengths: npt.NDArray[np.int32], avgdl: float
) -> None:
    """Write each posting's BM25 impact, in chunks so the float64 temporaries stay small."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(len(tfs),))
    for start in range(0, len(tfs), IMPACT_CHUNK):
        end = start + IMPACT_CHUNK
        out[start:end] = fmt.bm25_impacts(tfs[start:end], lengths[docs[start:end]], avgdl)
    out.flush()
    del out


def _write_reordered_blob(
    source: Path, sizes: npt.NDArray[np.int64], order: list[int], blob_path: Path, offsets_path: Path
) -> None:
    """Copy variable-size records from ``source`` into ``blob_path`` in ``order``."""
    starts = np.zeros(len(sizes), dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    new_sizes = sizes[order]
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(new_sizes, out=offsets[1:])
    np.save(offsets_path, offsets)
    out = np.lib.format.open_memmap(blob_path, mode="w+", dtype=np.uint8, shape=(int(offsets[-1]),))
    if len(out):
        data = np.memmap(source, dtype=np.uint8, mode="r")
        # A loop of slice copies: vectorising it would need an int64 index per
        # byte (8x the text size); one Python step per document is cheap.
        for new, old in enumerate(order):
            start = int(starts[old])
            out[offsets[new] : offsets[new + 1]] = data[start : start + int(sizes[old])]
        del data
        out.flush()
    del out


def _directory_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def build_index(
    documents: Iterable[Document],
    out: str | os.PathLike[str],
    *,
    shards: int = 1,
    corpus: str = "",
    overwrite: bool = False,
    progress: tqdm[Any] | None = None,
    batch_docs: int = BATCH_DOCS,
) -> BuildSummary:
    """Index ``documents`` into ``shards`` shards under ``out``.

    ``out`` must not exist unless ``overwrite``. Raises ``CorpusError`` for
    an empty corpus or duplicate ids; nothing is left behind on failure.
    """
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    started = time.perf_counter()
    target = Path(out)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target}: already exists (choose another --out or remove it)")
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    builder: _Builder | None = None
    try:
        builder = _Builder(partial, shards, progress)
        batch: list[Document] = []
        for document in documents:
            batch.append(document)
            if len(batch) >= batch_docs:
                builder.add_batch(batch)
                batch = []
        if batch:
            builder.add_batch(batch)
        terms, postings = builder.finalize(corpus)
        if progress is not None:
            progress.close()
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)
    except BaseException:
        if builder is not None:
            builder.close()
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return BuildSummary(
        path=target,
        shards=shards,
        documents=builder.documents,
        terms=terms,
        postings=postings,
        bytes_on_disk=_directory_size(target),
        seconds=time.perf_counter() - started,
    )
