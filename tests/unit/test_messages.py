"""Type names on the command line resolve to their own package's generated code, and to nothing else.

``scatter query --type probe.v1.ProbeRequest`` and the conformance kit's
sample must not import every ``*_pb2`` under ``protos`` (an application's
protos, the demo's included): each scenario runs in a fresh interpreter and
lists the generated modules it ended up importing. The other sources of the
one resolver (``.proto`` files, reflection) are tested on real processes in
``tests/integration/test_types_without_codegen.py``.
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys

import pytest

from protos.scatter_gather.v1 import root_pb2
from scatter.query import _as_json
from scatter_common.message_types import MessageTypes, TypeSources, modules_for
from tests._procs import child_env

PROBE = "protos.probe.v1.probe_pb2"
DEMO = "protos.demo_search.v1.search_pb2"


def generated_modules_after(code: str) -> set[str]:
    """Run ``code`` in a fresh interpreter; the ``protos`` *_pb2 modules it imported."""
    report = "import json, sys; print(json.dumps(sorted(m for m in sys.modules if m.startswith('protos.')"
    report += " and m.endswith('_pb2'))))"
    result = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"], env=child_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_scatter_query_imports_only_the_package_of_its_type() -> None:
    code = (
        "from scatter.query import main\n"
        "assert main(['127.0.0.1:1', '--type', 'probe.v1.ProbeRequest', '{}', '--deadline-ms', '200']) == 1"
    )
    modules = generated_modules_after(code)
    assert PROBE in modules and DEMO not in modules, modules
    assert all(m.startswith(("protos.probe.", "protos.scatter_gather.")) for m in modules), modules


def test_the_kit_resolves_a_sample_type_from_its_package_only() -> None:
    code = (
        "from scatter_common.message_types import MessageTypes, TypeSources\n"
        "resolver = MessageTypes(TypeSources(reflection='127.0.0.1:1'), timeout=0.2)\n"
        "assert resolver.find('probe.v1.ProbePartial') is not None"
    )
    modules = generated_modules_after(code)
    assert PROBE in modules and DEMO not in modules, modules


def test_an_import_flag_still_brings_its_module() -> None:
    code = (
        "from scatter_common.message_types import MessageTypes, TypeSources\n"
        f"types = MessageTypes(TypeSources(imports=('{DEMO}',)))\n"
        "assert types.find('demo_search.v1.SearchRequest') is not None"
    )
    assert DEMO in generated_modules_after(code)


@pytest.mark.parametrize(
    ("name", "modules"),
    [
        ("probe.v1.ProbeRequest", [PROBE]),
        ("probe.v1.ProbeRequest.Nested", [PROBE]),  # a nested name still lives in its package's folder
        ("demo_search.v1.SearchRequest", [DEMO]),
        ("no.such.v1.Message", []),
        ("Bare", []),
        ("..probe.v1.X", []),  # never a path outside protos/
    ],
)
def test_modules_for(name: str, modules: list[str]) -> None:
    assert modules_for(name) == modules


def test_well_known_and_unknown_types() -> None:
    types = MessageTypes()
    assert types.find("google.protobuf.StringValue") is not None
    assert types.find("no.such.v1.Message") is None
    assert types.explain_unknown("no.such.v1.Message").startswith("unknown message type 'no.such.v1.Message'")


def test_an_answer_of_an_unknown_type_is_printed_encoded() -> None:
    response = root_pb2.QueryResponse(request_id="r1")
    response.payload.type_url = "type.example.com/x.v1.Unknown"
    response.payload.value = b"\x08\x01"
    assert _as_json(response, MessageTypes(TypeSources())) == {
        "payload": {"@type": "type.example.com/x.v1.Unknown", "value_base64": "CAE="},
        "requestId": "r1",
    }


def test_names_reflection_did_not_give_are_remembered_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client sending ever new unknown names cannot grow the resolver's memory of them."""
    import grpc

    from scatter_common import message_types

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(1))  # no reflection: UNIMPLEMENTED, at once
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setattr(message_types, "_MAX_NOT_REFLECTED", 8)
    try:
        with MessageTypes(TypeSources(reflection=f"127.0.0.1:{port}"), timeout=2.0) as types:
            for i in range(30):
                assert types.find(f"no.such.v1.Message{i}") is None
                assert len(types._not_reflected) <= 8
            assert "UNIMPLEMENTED" in types.explain_unknown("no.such.v1.Message29")
    finally:
        server.stop(None)
