"""The demo application: a sharded BM25 full-text search served by the framework.

Modules, one concept each:

* ``tokenizer``  the one tokenizer for documents and queries (rules at its top)
* ``corpus``     documents: the stdlib docs, JSONL files, text directories
* ``synthetic``  the deterministic Zipfian corpus for scale
* ``format``     the on-disk index format (the builder/searcher contract)
* ``index``      the index builder
* ``search``     the BM25 engine of one shard, and of a whole index in process
* ``leaf`` / ``merge``  the gRPC leaf and merge, written with the SDKs
* ``cli``        ``scatter demo`` and ``scatter demo index``

Nothing here is imported by the framework (``root``, the SDKs); the demo only
uses their public faces. Its own face (``__all__``) is what the benchmarks use:
they read an index only through the format's functions re-exported here.
"""

from typing import TYPE_CHECKING, Any

from demo_search.corpus import CorpusError, Document
from demo_search.format import (
    FORMAT_VERSION,
    IndexFormatError,
    IndexManifest,
    read_document_frequencies,
    read_index_manifest,
)
from demo_search.index import BuildSummary, build_index
from demo_search.messages import hit_to_proto
from demo_search.search import (
    BLOCK_SHIFT,
    SNIPPET_CHARS,
    Hit,
    IndexSearcher,
    SearchResult,
    ShardSearcher,
    merge_results,
)
from demo_search.synthetic import synthetic_corpus
from demo_search.tokenizer import tokenize

if TYPE_CHECKING:
    from demo_search.cli import DEMO_REPLICAS, DEMO_SHARDS, deployment_toml, ensure_stdlib_index

__all__ = [
    "BLOCK_SHIFT",
    "DEMO_REPLICAS",
    "DEMO_SHARDS",
    "FORMAT_VERSION",
    "SNIPPET_CHARS",
    "BuildSummary",
    "CorpusError",
    "Document",
    "Hit",
    "IndexFormatError",
    "IndexManifest",
    "IndexSearcher",
    "SearchResult",
    "ShardSearcher",
    "build_index",
    "deployment_toml",
    "ensure_stdlib_index",
    "hit_to_proto",
    "merge_results",
    "read_document_frequencies",
    "read_index_manifest",
    "synthetic_corpus",
    "tokenize",
]

# The CLI's names are imported on first use: ``python -m demo_search.cli`` would otherwise find
# the module already imported by its package, and runpy warns about that.
_FROM_CLI = frozenset({"DEMO_REPLICAS", "DEMO_SHARDS", "deployment_toml", "ensure_stdlib_index"})


def __getattr__(name: str) -> Any:
    if name in _FROM_CLI:
        from demo_search import cli

        return getattr(cli, name)
    raise AttributeError(f"module 'demo_search' has no attribute {name!r}")
