"""The demo served: leaf and merge handlers, the CLI, and real deployments over gRPC.

The handler tests call the functions directly (a context stand-in carries
only what they read); the end-to-end tests start real leaf, merge and root
processes through the local runtime and check that what comes back over
the wire is exactly what the in-process index answers, and that a leaf
stops working when its call ends.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest

from demo_search import cli
from demo_search import format as fmt
from demo_search.corpus import Document
from demo_search.index import build_index
from demo_search.leaf import INDEX_ENV, SearchLeaf, _parse
from demo_search.merge import merge
from demo_search.messages import MAX_RESULT_WINDOW
from demo_search.search import IndexSearcher
from demo_search.synthetic import synthetic_corpus, vocabulary
from leaf_sdk import InvalidRequest, LeafInfo
from loadtest.procfs import cpu_seconds
from merge_sdk import Partial, ShardStatus
from protos.demo_search.v1 import search_pb2
from protos.scatter_gather.v1 import shard_pb2
from scatter.runtime import Child, Deployment, load_deployment
from tests._http import fetch, sample

SHARDS = 2


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serving") / "index"
    docs = [*synthetic_corpus(1500, seed=4), Document("de", "Grüße", "Straße in München")]
    build_index(docs, out, shards=SHARDS)
    return out


def _leaf(index: Path, shard: int, shard_count: int = SHARDS) -> SearchLeaf:
    leaf = SearchLeaf(index)
    leaf.on_start(LeafInfo(shard, shard_count, "127.0.0.1:0"))
    return leaf


def not_cancelled(shard: int) -> SimpleNamespace:
    """A context stand-in: the call is for ``shard`` and goes on."""
    return SimpleNamespace(cancelled=False, shard_index=shard)


def test_leaf_answers_offset_plus_k_hits_of_its_shard(index: Path) -> None:
    leaf = _leaf(index, 1)
    partial = leaf.handle(search_pb2.SearchRequest(query="ba be", k=3, offset=4), not_cancelled(1))  # type: ignore[arg-type]
    expected = IndexSearcher(index).shards[1].search("ba be", 7)
    assert [h.doc_id for h in partial.hits] == [h.doc_id for h in expected.hits]
    assert {h.shard_index for h in partial.hits} == {1}
    assert partial.total_matches == expected.total_matches


def test_a_leaf_of_both_shards_answers_each_from_its_own_index(index: Path) -> None:
    leaf = SearchLeaf(index)
    leaf.on_start(LeafInfo(0, SHARDS, "127.0.0.1:0", shards=(0, 1)))
    local = IndexSearcher(index)
    for shard in (1, 0):
        partial = leaf.handle(search_pb2.SearchRequest(query="ba be", k=5), not_cancelled(shard))  # type: ignore[arg-type]
        assert [h.doc_id for h in partial.hits] == [h.doc_id for h in local.shards[shard].search("ba be", 5).hits]
        assert {h.shard_index for h in partial.hits} == {shard}


def test_leaf_rejects_pages_beyond_the_result_window(index: Path) -> None:
    request = search_pb2.SearchRequest(query="ba", k=10, offset=MAX_RESULT_WINDOW)
    with pytest.raises(InvalidRequest, match=r"offset \+ k must be <= 10000"):
        _leaf(index, 0).handle(request, not_cancelled(0))  # type: ignore[arg-type]


def test_a_cancelled_call_skips_building_hits(index: Path) -> None:
    partial = _leaf(index, 0).handle(
        search_pb2.SearchRequest(query="ba", k=3),
        SimpleNamespace(cancelled=True, shard_index=0),  # type: ignore[arg-type]
    )
    assert partial == search_pb2.SearchPartial()


class _EndsAfter:
    """A context stand-in whose call ends (``cancelled`` turns true) at its ``n``-th read."""

    def __init__(self, n: int) -> None:
        self.n, self.reads = n, 0
        self.shard_index = 0

    @property
    def cancelled(self) -> bool:
        self.reads += 1
        return self.reads >= self.n


def test_a_call_that_ends_midway_stops_the_search_and_answers_nothing(index: Path) -> None:
    leaf, request = _leaf(index, 0), search_pb2.SearchRequest(query="ba be di", k=100)
    ctx = _EndsAfter(10**9)
    assert len(leaf.handle(request, ctx).hits) == 100  # type: ignore[arg-type]
    reads = ctx.reads
    assert reads > 100  # polled for every hit, at least
    for n in (1, 3, reads // 2, reads - 1, reads):
        ctx = _EndsAfter(n)
        assert leaf.handle(request, ctx) == search_pb2.SearchPartial()  # type: ignore[arg-type]
        assert ctx.reads == n, "nothing polled (and so nothing done) after the call ended"


def test_leaf_start_fails_on_a_shard_count_mismatch_or_a_bad_shard(index: Path, tmp_path: Path) -> None:
    with pytest.raises(
        fmt.IndexFormatError, match=r"index has 2 shard\(s\) but this leaf was started with --shard-count 3"
    ):
        _leaf(index, 0, shard_count=3)
    with pytest.raises(fmt.IndexFormatError, match=r"index\.json: missing"):
        _leaf(tmp_path, 0)


def _partial(shard: int, hits: list[tuple[str, float]], total: int) -> Partial[search_pb2.SearchPartial]:
    payload = search_pb2.SearchPartial(
        hits=[search_pb2.Hit(doc_id=d, score=s, shard_index=shard) for d, s in hits], total_matches=total
    )
    return Partial(shard_index=shard, status=ShardStatus.OK, payload=payload)


def test_merge_ranks_by_score_then_doc_id_and_passes_coverage_through() -> None:
    coverage = shard_pb2.Coverage(total=3, answered=2)
    coverage.missing.add(shard_index=2, status=shard_pb2.SHARD_STATUS_TIMEOUT, reason="slow")
    partials = [
        _partial(0, [("b", 2.0), ("d", 1.0)], 5),
        _partial(1, [("a", 2.0), ("c", 1.5)], 7),
        Partial(shard_index=2, status=ShardStatus.TIMEOUT, payload=None),
    ]
    ctx = SimpleNamespace(coverage=coverage)
    response = merge(search_pb2.SearchRequest(query="q", k=3), partials, ctx)  # type: ignore[arg-type]
    assert [h.doc_id for h in response.hits] == ["a", "b", "c"]
    assert response.total_matches == 12
    assert response.coverage == coverage
    page = merge(search_pb2.SearchRequest(query="q", k=2, offset=2), partials, ctx)  # type: ignore[arg-type]
    assert [h.doc_id for h in page.hits] == ["c", "d"]


def test_format_response_prints_rank_score_title_snippet_and_partial_coverage() -> None:
    response = search_pb2.SearchResponse(
        hits=[search_pb2.Hit(doc_id="x", score=3.14159, title="json.dumps", snippet="dumps(obj) Serialize")],
        total_matches=1234,
    )
    response.coverage.total, response.coverage.answered = 4, 3
    response.coverage.missing.add(shard_index=1, status=shard_pb2.SHARD_STATUS_TIMEOUT)
    text = cli.format_response("json", response, 0.0123)
    assert text.splitlines() == [
        '"json": 1,234 matching documents, coverage 3/4 shards (PARTIAL: missing shard 1 TIMEOUT), 12.3 ms',
        "   1.   3.142  json.dumps",
        "               dumps(obj) Serialize",
    ]


def test_the_cache_is_keyed_by_python_shards_and_format(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = cli.stdlib_index_path(4)
    assert path.parent == tmp_path / "scatter-gather"
    assert path.name.startswith("demo-stdlib-py3.") and path.name.endswith(f"-4shards-v{fmt.FORMAT_VERSION}")


def test_the_deployment_file_is_a_valid_runtime_spec(tmp_path: Path) -> None:
    from scatter.runtime import load_deployment

    odd = tmp_path / "in{dex} with space"
    config = tmp_path / "demo.toml"
    config.write_text(cli.deployment_toml(odd, shards=4, replicas=2), encoding="utf-8")
    spec = load_deployment(config)
    assert (spec.shards, spec.replicas) == (4, 2)
    assert spec.leaves.command[-2:] == ("--index", str(odd).replace("{", "{{").replace("}", "}}"))
    assert spec.merge.command[1:] == ("-m", "demo_search.merge")


def test_scatter_demo_index_builds_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"id": str(i), "title": f"T{i}", "text": f"word{i} common"}) for i in range(10)),
        encoding="utf-8",
    )
    out = tmp_path / "idx"
    assert cli.main(["index", "--corpus", str(corpus), "--shards", "3", "--out", str(out)]) == 0
    assert "indexed 10 documents into 3 shard(s)" in capsys.readouterr().out
    assert IndexSearcher(out).search("common", 20).total_matches == 10
    assert cli.main(["index", "--corpus", str(corpus), "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["index", "--corpus", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x")]) == 1
    assert "no such file or directory" in capsys.readouterr().err


def test_end_to_end_over_grpc_equals_the_in_process_index(index: Path) -> None:
    """Real processes: 2 shards x 2 replicas, merge and root, started by the local runtime."""
    local = IndexSearcher(index)
    queries = ["ba be", "di", "ku mo na", "münchen", "zzz-unknown", "", LONG_QUERY]
    with (
        cli.run_deployment(index, shards=SHARDS, replicas=2, listen="127.0.0.1:0") as served,
        grpc.insecure_channel(served.address) as channel,
    ):
        for query in queries:
            # k = 1000 returns every match of the 1,501 documents for the frequent terms.
            for k, offset in [(10, 0), (5, 3), (1000, 0)]:
                response, _ = _search(channel, query, k, offset)
                expected = local.search(query, k, offset)
                assert [(h.doc_id, h.score, h.title, h.snippet) for h in response.hits] == [
                    (h.doc_id, h.score, h.title, h.snippet) for h in expected.hits
                ], query
                assert response.total_matches == expected.total_matches
                assert (response.coverage.total, response.coverage.answered) == (SHARDS, SHARDS)
        with pytest.raises(grpc.RpcError) as error:
            _search(channel, "ba", k=MAX_RESULT_WINDOW, offset=1)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        # The same search as the curl line `scatter demo --serve` prints, over HTTP/JSON.
        body = json.loads(cli.curl_line(served.http_address, "ba be", k=10).split("'")[1])
        request = urllib.request.Request(f"http://{served.http_address}/v1/query", data=json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=10) as answer:
            page = json.loads(answer.read())
        expected = local.search("ba be", 10, 0)
        assert [hit["docId"] for hit in page["payload"]["hits"]] == [h.doc_id for h in expected.hits]
        assert page["payload"]["totalMatches"] == str(expected.total_matches)
        assert page["coverage"] == {"total": SHARDS, "answered": SHARDS, "missing": []}


def test_both_shards_in_one_process_answer_as_two_processes_do(index: Path) -> None:
    """Each leaf process serves both shards (2 replicas of it): one ExecuteShards call per request, same answers."""
    local = IndexSearcher(index)
    with tempfile.TemporaryDirectory(prefix="demo-batched-") as tmp:
        config = Path(tmp, "demo.toml")
        config.write_text(cli.deployment_toml(index, shards=SHARDS, replicas=2, shards_per_process=2))
        with (
            Deployment(load_deployment(config), log_dir=Path(tmp, "logs")) as deployment,
            grpc.insecure_channel(deployment.root_address) as channel,
        ):
            assert sorted(deployment.children) == ["leaf-0-1-0", "leaf-0-1-1", "merge", "root"]
            queries = ["ba be", "di", "ku mo na", "münchen", "zzz-unknown"]
            for query in queries:
                response, _ = _search(channel, query, 10, 0)
                expected = local.search(query, 10, 0)
                assert [(h.doc_id, h.score, h.snippet) for h in response.hits] == [
                    (h.doc_id, h.score, h.snippet) for h in expected.hits
                ], query
                assert response.total_matches == expected.total_matches
            metrics = fetch(deployment.children["root"].metrics_address, "/metrics")
            for shard in ("0", "1"):
                # Every first attempt went with the other shard's, to the same process (no hedges at this load).
                calls = sample(metrics, "scatter_root_shard_calls_total", shard=shard)
                assert sample(metrics, "scatter_root_batched_attempts_total", shard=shard) == calls >= len(queries)


def _search(channel: grpc.Channel, query: str, k: int, offset: int) -> tuple[search_pb2.SearchResponse, float]:
    return cli.search_once(channel, query, k, offset=offset, deadline=10.0)


# 5,000 distinct terms: the chunked scoring path and the per-word snippet search.
LONG_QUERY = " ".join(vocabulary()[:5000])


HEAVY_DOCS = 8000


@pytest.fixture(scope="module")
def heavy_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough documents per shard that one call with k = 10,000 costs a leaf about 0.1 s of CPU."""
    out = tmp_path_factory.mktemp("heavy") / "index"
    build_index(synthetic_corpus(HEAVY_DOCS, seed=5), out, shards=SHARDS)
    return out


@contextlib.contextmanager
def _deployment(index: Path, shards: int, replicas: int) -> Iterator[Deployment]:
    """The demo's own deployment file, with the supervisor's handles on the children (their pids)."""
    with tempfile.TemporaryDirectory(prefix="demo-deploy-") as tmp:
        config = Path(tmp, "demo.toml")
        config.write_text(cli.deployment_toml(index, shards=shards, replicas=replicas), encoding="utf-8")
        with Deployment(load_deployment(config), log_dir=Path(tmp, "logs")) as deployment:
            yield deployment


def _leaves_cpu(leaves: list[Child]) -> float:
    return sum(cpu_seconds(leaf.pid or 0) for leaf in leaves)


def _wait_idle(leaves: list[Child], timeout: float = 60.0) -> None:
    """Until no leaf has a handler running (a cancelled sync handler counts until it returns)."""
    deadline = time.monotonic() + timeout
    while any(sample(fetch(leaf.metrics_address, "/metrics"), "scatter_leaf_in_flight") for leaf in leaves):
        assert time.monotonic() < deadline, f"leaf handlers still running after {timeout:.0f} s"
        time.sleep(0.02)


def _cancelled_calls(leaf: Child) -> float:
    return sample(fetch(leaf.metrics_address, "/metrics"), "scatter_leaf_calls_total", outcome="cancelled")


def test_a_heavy_query_past_its_deadline_stops_the_leaves_work(heavy_index: Path) -> None:
    """The client's call ends at its deadline, and the leaves stop spending CPU on it.

    Each leaf's CPU time (procfs) is read around a batch of concurrent heavy
    calls (5,000 terms, k = 10,000): first with a generous deadline, which is
    what the work costs when done to the end, then with a short one. What the
    leaves spend after the short calls have failed must be a small part of the
    full cost: they stop, not finish the work for nobody. Compared with the
    full cost on the same machine in the same run, so a busy machine slows
    both alike; the full batch takes the leaves about 1 s of wall time, five
    times the short deadline.
    """
    calls, short = 8, 0.2
    query, k = LONG_QUERY, MAX_RESULT_WINDOW
    with _deployment(heavy_index, shards=SHARDS, replicas=1) as deployment:
        leaves = [deployment.children[f"leaf-{s}-0"] for s in range(SHARDS)]
        with grpc.insecure_channel(deployment.root_address) as channel, ThreadPoolExecutor(calls) as pool:

            def one(deadline: float) -> grpc.StatusCode:
                try:
                    response, _ = cli.search_once(channel, query, k, deadline=deadline)
                except grpc.RpcError as exc:
                    code: grpc.StatusCode = exc.code()
                    if code == grpc.StatusCode.UNAVAILABLE:
                        # The root's own answer when its shard deadline came first (docs/configuration.md,
                        # min_coverage): every shard TIMEOUT. Otherwise the client's deadline came first.
                        details = exc.details() or ""
                        assert details.count("TIMEOUT: deadline exceeded") == SHARDS, details
                        code = grpc.StatusCode.DEADLINE_EXCEEDED
                    return code
                # Every synthetic document holds one of the 5,000 most frequent words.
                assert len(response.hits) == HEAVY_DOCS and response.coverage.answered == SHARDS
                return grpc.StatusCode.OK

            def batch(deadline: float) -> tuple[list[grpc.StatusCode], float]:
                """The calls' codes, and the leaves' CPU seconds from when the last call ended until they are idle."""
                codes = list(pool.map(one, [deadline] * calls))
                ended = _leaves_cpu(leaves)
                _wait_idle(leaves)
                return codes, _leaves_cpu(leaves) - ended

            cli.search_once(channel, "ba", 10)  # warm: connections, page cache
            before = _leaves_cpu(leaves)
            assert batch(60.0)[0] == [grpc.StatusCode.OK] * calls
            full = _leaves_cpu(leaves) - before
            cancelled = [_cancelled_calls(leaf) for leaf in leaves]
            codes, after = batch(short)
            assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * calls
            # Every leaf did get some of the short calls (or this would prove nothing), and saw them end.
            assert all(_cancelled_calls(leaf) > n for leaf, n in zip(leaves, cancelled, strict=True))
    print(f"leaf CPU: {full:.2f} s for {calls} full calls; {after:.2f} s after {calls} calls ended at {short} s")
    assert full > 0.5, f"the full calls cost the leaves only {full:.2f} s of CPU: too light to tell"
    assert after < full / 5, f"the leaves spent {after:.2f} s of CPU after the calls ended (full cost {full:.2f} s)"


def test_leaf_index_flag_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INDEX_ENV, "/some/index")
    assert _parse(["--shard-index", "1"]) == (Path("/some/index"), ["--shard-index", "1"])
    assert _parse(["--index", "/other"]) == (Path("/other"), [])
    monkeypatch.delenv(INDEX_ENV)
    with pytest.raises(SystemExit) as exit_:
        _parse([])
    assert exit_.value.code == 2
