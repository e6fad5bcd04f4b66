"""The C++ probe leaf and merge (examples/cpp/) on Debian's grpc++: built, checked, deployed.

The example is built once per test session with CMake into
``examples/cpp/build`` (ignored by git; an up-to-date build is a no-op, a
cold one takes about a minute on 2 cores). The conformance kit runs against
the C++ leaf and merge, and two mixed deployments through the real runtime
and the unchanged Python root answer queries end to end: C++ leaves with the
Python probe merge (hedging, cancellation of the loser, deadlines, partial
coverage) and Python leaves with the C++ merge. Without the compiler or the
packages the tests are skipped and say what to install, except under
``CI`` (set by ``.ci/run``, which installs them): there they fail.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import os
import shutil
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import wrappers_pb2

from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import leaf_pb2, leaf_pb2_grpc, root_pb2, root_pb2_grpc, shard_pb2
from scatter.conformance import KitOptions, Status, check_leaf, check_merge, failed, load_sample
from scatter.runtime import Deployment, parse_deployment
from tests._cluster import PROBE_DIR, Client, ms
from tests._procs import REPO, Proc, health_status, start_healthy, start_process, wait_healthy
from tests._tls import creds, make_ca, make_cert

CPP_DIR = REPO / "examples" / "cpp"
BUILD_DIR = CPP_DIR / "build"
SAMPLE = PROBE_DIR / "conformance-sample.json"
PACKAGES = "libgrpc++-dev protobuf-compiler-grpc cmake g++ pkg-config"
# A cold build is about 80 s on a quiet 2-core machine; room for a busy one.
BUILD_TIMEOUT = 300.0
SHARDS = 3
FULL_SUM = sum(i + 1 for i in range(SHARDS))

# The first test of the module also waits for the build.
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + 120)


def _missing() -> list[str]:
    missing = [tool for tool in ("cmake", "c++", "pkg-config", "protoc", "grpc_cpp_plugin") if not shutil.which(tool)]
    if "pkg-config" not in missing:
        found = subprocess.run(["pkg-config", "--exists", "grpc++", "protobuf"], check=False)
        if found.returncode != 0:
            missing.append("grpc++ for pkg-config")
    return missing


@pytest.fixture(scope="session")
def cpp_build() -> Path:
    """The build folder with ``probe_leaf`` and ``probe_merge``, built (or brought up to date) now."""
    missing = _missing()
    if missing:
        reason = f"the C++ example needs {', '.join(missing)}: apt-get install -y {PACKAGES} (Debian 12)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run these tests (.ci/run installs the packages)")
        pytest.skip(reason)
    BUILD_DIR.mkdir(exist_ok=True)
    commands = [["cmake", "--build", str(BUILD_DIR), "-j2"]]  # re-runs CMake itself when CMakeLists.txt changed
    if not (BUILD_DIR / "CMakeCache.txt").is_file():
        commands.insert(0, ["cmake", "-S", str(CPP_DIR), "-B", str(BUILD_DIR), "-DCMAKE_BUILD_TYPE=Release"])
    with open(BUILD_DIR / ".build-lock", "w") as lock:  # one build at a time in this folder
        fcntl.flock(lock, fcntl.LOCK_EX)
        for command in commands:
            done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
            if done.returncode != 0:
                pytest.fail(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-6000:]}\n{done.stderr}")
    return BUILD_DIR


@pytest.fixture(scope="module")
def leaf(cpp_build: Path) -> Iterator[Proc]:
    """A C++ leaf serving shard 1 of 3 (the kit must learn that)."""
    env = {"SCATTER_PORT": "0", "SCATTER_SHARD_INDEX": "1", "SCATTER_SHARD_COUNT": str(SHARDS)}
    proc = start_healthy([str(cpp_build / "probe_leaf")], env)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def merge(cpp_build: Path) -> Iterator[Proc]:
    proc = start_healthy([str(cpp_build / "probe_merge")], {"SCATTER_PORT": "0"})
    yield proc
    proc.stop()


# Generous per-call bounds: other engineers' benchmarks share these two cores.
KIT_OPTIONS = KitOptions(timeout=10.0, connect_timeout=10.0, deadline_bound=2.0, release_bound=2.0)


def test_conformance_kit_passes_every_check_against_the_cpp_leaf(leaf: Proc) -> None:
    # The sample has a slow_request (ten seconds of work): the release checks run and see the
    # 64-slot limit fill up, so a leaf that kept working after cancellation or its deadline fails them.
    results = check_leaf(leaf.address, load_sample(SAMPLE), options=KIT_OPTIONS)
    assert failed(results) == [], "\n".join(f"{r.name}: {r.detail}" for r in results)
    # One shard per process: ExecuteShards is optional, and this leaf does not implement it.
    assert {r.name: r.status for r in results if r.status != Status.PASS} == {"execute-shards": Status.SKIP}
    wrong_shard = next(r for r in results if r.name == "wrong-shard")
    assert "this leaf serves 1, learned from the leaf" in wrong_shard.detail


def test_conformance_kit_passes_against_the_cpp_merge(merge: Proc) -> None:
    results = check_merge(merge.address, load_sample(SAMPLE), options=KIT_OPTIONS)
    assert failed(results) == [], "\n".join(f"{r.name}: {r.detail}" for r in results)
    # The probe sample has no slow_merge_request (the probe merge is instant): the release checks say so.
    release = {"cancel-released", "deadline-released"}
    assert {r.status for r in results if r.name in release} == {Status.SKIP}
    assert {r.status for r in results if r.name not in release} == {Status.PASS}


def _execute(address: str, request: probe_pb2.ProbeRequest, timeout: float) -> grpc.Future[leaf_pb2.ExecuteResponse]:
    call = leaf_pb2.ExecuteRequest(shard_index=0, shard_count=1)
    call.payload.Pack(request)
    channel = grpc.insecure_channel(address)
    future = leaf_pb2_grpc.LeafStub(channel).Execute.future(call, timeout=timeout)
    future.add_done_callback(lambda _: channel.close())
    return future


def test_cpp_leaf_lifecycle_limit_and_drain(cpp_build: Path, tmp_path: Path) -> None:
    """NOT_SERVING while loading (UNAVAILABLE to calls), a limit that refuses at once and frees on
    cancellation, SIGTERM: NOT_SERVING, in-flight calls finish, exit 0."""
    env = {"SCATTER_PORT": "0", "SCATTER_MAX_CONCURRENCY": "2", "SCATTER_GRACE_SECONDS": "5"}
    proc = start_process([str(cpp_build / "probe_leaf"), "--start-delay-ms", "1500"], env)
    try:
        address = proc.address
        assert health_status(address) == "NOT_SERVING"
        assert health_status(address, "scatter_gather.v1.Leaf") == "NOT_SERVING"
        with pytest.raises(grpc.RpcError) as info:
            _execute(address, probe_pb2.ProbeRequest(), timeout=5).result()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        wait_healthy(address, timeout=30)
        assert health_status(address, "scatter_gather.v1.Leaf") == "SERVING"

        slow = [_execute(address, probe_pb2.ProbeRequest(delay=ms(10_000), marker_dir=str(tmp_path)), 20) for _ in "ab"]
        time.sleep(0.3)  # both received and holding their slots
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            _execute(address, probe_pb2.ProbeRequest(), timeout=5).result()
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "concurrency limit (2 calls in flight)" in (info.value.details() or "")
        assert time.monotonic() - start < 1.0, "refused at once, not queued"
        for future in slow:
            future.cancel()
        # The cancelled calls stop their work and give their slots back within a few ms.
        deadline = time.monotonic() + 2.0
        while True:
            try:
                _execute(address, probe_pb2.ProbeRequest(value=1), timeout=5).result()
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline, "cancelled calls did not release their slots"
                time.sleep(0.02)

        in_flight = _execute(address, probe_pb2.ProbeRequest(delay=ms(800), value=7), timeout=10)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)  # inside the 0.5 s drain delay: still listening, NOT_SERVING
        assert health_status(address) == "NOT_SERVING"
        partial = probe_pb2.ProbePartial()
        assert in_flight.result(timeout=10).payload.Unpack(partial)
        assert partial.value == 8  # shard 0: 0 + 1 + 7, finished within the grace period
        assert proc.wait(timeout=15) == 0
        assert "draining on SIGTERM" in proc.output()
        assert list(tmp_path.iterdir()) == []  # the cancelled calls never finished their ten seconds
    finally:
        proc.stop()


def test_a_body_that_does_not_parse_is_invalid_argument(leaf: Proc, merge: Proc) -> None:
    """Not grpc++'s INTERNAL: the example takes the body as bytes and parses it itself."""
    for address, method, expected in [
        (leaf.address, "/scatter_gather.v1.Leaf/Execute", "scatter_gather.v1.ExecuteRequest"),
        (merge.address, "/scatter_gather.v1.Merge/Merge", "scatter_gather.v1.MergeRequest"),
    ]:
        with grpc.insecure_channel(address) as channel:
            call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)  # bytes in and out
            with pytest.raises(grpc.RpcError) as info:
                call(b"\x0f\xff\xff\xff", timeout=5)  # field 1 with wire type 7, which does not exist
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert expected in (info.value.details() or "")


def test_cpp_leaf_refuses_bad_flags_with_a_message(cpp_build: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCATTER_")}
    for argv, env_extra, expected in [
        (["--shard-index", "3", "--shard-count", "3"], {}, "shard index 3 is out of range for shard count 3"),
        ([], {"SCATTER_PORT": "http"}, "environment variable SCATTER_PORT='http': not an integer"),
        (["--colour", "red"], {}, "unknown flag --colour"),
    ]:
        done = subprocess.run(
            [str(cpp_build / "probe_leaf"), *argv],
            env={**env, **env_extra},
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr


# -- mixed deployments through the real runtime and root ------------------------


def _document(
    leaves: list[str], merge: list[str], replicas: int = 2, sections: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "root": {"listen": "127.0.0.1:0", "default_deadline_ms": 3000, "merge_reserve_ms": 50},
        "merge": {"command": merge},
        "leaves": {"command": leaves, "shards": SHARDS, "replicas": replicas},
        "runtime": {"ready_timeout_ms": 30_000},
        **(sections or {}),
    }


@pytest.fixture(scope="module")
def cpp_leaves(cpp_build: Path) -> Iterator[Deployment]:
    """3 shards x 2 C++ leaves, the Python probe merge, the Python root; a fixed hedge delay."""
    hedging = {"hedging_delay_ms": 20, "max_extra_load": 0.5, "min_per_second": 100.0}
    document = _document(
        [str(cpp_build / "probe_leaf")],
        ["{python}", "merge.py"],  # run in examples/probe
        # Ejection off: these tests choose which replica misbehaves.
        sections={"hedging": hedging, "replicas": {"consecutive_failures": 0}},
    )
    with Deployment(parse_deployment(document, PROBE_DIR)) as dep:
        yield dep


@pytest.fixture
def client(cpp_leaves: Deployment) -> Iterator[Client]:
    c = Client(cpp_leaves.root_address)
    yield c
    c.close()


def test_cpp_leaves_with_the_python_merge_answer_through_the_root(client: Client) -> None:
    response, merged, _ = client.probe(value=10)
    assert merged.sum == FULL_SUM + SHARDS * 10
    assert list(merged.shard_indices) == [0, 1, 2]
    assert 0 < merged.max_remaining_ms <= 5000  # the leaves saw the deadline: the client's 5 s, less the reserve
    assert (response.coverage.total, response.coverage.answered) == (SHARDS, SHARDS)
    assert [r.status for r in response.shards] == [shard_pb2.SHARD_STATUS_OK] * SHARDS

    # A failing shard: INTERNAL from the C++ leaf, the shard is ERROR; with partial results allowed
    # the Python merge skips it.
    response, merged, _ = client.probe(fail_shards=[1], min_coverage=0.5)
    assert merged.sum == 1 + 3 and list(merged.shard_indices) == [0, 2]
    assert response.shards[1].status == shard_pb2.SHARD_STATUS_ERROR
    assert response.shards[1].error

    # A payload of the wrong type: the C++ leaves' INVALID_ARGUMENT reaches the client.
    with pytest.raises(grpc.RpcError) as info:
        client.query(wrappers_pb2.StringValue(value="x"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "probe.v1.ProbeRequest" in (info.value.details() or "")


def test_a_slow_cpp_replica_is_hedged_and_the_loser_stops(client: Client, tmp_path: Path) -> None:
    slow = {"shard0-replica0": ms(400)}

    def ask(value: int) -> tuple[bool, float]:
        response, merged, elapsed = client.probe(value=value, replica_delays=slow, marker_dir=str(tmp_path))
        assert merged.sum == FULL_SUM + SHARDS * value
        return response.shards[0].hedge_won, elapsed

    # Four at a time: least-outstanding choice then sends some first attempts to the slow replica.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, range(1, 13)))
    assert any(hedge_won for hedge_won, _ in answers), answers
    assert max(elapsed for _, elapsed in answers) < 0.35, "a hedge answers long before the slow replica"
    time.sleep(0.6)  # longer than the slow replica's 400 ms: a loser that kept working would be done now
    finished = {p.name for p in tmp_path.iterdir()}
    assert not [name for name in finished if name.endswith("-0-shard0-replica0.done")], finished
    # Every winner did finish (hedges of other shards on a busy machine may have finished too).
    winners = {(str(value), str(shard)) for value in range(1, 13) for shard in range(SHARDS)}
    assert {tuple(name.split("-")[:2]) for name in finished} == winners


def test_cpp_leaves_stop_at_the_deadline(client: Client, tmp_path: Path) -> None:
    start = time.monotonic()
    response, merged, _ = client.probe(
        timeout=0.4, min_coverage=0.5, shard_delays={2: ms(900)}, marker_dir=str(tmp_path)
    )
    assert time.monotonic() - start < 0.9, "the root answered at the deadline, not after shard 2's delay"
    assert response.shards[2].status == shard_pb2.SHARD_STATUS_TIMEOUT
    assert merged.sum == 1 + 2 and list(merged.shard_indices) == [0, 1]
    time.sleep(max(0.0, start + 1.3 - time.monotonic()))  # a leaf that kept working would be done now
    assert not [p.name for p in tmp_path.iterdir() if "-2-" in p.name]
    _, merged, _ = client.probe()  # and the deployment serves on
    assert merged.sum == FULL_SUM


def test_python_leaves_with_the_cpp_merge(cpp_build: Path) -> None:
    document = _document(["{python}", "leaf.py"], [str(cpp_build / "probe_merge")], replicas=1)
    with Deployment(parse_deployment(document, PROBE_DIR)) as dep:
        client = Client(dep.root_address)
        try:
            _, merged, _ = client.probe(value=5)
            assert merged.sum == FULL_SUM + SHARDS * 5 and list(merged.shard_indices) == [0, 1, 2]
            _, merged, _ = client.probe(fail_shards=[0], min_coverage=0.5)
            assert merged.sum == 2 + 3 and list(merged.shard_indices) == [1, 2]
            with pytest.raises(grpc.RpcError) as info:  # every answer fits a uint64, their sum does not
                client.probe(value=2**63)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with concurrent.futures.ThreadPoolExecutor(8) as pool:  # calls at once through the C++ merge
                sums = list(pool.map(lambda v: client.probe(value=v)[1].sum, range(16)))
            assert sums == [FULL_SUM + SHARDS * v for v in range(16)]
        finally:
            client.close()


def test_the_example_deployment_file_serves(cpp_build: Path) -> None:
    """examples/cpp/scatter.toml as the README runs it: C++ leaves and merge, the Python root."""
    with open(CPP_DIR / "scatter.toml", "rb") as f:
        document: dict[str, Any] = tomllib.load(f)
    document["root"]["listen"] = "127.0.0.1:0"  # never collide with a running `scatter up`
    document["root"]["default_deadline_ms"] = 3000
    with Deployment(parse_deployment(document, CPP_DIR)) as dep:
        client = Client(dep.root_address)
        try:
            response, merged, _ = client.probe(delay=ms(5), value=10)
            assert merged.sum == 36 and response.coverage.answered == SHARDS  # the README's answer
        finally:
            client.close()


def test_cpp_processes_serve_mutual_tls(cpp_build: Path, tmp_path: Path) -> None:
    """The runtime's [tls] reaches the C++ leaves and merge through SCATTER_TLS_*; strangers are refused."""
    make_ca(tmp_path, "ca")
    make_cert(tmp_path, "ca", "cpp")
    make_cert(tmp_path, "ca", "client")
    tls = {
        "cert_file": str(tmp_path / "cpp.pem"),
        "key_file": str(tmp_path / "cpp.key"),
        "ca_file": str(tmp_path / "ca.pem"),
        "mutual": True,
    }
    document = _document(
        [str(cpp_build / "probe_leaf")], [str(cpp_build / "probe_merge")], replicas=1, sections={"tls": tls}
    )
    request = root_pb2.QueryRequest()
    request.payload.Pack(probe_pb2.ProbeRequest(value=1))
    with Deployment(parse_deployment(document, CPP_DIR)) as dep:
        with grpc.secure_channel(dep.root_address, creds(tmp_path, client="client")) as channel:
            stub = root_pb2_grpc.RootStub(channel)
            # The root's TLS channels to the leaves may still be handshaking on a busy machine: retry briefly.
            deadline = time.monotonic() + 10
            while True:
                try:
                    response = stub.Query(request, timeout=10)
                    break
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        merged = probe_pb2.ProbeResponse()
        assert response.payload.Unpack(merged) and merged.sum == FULL_SUM + SHARDS
        # A client without a certificate is refused by the C++ leaf itself.
        leaf = dep.children["leaf-0-0"].address
        with grpc.secure_channel(leaf, creds(tmp_path)) as channel, pytest.raises(grpc.RpcError) as info:
            leaf_pb2_grpc.LeafStub(channel).Execute(leaf_pb2.ExecuteRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
