"""Types without Python codegen: ``scatter query`` and the conformance kit for an application that has none.

The stock application (``tests/fixtures/stock_app.py``) builds its message
types at start from ``tests/fixtures/proto/stock/v1/*.proto``; no generated
module exists for them, so the tools can learn them only as a team with
only ``.proto`` files and a leaf binary would have them: from those files
(``--proto``, ``--proto-path``) or from the leaf's or merge's server
reflection (``--types-from``; the kit's default is the server it checks).
It runs through the real runtime (2 shards, a real root), started once for
the module. Every unusable source ends with exit status 2 and one message
that says what to fix: an unknown type, a ``.proto`` that does not compile
(protoc's message), a missing import folder, a server without reflection.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

from scatter.conformance.cli import main as conformance
from scatter.query import main as query
from scatter.runtime import Deployment, load_deployment
from scatter_common.message_types import MessageTypes, Reflection, TypeSources, compile_protos
from tests._procs import FIXTURES, PYTHON, REPO, Proc, child_env, start_process

PROTO_DIR = FIXTURES / "proto"
STOCK_PROTO = PROTO_DIR / "stock" / "v1" / "stock.proto"
PROTO_FLAGS = ["--proto", str(STOCK_PROTO), "--proto-path", str(PROTO_DIR)]
SAMPLE = str(FIXTURES / "stock_sample.json")
REQUEST = ["--type", "stock.v1.StockRequest", '{"skuPrefix": "sku-1"}']
# What the merge answers for the prefix "sku-1": shard 1's three items (shard 0's are sku-0-*).
ANSWER = {
    "@type": "type.googleapis.com/stock.v1.StockResponse",
    "items": [{"sku": "sku-1-0", "count": "10"}, {"sku": "sku-1-1", "count": "11"}, {"sku": "sku-1-2", "count": "12"}],
    "total": "33",
    "shardIndices": [0, 1],
    "asOf": "2024-01-01T00:00:00Z",
}


@pytest.fixture(scope="module")
def stock() -> Iterator[Deployment]:
    with Deployment(load_deployment(FIXTURES / "stock.toml")) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def no_reflection() -> Iterator[Proc]:
    """A leaf that serves no reflection (busy_server.py, conforming otherwise)."""
    proc = start_process([PYTHON, str(FIXTURES / "busy_server.py"), "--mode", "honour"])
    yield proc
    proc.stop()


def run(
    capsys: pytest.CaptureFixture[str], command: Callable[[list[str]], int], argv: list[str]
) -> tuple[int, str, str]:
    """Run a tool's ``main`` in this process: its exit status, stdout and stderr."""
    code = command(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_types_exist_nowhere_on_the_python_path() -> None:
    assert importlib.util.find_spec("stock") is None
    assert MessageTypes().find("stock.v1.StockRequest") is None


@pytest.mark.parametrize("source", ["proto", "merge", "leaf", "root-config"])
def test_query_through_the_root(
    stock: Deployment, capsys: pytest.CaptureFixture[str], source: str, tmp_path: Path
) -> None:
    flags = {
        "proto": PROTO_FLAGS,
        "merge": ["--types-from", stock.children["merge"].address],
        "leaf": ["--types-from", stock.children["leaf-1-0"].address],  # one file holds every type
        "root-config": ["--types-from", str(stock.run_dir / "root.toml")],  # the merge the root names
    }[source]
    code, out, err = run(capsys, query, [stock.root_address, *REQUEST, *flags, "--deadline-ms", "10000"])
    assert code == 0, err
    answer = json.loads(out)
    assert answer["payload"] == ANSWER
    assert answer["coverage"] == {"total": 2, "answered": 2}


def test_proto_files_beat_a_server_without_reflection(
    stock: Deployment, no_reflection: Proc, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [stock.root_address, *REQUEST, *PROTO_FLAGS, "--types-from", no_reflection.address]
    code, out, err = run(capsys, query, argv)
    assert code == 0, err
    assert json.loads(out)["payload"] == ANSWER


def test_a_server_without_reflection_is_one_message_and_status_2(no_reflection: Proc) -> None:
    argv = ["query", "127.0.0.1:1", *REQUEST, "--types-from", no_reflection.address]
    done = subprocess.run(
        [sys.executable, "-m", "scatter.cli", *argv], env=child_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert f"reflection of {no_reflection.address} (it serves no server reflection" in done.stderr
    assert "--proto FILE" in done.stderr


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--type", "stock.v1.Nope", "{}", *PROTO_FLAGS], "unknown message type 'stock.v1.Nope': not in"),
        (["--type", "stock.v1.StockRequest", "{}"], "--proto FILE, with --proto-path DIR"),
        (["--type", "stock.v1.StockRequest", "{}", "--proto", str(STOCK_PROTO)], 'Import "stock/v1/item.proto"'),
        (["--type", "x.X", "{}", "--proto", "no/such.proto"], "no such .proto file: 'no/such.proto'"),
        (["--type", "stock.v1.StockRequest", '{"nope": 1}', *PROTO_FLAGS], "the JSON is not a valid"),
        (
            ["--type", "stock.v1.StockRequest", "{}", "--types-from", "127.0.0.1:1", "--deadline-ms", "500"],
            "reflection of 127.0.0.1:1 (its reflection failed with UNAVAILABLE",
        ),
        (["--type", "stock.v1.StockRequest", "{}", "--types-from", "no-such-root.toml"], "not a usable root config"),
    ],
)
def test_unusable_sources_say_what_to_fix(capsys: pytest.CaptureFixture[str], flags: list[str], says: str) -> None:
    code, out, err = run(capsys, query, ["127.0.0.1:1", *flags])
    assert (code, out) == (2, "")
    assert err.startswith("scatter query: ") and says in err, err


def test_a_proto_that_does_not_compile_shows_protoc(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.proto"
    bad.write_text('syntax = "proto3";\npackage bad.v1;\nmessage Bad { int32 a = 1 }\n')
    code, _, err = run(capsys, query, ["127.0.0.1:1", "--type", "bad.v1.Bad", "{}", "--proto", str(bad)])
    assert code == 2
    assert "the .proto files do not compile" in err and 'bad.proto:3:27: Expected ";".' in err, err


@pytest.mark.parametrize("role", ["leaf", "merge"])
@pytest.mark.parametrize("source", ["reflection", "proto"])
def test_the_kit_checks_the_application(
    stock: Deployment, no_reflection: Proc, capsys: pytest.CaptureFixture[str], role: str, source: str
) -> None:
    address = stock.children["leaf-0-0" if role == "leaf" else "merge"].address
    # With --proto, reflection is asked of a server that has none: the types can come from the files only.
    flags = [*PROTO_FLAGS, "--types-from", no_reflection.address] if source == "proto" else []
    code, out, err = run(capsys, conformance, [role, address, "--sample", SAMPLE, *flags, "--json"])
    assert code == 0, out + err
    report = json.loads(out)
    statuses = {check["name"]: check["status"] for check in report["checks"]}
    assert report["passed"] and statuses["valid-request"] == "PASS", statuses
    assert "FAIL" not in statuses.values(), statuses


def test_the_kit_without_a_source_for_its_types(
    no_reflection: Proc, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, conformance, ["leaf", no_reflection.address, "--sample", SAMPLE])
    assert (code, out) == (2, "")
    assert "unknown message type 'stock.v1.StockRequest'" in err and "it serves no server reflection" in err, err


def test_reflection_v1alpha_when_v1_is_missing(stock: Deployment) -> None:
    """Python's reflection serves v1alpha only: the client falls back to it, and says so."""
    with grpc.insecure_channel(stock.children["merge"].address) as channel:
        client = Reflection(channel, timeout=5.0)
        assert "scatter_gather.v1.Merge" in client.services()
        assert client.version == "grpc.reflection.v1alpha"


@pytest.fixture
def v1_only_reflection() -> Iterator[str]:
    """A server with reflection v1 only, of the stock types, that leaves out every imported file.

    grpcio-reflection's servicer over a pool of the compiled stock files, registered under v1's
    name; its answers keep only the file asked for, as a server may (the client fetches the rest).
    """
    pool = descriptor_pool.DescriptorPool()
    for file in compile_protos([str(STOCK_PROTO)], [str(PROTO_DIR)]).file:
        pool.Add(file)
    servicer = reflection.ReflectionServicer(["grpc.reflection.v1.ServerReflection"], pool=pool)

    def without_imports(requests: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        for response in servicer.ServerReflectionInfo(requests, context):
            if response.HasField("file_descriptor_response"):  # (touching it would clear the oneof's other fields)
                del response.file_descriptor_response.file_descriptor_proto[1:]
            yield response

    handler = grpc.stream_stream_rpc_method_handler(
        without_imports,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("grpc.reflection.v1.ServerReflection", {"ServerReflectionInfo": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def test_reflection_v1_and_imports_fetched_by_name(v1_only_reflection: str) -> None:
    with grpc.insecure_channel(v1_only_reflection) as channel:
        client = Reflection(channel, timeout=5.0)
        assert client.services() == ["grpc.reflection.v1.ServerReflection"]
        assert client.version == "grpc.reflection.v1"
        assert [f.name for f in client.files_for("stock.v1.StockResponse")] == ["stock/v1/stock.proto"]
    with MessageTypes(TypeSources(reflection=v1_only_reflection)) as types:
        response = types.find("stock.v1.StockResponse")  # stock.proto imports item.proto and timestamp.proto
        assert response is not None
        assert response.DESCRIPTOR.fields_by_name["items"].message_type.full_name == "stock.v1.Item"
        assert types.find("stock.v1.Item") is not None


def test_the_fixture_types_are_not_generated() -> None:
    """No generated code of the stock application: with it, the tests above would prove nothing."""
    assert not (REPO / "protos" / "stock").exists() and not list(PROTO_DIR.glob("**/*.py"))
