"""A mixed deployment: the Python root with the Node.js word-count leaves and merge (examples/node/).

Started through the real runtime from ``examples/node/scatter.toml`` (3
shards x 2 replicas, on free ports); the answers are compared with the same
word count computed here in Python over ``examples/node/data``. The
conformance kit runs against a Node leaf and the Node merge. Needs Node.js
and ``npm ci --prefix examples/node``: without them the tests fail and say
so, they are not skipped.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import signal
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from grpc_tools import protoc

from protos.scatter_gather.v1 import leaf_pb2, leaf_pb2_grpc, root_pb2, shard_pb2
from scatter.conformance import KitOptions, Status, check_leaf, check_merge, failed, load_sample
from scatter.runtime import Deployment, parse_deployment
from tests._cluster import Client
from tests._procs import Proc, health_status, start_process, wait_healthy
from tests._tls import creds, make_ca, make_cert

NODE_DIR = Path(__file__).resolve().parents[2] / "examples" / "node"
DATA = NODE_DIR / "data"
SHARDS = 3


def _require_node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is not installed: the mixed deployment needs `node` (v18 or newer) on PATH")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("examples/node/node_modules is missing: run `npm ci --prefix examples/node` first")
    return node


@pytest.fixture(scope="module")
def wordcount(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The Python module of wordcount.proto, generated for this test run (it is not under protos/)."""
    out = tmp_path_factory.mktemp("wordcount_pb2")
    proto = NODE_DIR / "proto" / "wordcount" / "v1" / "wordcount.proto"
    code = protoc.main(["protoc", f"-I{NODE_DIR / 'proto'}", f"--python_out={out}", str(proto)])
    assert code == 0, "protoc failed on examples/node/proto/wordcount/v1/wordcount.proto"
    spec = importlib.util.spec_from_file_location("wordcount_pb2", out / "wordcount" / "v1" / "wordcount_pb2.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    _require_node()
    with open(NODE_DIR / "scatter.toml", "rb") as f:
        document: dict[str, Any] = tomllib.load(f)
    document["root"]["listen"] = "127.0.0.1:0"  # never collide with a running `scatter up`
    document["root"]["default_deadline_ms"] = 3000  # a busy 2-core CI machine
    with Deployment(parse_deployment(document, NODE_DIR)) as dep:
        yield dep


@pytest.fixture(scope="module")
def client(deployment: Deployment) -> Iterator[Client]:
    c = Client(deployment.root_address)
    yield c
    c.close()


# -- the same word count in Python ------------------------------------------


def _shard_of(name: str) -> int:
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "big") % SHARDS


def _expected(shards: set[int], prefix: str = "", min_length: int = 0) -> tuple[Counter[str], int]:
    counts: Counter[str] = Counter()
    files = 0
    for path in sorted(DATA.glob("*.txt")):
        if _shard_of(path.name) in shards:
            files += 1
            words = re.findall(r"[a-z]+", path.read_text().lower())
            counts.update(w for w in words if w.startswith(prefix) and len(w) >= min_length)
    return counts, files


def _top(counts: Counter[str], k: int) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:k]


def _ask(
    client: Client, wordcount: ModuleType, min_coverage: float | None = None, **fields: Any
) -> tuple[root_pb2.QueryResponse, Any]:
    response = client.query(wordcount.WordCountRequest(**fields), timeout=10.0, min_coverage=min_coverage)
    answer = wordcount.WordCountResponse()
    assert response.payload.Unpack(answer), response.payload.type_url
    return response, answer


def _check_answer(answer: Any, shards: set[int], top_k: int, prefix: str = "", min_length: int = 0) -> None:
    counts, files = _expected(shards, prefix, min_length)
    assert [(w.word, w.count) for w in answer.top] == _top(counts, top_k)
    assert answer.total_words == sum(counts.values())
    assert answer.files == files
    assert list(answer.shard_indices) == sorted(shards)


# -- tests -------------------------------------------------------------------


def test_word_counts_match_a_python_count(client: Client, wordcount: ModuleType) -> None:
    response, answer = _ask(client, wordcount, top_k=15)
    _check_answer(answer, {0, 1, 2}, 15)
    assert answer.files == len(list(DATA.glob("*.txt"))) == 12
    assert (response.coverage.total, response.coverage.answered) == (SHARDS, SHARDS)
    assert [r.status for r in response.shards] == [shard_pb2.SHARD_STATUS_OK] * SHARDS

    _, filtered = _ask(client, wordcount, top_k=5, prefix="th", min_length=4)
    _check_answer(filtered, {0, 1, 2}, 5, prefix="th", min_length=4)
    _, default_k = _ask(client, wordcount)
    assert len(default_k.top) == 10  # top_k 0 means 10


def test_failover_and_partial_coverage(deployment: Deployment, client: Client, wordcount: ModuleType) -> None:
    deployment.kill("leaf-0-0")  # SIGKILL; held down until revive
    try:
        survivor = deployment.children["leaf-0-1"].address
        for _ in range(5):
            response, answer = _ask(client, wordcount, top_k=10)
            _check_answer(answer, {0, 1, 2}, 10)
            assert response.shards[0].status == shard_pb2.SHARD_STATUS_OK
            assert response.shards[0].replica == survivor
    finally:
        deployment.revive("leaf-0-0")

    deployment.kill("leaf-1-0")
    deployment.kill("leaf-1-1")
    try:
        with pytest.raises(grpc.RpcError) as info:
            _ask(client, wordcount, top_k=10)  # min_coverage 1.0 in scatter.toml
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        response, answer = _ask(client, wordcount, min_coverage=0.5, top_k=10)
        _check_answer(answer, {0, 2}, 10)  # the Node merge left the missing shard out
        assert (response.coverage.total, response.coverage.answered) == (SHARDS, 2)
        assert [m.shard_index for m in response.coverage.missing] == [1]
    finally:
        deployment.revive("leaf-1-0")
        deployment.revive("leaf-1-1")
    _, answer = _ask(client, wordcount, top_k=10)
    _check_answer(answer, {0, 1, 2}, 10)


# Generous per-call bounds: other engineers' benchmarks share these two cores.
KIT_OPTIONS = KitOptions(timeout=10.0, connect_timeout=10.0, deadline_bound=2.0, release_bound=2.0)


def test_conformance_kit_passes_against_the_node_leaf_and_merge(deployment: Deployment) -> None:
    # Types resolve through the Node servers' reflection: the kit has no wordcount code of its own.
    sample = load_sample(NODE_DIR / "conformance-sample.json")
    leaf = check_leaf(
        deployment.children["leaf-2-1"].address, sample, shard_index=2, shard_count=SHARDS, options=KIT_OPTIONS
    )
    assert failed(leaf) == [], "\n".join(f"{r.name}: {r.detail}" for r in leaf)
    # The sample has no slow_request (a word count has no slow mode): the release checks say they cannot run.
    # One shard per process: ExecuteShards is optional, and this leaf does not implement it.
    release = {"cancel-released", "deadline-released"}
    assert {r.status for r in leaf if r.name in {*release, "execute-shards"}} == {Status.SKIP}
    assert {r.status for r in leaf if r.name not in {*release, "execute-shards"}} == {Status.PASS}
    merge = check_merge(deployment.children["merge"].address, sample, options=KIT_OPTIONS)
    assert failed(merge) == [], "\n".join(f"{r.name}: {r.detail}" for r in merge)
    assert {r.status for r in merge if r.name in release} == {Status.SKIP}
    assert {r.status for r in merge if r.name not in release} == {Status.PASS}
    # @grpc/reflection serves v1 and v1alpha; the kit asks v1 first (Python's servers answer v1alpha only).
    assert [r.detail for r in merge if r.name == "reflection"] == ["grpc.reflection.v1 lists scatter_gather.v1.Merge"]


@pytest.fixture
def slow_leaf() -> Iterator[Proc]:
    node = _require_node()
    env = {
        "SCATTER_PORT": "0",
        "SCATTER_SHARD_INDEX": "0",
        "SCATTER_SHARD_COUNT": "1",
        "WORDCOUNT_START_DELAY_MS": "1500",
    }
    proc = start_process([node, "leaf.js"], env, cwd=NODE_DIR)
    yield proc
    proc.stop()


def test_node_leaf_lifecycle_not_serving_until_loaded_then_drains(slow_leaf: Proc, wordcount: ModuleType) -> None:
    address = slow_leaf.address
    assert health_status(address) == "NOT_SERVING"
    request = leaf_pb2.ExecuteRequest(shard_index=0, shard_count=1)
    request.payload.Pack(wordcount.WordCountRequest(top_k=3))
    with grpc.insecure_channel(address) as channel:
        stub = leaf_pb2_grpc.LeafStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Execute(request, timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        wait_healthy(address, timeout=30)
        assert health_status(address, "scatter_gather.v1.Leaf") == "SERVING"
        partial = wordcount.WordCountPartial()
        assert stub.Execute(request, timeout=5).payload.Unpack(partial)
        counts, files = _expected({0, 1, 2})  # one shard holds every file
        assert partial.files == files and {c.word: c.count for c in partial.counts} == dict(counts)

    start = time.monotonic()
    slow_leaf.send_signal(signal.SIGTERM)
    assert slow_leaf.wait(timeout=15) == 0
    assert time.monotonic() - start < 10
    assert "draining on SIGTERM" in slow_leaf.output()


def test_node_processes_serve_mutual_tls(tmp_path: Path, wordcount: ModuleType) -> None:
    """The runtime's [tls] reaches the Node leaves and merge through SCATTER_TLS_*; strangers are refused."""
    from protos.scatter_gather.v1 import root_pb2_grpc

    _require_node()
    make_ca(tmp_path, "ca")
    make_cert(tmp_path, "ca", "node")
    make_cert(tmp_path, "ca", "client")
    with open(NODE_DIR / "scatter.toml", "rb") as f:
        document: dict[str, Any] = tomllib.load(f)
    document["root"]["listen"] = "127.0.0.1:0"
    document["root"]["default_deadline_ms"] = 3000
    document["tls"] = {
        "cert_file": str(tmp_path / "node.pem"),
        "key_file": str(tmp_path / "node.key"),
        "ca_file": str(tmp_path / "ca.pem"),
        "mutual": True,
    }
    request = root_pb2.QueryRequest()
    request.payload.Pack(wordcount.WordCountRequest(top_k=3))
    with Deployment(parse_deployment(document, NODE_DIR)) as dep:
        with grpc.secure_channel(dep.root_address, creds(tmp_path, client="client")) as channel:
            response = root_pb2_grpc.RootStub(channel).Query(request, timeout=10)
        assert response.coverage.answered == SHARDS
        leaf = dep.children["leaf-0-0"].address
        # A client without a certificate is refused by the Node leaf itself.
        with grpc.secure_channel(leaf, creds(tmp_path)) as channel, pytest.raises(grpc.RpcError) as info:
            leaf_pb2_grpc.LeafStub(channel).Execute(leaf_pb2.ExecuteRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
