"""``scatter export``: the manifests of any deployment file, checked offline.

For the demo (``deploy/demo.toml``, whose export is the committed
``deploy/k8s/``) and the probe application (``examples/probe/scatter.toml``,
no ``[deploy]`` table, the image from a flag): every Kubernetes document
validates against the 1.29 and 1.33 API schemas (kubernetes-validate,
strict), the root's ConfigMap loads with the root's own config loader and
names each shard by its headless Service, one StatefulSet per shard, the
merge a native sidecar on a shared socket, probes, budgets, resources.
The Compose file validates against the compose-spec schema that
check-jsonschema vendors (no Docker CLI plugin here). Bad input goes
through the real command, as a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from root.config import parse_root_config
from root.errors import ConfigError
from scatter.export import Images, Target, build_target, compose_file, kubernetes_manifests, kubernetes_stream
from scatter.export.target import fill, translate
from scatter.runtime import DeploymentSpec, load_deployment, parse_deployment

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "deploy" / "demo.toml"
PROBE = REPO / "examples" / "probe" / "scatter.toml"
K8S = REPO / "deploy" / "k8s"
K8S_VERSIONS = ("1.29.0", "1.33.0")  # the oldest supported (native sidecars) and a recent one
POD_KINDS = ("Deployment", "StatefulSet")
# The one line docs/deploy.md gives to regenerate deploy/k8s/ (run from the repository root).
REGENERATE = "scatter export kubernetes deploy/demo.toml -o deploy/k8s"


def _need(module: str, pip_name: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        pytest.fail(f"{module} is missing: pip install {pip_name} (or pip install -e '.[test]')", pytrace=False)


def _yaml() -> Any:
    return _need("yaml", "PyYAML")


def _target(app: str) -> tuple[DeploymentSpec, Target]:
    if app == "demo":
        spec = load_deployment(DEMO)
        return spec, build_target(spec)
    if app == "grouped":  # the demo with two shards per leaf process: a StatefulSet per process
        text = DEMO.read_text().replace("[leaves]\n", "[leaves]\nshards_per_process = 2\n", 1)
        spec = parse_deployment(tomllib.loads(text), DEMO.parent)
        assert spec.shards_per_process == 2
        return spec, build_target(spec)
    spec = load_deployment(PROBE)
    return spec, build_target(spec, Images(image="probe:test"))


class Manifests:
    """The documents of one export, looked up by kind and name."""

    def __init__(self, files: dict[str, str]) -> None:
        yaml = _yaml()
        self.docs: list[tuple[str, dict[str, Any]]] = []
        for file, text in files.items():
            for doc in yaml.safe_load_all(text):
                if doc is not None:
                    self.docs.append((f"{file}:{doc['kind']}/{doc['metadata']['name']}", doc))

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for _, d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def root_config_text(self) -> str:
        return str(self.one("ConfigMap", "root-config")["data"]["root.toml"])


@pytest.fixture(params=["demo", "probe", "grouped"])
def app(request: pytest.FixtureRequest) -> tuple[DeploymentSpec, Target, Manifests]:
    spec, target = _target(request.param)
    return spec, target, Manifests(kubernetes_manifests(target))


def _pods(m: Manifests) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in POD_KINDS:
        for workload in m.all(kind):
            yield f"{kind}/{workload['metadata']['name']}", workload["spec"]["template"]["spec"]


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in _containers(pod) if c["name"] == name)


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def _flag(args: list[str], flag: str) -> str:
    assert flag in args, f"{flag} missing from {args}"
    return args[args.index(flag) + 1]


# --- the committed demo -------------------------------------------------------------------------------


def test_committed_deploy_k8s_is_the_export_of_the_demo() -> None:
    fresh = kubernetes_manifests(build_target(load_deployment(DEMO)), "deploy/demo.toml", "deploy/k8s")
    committed = {p.name: p.read_text() for p in sorted(K8S.glob("*.yaml"))}
    assert sorted(committed) == sorted(fresh)
    stale = [name for name in fresh if committed[name] != fresh[name]]
    assert not stale, f"deploy/k8s/{stale} differ from the export: run `{REGENERATE}`"


def test_docs_give_the_regenerate_command() -> None:
    assert REGENERATE in (REPO / "docs" / "deploy.md").read_text()


# --- every export -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(
    app: tuple[DeploymentSpec, Target, Manifests], version: str
) -> None:
    kubernetes_validate = _need("kubernetes_validate", "kubernetes-validate")
    problems = []
    for where, doc in app[2].docs:
        try:
            # strict: an unknown field (a typo) is an error, as `kubectl apply` would report it
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_one_statefulset_headless_service_and_budget_per_leaf_process(
    app: tuple[DeploymentSpec, Target, Manifests],
) -> None:
    spec, _, m = app
    kinds = sorted(d["kind"] for _, d in m.docs)
    processes = -(-spec.shards // spec.shards_per_process)
    per_shard = ["Service", "StatefulSet", "PodDisruptionBudget"] * processes
    root = ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"]
    assert kinds == sorted(["Namespace", *per_shard, *root])
    namespace = m.one("Namespace")["metadata"]["name"]
    for where, doc in m.docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, where


def test_root_config_loads_and_finds_each_shard_by_its_headless_service(
    app: tuple[DeploymentSpec, Target, Manifests],
) -> None:
    spec, _, m = app
    namespace = m.one("Namespace")["metadata"]["name"]
    config = parse_root_config(tomllib.loads(m.root_config_text()))
    assert len(config.shards) == spec.shards
    for index, shard in enumerate(config.shards):
        assert not shard.replicas and shard.dns, "a shard is found by DNS, not by listing pods"
        host, port = shard.dns.rsplit(":", 1)
        service_name, ns, *rest = host.split(".")
        assert (ns, rest) == (namespace, ["svc", "cluster", "local"])
        service = m.one("Service", service_name)
        assert service["spec"]["clusterIP"] == "None", "a shard's Service must be headless"
        sts = m.one("StatefulSet", service_name)
        assert sts["spec"]["serviceName"] == service_name
        assert sts["spec"]["replicas"] == spec.replicas
        labels = sts["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]
        assert service["spec"]["selector"].items() <= labels.items()
        leaf = _container(sts["spec"]["template"]["spec"], "leaf")
        (service_port,) = service["spec"]["ports"]
        grpc_port = next(p for p in leaf["ports"] if p["name"] == "grpc")
        assert service_port["port"] == grpc_port["containerPort"] == int(port)
        assert service_port["targetPort"] == "grpc"
        env = _env(leaf)
        # The leaf process of this shard: as `scatter up` starts it (the first shard, and all of them).
        first = index - index % spec.shards_per_process
        last = min(first + spec.shards_per_process, spec.shards) - 1
        assert (env["SCATTER_SHARD_INDEX"], env["SCATTER_SHARD_COUNT"]) == (str(first), str(spec.shards))
        assert env.get("SCATTER_SHARDS") == (f"{first}-{last}" if last > first else None)
        assert service_name == (f"shard-{index}" if last == first else f"shards-{first}-{last}")
        assert env["SCATTER_PORT"] == port and env["SCATTER_HOST"] == "0.0.0.0"
    # No two shards select each other's pods.
    selectors = [tuple(sorted(s["spec"]["selector"].items())) for s in m.all("Service")]
    assert len(set(selectors)) == len(selectors)


def test_root_and_merge_share_a_unix_socket_on_an_emptydir(app: tuple[DeploymentSpec, Target, Manifests]) -> None:
    m = app[2]
    pod = m.one("Deployment", "root")["spec"]["template"]["spec"]
    root, merge = _container(pod, "root"), _container(pod, "merge")
    address = parse_root_config(tomllib.loads(m.root_config_text())).merge_address
    assert address.startswith("unix:/")
    assert _env(merge)["SCATTER_ADDRESS"] == address
    # a native sidecar: starts (and passes its startup probe) before the root, stops after it
    assert merge in pod["initContainers"] and merge["restartPolicy"] == "Always"
    socket_dir = str(Path(address.removeprefix("unix:")).parent)
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    for container in (root, merge):
        assert any(mnt["mountPath"] == socket_dir and mnt["name"] in empty_dirs for mnt in container["volumeMounts"])


def test_root_reads_the_configmap_as_a_directory_it_can_reload(app: tuple[DeploymentSpec, Target, Manifests]) -> None:
    m = app[2]
    deployment = m.one("Deployment", "root")
    pod = deployment["spec"]["template"]["spec"]
    root = _container(pod, "root")
    path = Path(_flag(root["command"], "--config"))
    (volume,) = [v for v in pod["volumes"] if v.get("configMap", {}).get("name") == "root-config"]
    (mount,) = [mnt for mnt in root["volumeMounts"] if mnt["name"] == volume["name"]]
    # no subPath: the kubelet updates a mounted ConfigMap in place only without one
    assert "subPath" not in mount and path == Path(mount["mountPath"]) / "root.toml"
    port = next(p["containerPort"] for p in root["ports"] if p["name"] == "grpc")
    assert parse_root_config(tomllib.loads(m.root_config_text())).listen == f"0.0.0.0:{port}"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert m.one("Service", "root")["spec"]["selector"].items() <= labels.items()
    assert "clusterIP" not in m.one("Service", "root")["spec"]
    assert root["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"


def _serving(m: Manifests) -> Iterator[tuple[str, dict[str, Any]]]:
    for where, pod in _pods(m):
        for c in pod["containers"]:
            yield f"{where}/{c['name']}", c
        for c in pod.get("initContainers", []):
            if c.get("restartPolicy") == "Always":  # a sidecar serves too
                yield f"{where}/{c['name']}", c


def test_probes_ask_the_grpc_health_service(app: tuple[DeploymentSpec, Target, Manifests]) -> None:
    for where, container in _serving(app[2]):
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
                assert command[2] == _env(container)["SCATTER_ADDRESS"]
        assert "lifecycle" not in container or container["name"] == "root", f"{where}: leaves need no preStop"


def test_every_container_has_requests_and_limits_and_runs_unprivileged(
    app: tuple[DeploymentSpec, Target, Manifests],
) -> None:
    m = app[2]
    for where, pod in _pods(m):
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in _containers(pod):
            for bound in ("requests", "limits"):
                assert set(c["resources"][bound]) == {"cpu", "memory"}, f"{where}/{c['name']} {bound}"
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            grace = _env(c).get("SCATTER_GRACE_SECONDS")
            if grace is not None:
                assert float(grace) < pod["terminationGracePeriodSeconds"], f"{where}/{c['name']}"
    root_pod = m.one("Deployment")["spec"]["template"]["spec"]
    pre_stop = int(_container(root_pod, "root")["lifecycle"]["preStop"]["exec"]["command"][1])
    grace_seconds = parse_root_config(tomllib.loads(m.root_config_text())).grace_seconds
    assert grace_seconds + pre_stop < root_pod["terminationGracePeriodSeconds"]


def test_each_workload_has_one_disruption_budget(app: tuple[DeploymentSpec, Target, Manifests]) -> None:
    m = app[2]
    budgets = m.all("PodDisruptionBudget")
    for kind in POD_KINDS:
        for workload in m.all(kind):
            labels = workload["spec"]["template"]["metadata"]["labels"]
            matching = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
            assert len(matching) == 1, f"{workload['metadata']['name']}: {len(matching)} budgets select its pods"
            if kind == "StatefulSet":  # one replica of a shard at a time
                assert matching[0]["spec"]["maxUnavailable"] == 1


def test_every_process_exposes_metrics_on_a_declared_port(app: tuple[DeploymentSpec, Target, Manifests]) -> None:
    m = app[2]
    config = tomllib.loads(m.root_config_text())
    root_pod = m.one("Deployment")["spec"]["template"]
    assert config["root"]["metrics_listen"] == f"0.0.0.0:{root_pod['metadata']['annotations']['prometheus.io/port']}"
    for where, container in _serving(m):
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        metrics = [port for name, port in ports.items() if name.endswith("metrics")]
        assert metrics, f"{where} declares no metrics port"
        env = _env(container)
        if "SCATTER_METRICS_ADDRESS" in env:
            assert env["SCATTER_METRICS_ADDRESS"] == f"0.0.0.0:{metrics[0]}", where


def test_local_commands_become_container_commands() -> None:
    _, demo = _target("demo")
    m = Manifests(kubernetes_manifests(demo))
    pod = m.one("StatefulSet", "shard-2")["spec"]["template"]["spec"]
    init, leaf = _container(pod, "init"), _container(pod, "leaf")
    # {python} -> the image's python, {config_dir} -> [deploy] workdir, {shards} -> 4
    assert leaf["command"] == ["python", "-m", "demo_search.leaf", "--index", "/var/lib/scatter/index"]
    assert init["command"][:4] == ["scatter-entrypoint", "index", "--shards", "4"]
    assert Path(_flag(init["command"], "--out")) == Path(_flag(leaf["command"], "--index"))
    assert {"name": "data", "mountPath": "/var/lib/scatter", "readOnly": True} in leaf["volumeMounts"]
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == "data")
    _, probe = _target("probe")
    pod = Manifests(kubernetes_manifests(probe)).one("StatefulSet", "shard-0")["spec"]["template"]["spec"]
    assert _container(pod, "leaf")["command"] == ["python", "leaf.py"]
    assert "initContainers" not in pod and _container(pod, "leaf")["image"] == "probe:test"


def _probe_spec(tmp_path: Path, deploy: str) -> DeploymentSpec:
    text = PROBE.read_text() + "\n" + deploy
    path = tmp_path / "scatter.toml"
    path.write_text(text)
    return parse_deployment(tomllib.loads(text), tmp_path)


def test_deploy_table_reshapes_and_flags_beat_it(tmp_path: Path) -> None:
    spec = _probe_spec(
        tmp_path,
        '[deploy]\nimage = "file:1"\nnamespace = "probe"\n[deploy.leaves]\nreplicas = 3\nport = 7000\n'
        'command = ["/bin/leaf", "--shard", "{shard}", "--replica", "{replica}"]\ncpu_limit = "3"\n'
        '[deploy.root]\nreplicas = 1\nimage = "root:2"\n',
    )
    target = build_target(spec, Images(leaves="leaf:3"))
    m = Manifests(kubernetes_manifests(target))
    sts = m.one("StatefulSet", "shard-1")
    leaf = _container(sts["spec"]["template"]["spec"], "leaf")
    assert sts["spec"]["replicas"] == 3 and sts["metadata"]["namespace"] == "probe"
    assert leaf["image"] == "leaf:3" and leaf["resources"]["limits"]["cpu"] == "3"
    assert leaf["command"] == ["/bin/leaf", "--shard", "1", "--replica", "$(SCATTER_REPLICA)"]
    pod = m.one("Deployment", "root")["spec"]["template"]["spec"]
    assert (_container(pod, "root")["image"], _container(pod, "merge")["image"]) == ("root:2", "file:1")
    assert m.one("Deployment")["spec"]["replicas"] == 1
    assert (
        parse_root_config(tomllib.loads(m.root_config_text())).shards[0].dns == "shard-0.probe.svc.cluster.local:7000"
    )
    assert build_target(spec, Images(image="all:4")).root.image == "all:4"
    assert build_target(spec, namespace="other").namespace == "other"


@pytest.mark.parametrize(
    ("deploy", "message"),
    [
        ('[deploy]\nimage = "x:1"\nimgae = "y"\n', "unknown key 'deploy.imgae'; did you mean 'image'?"),
        ('[deploy]\nimage = "x:1"\n[deploy.leaves]\ncpu_request = "lots"\n', "deploy.leaves.cpu_request"),
        ('[deploy]\nimage = "x:1"\nnamespace = "Bad_Name"\n', "deploy.namespace"),
        ('[deploy]\nimage = "x:1"\n[deploy.leaves]\ncommand = ["{pyhton}"]\n', "placeholder {pyhton}"),
        ('[deploy]\nimage = "x:1"\n[deploy.root]\npre_stop_seconds = 29\n', "termination_grace_seconds"),
        ("[deploy]\n", "no image for the leaves"),
    ],
)
def test_bad_deploy_tables_name_the_field(tmp_path: Path, deploy: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("?", r"\?")):
        build_target(_probe_spec(tmp_path, deploy))


# --- the command, as a user runs it -------------------------------------------------------------------


def _scatter(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scatter.cli", "export", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def test_command_writes_the_demo_folder_as_committed(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    result = _scatter("kubernetes", "deploy/demo.toml", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in K8S.glob("*.yaml"))
    # Identical but for the folder named in the header's `kubectl apply -f` line.
    for path in out.iterdir():
        assert path.read_text().replace(str(out), "deploy/k8s") == (K8S / path.name).read_text()


def test_command_prints_one_stream_without_a_folder() -> None:
    result = _scatter("kubernetes", str(PROBE), "--image", "probe:test")
    assert result.returncode == 0, result.stderr
    docs = [d for d in _yaml().safe_load_all(result.stdout) if d]
    assert len(docs) == 1 + 3 * 4 + 4
    _, target = _target("probe")
    assert result.stdout == kubernetes_stream(target, str(PROBE))


@pytest.mark.parametrize(
    ("deploy", "message"),
    [
        ("", "no image for the leaves: give --image IMAGE"),
        ('[deploy]\nimage = "x:1"\nreplica = 2\n', "unknown key 'deploy.replica'"),
    ],
)
def test_bad_input_is_a_message_and_exit_status_2(tmp_path: Path, deploy: str, message: str) -> None:
    path = tmp_path / "scatter.toml"
    path.write_text(PROBE.read_text() + "\n" + deploy)
    for fmt in ("kubernetes", "compose"):
        result = _scatter(fmt, str(path))
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert result.stderr.startswith("scatter export: ") and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and not result.stdout
    missing = _scatter("kubernetes", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr


# --- compose ------------------------------------------------------------------------------------------


def _check_jsonschema() -> str:
    here = Path(sys.executable).parent / "check-jsonschema"
    if not here.exists():
        pytest.fail("check-jsonschema is missing: pip install check-jsonschema (or pip install -e '.[test]')")
    return str(here)


@pytest.mark.parametrize("app_name", ["demo", "probe", "grouped"])
def test_compose_validates_against_the_compose_spec(tmp_path: Path, app_name: str) -> None:
    spec, target = _target(app_name)
    path = tmp_path / "compose.yaml"
    path.write_text(compose_file(target))
    result = subprocess.run(
        [_check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    doc = _yaml().safe_load(path.read_text())
    config = parse_root_config(tomllib.loads(doc["configs"]["root-config"]["content"]))
    services = doc["services"]
    for index, shard in enumerate(config.shards):
        name, port = shard.dns.split(":")
        leaf = services[name]
        assert leaf["scale"] == spec.replicas
        first = index - index % spec.shards_per_process
        assert leaf["environment"]["SCATTER_SHARD_INDEX"] == str(first)
        assert (leaf["environment"].get("SCATTER_SHARDS") is None) == (spec.shards_per_process == 1)
        assert leaf["environment"]["SCATTER_PORT"] == port
        if target.init is not None:
            assert services[f"{name}-init"]["environment"]["SCATTER_SHARD_INDEX"] == str(first)
    root, merge = services["root"], services["merge"]
    assert merge["environment"]["SCATTER_ADDRESS"] == config.merge_address
    assert {v.split(":")[0] for v in merge["volumes"]} & {v.split(":")[0] for v in root["volumes"]}
    assert set(root["depends_on"]) == {"merge", *(s.dns.split(":")[0] for s in config.shards)}
    assert root["configs"] == [{"source": "root-config", "target": _flag(root["entrypoint"], "--config")}]


def test_compose_escapes_dollars_and_refuses_replica_numbers(tmp_path: Path) -> None:
    spec = _probe_spec(tmp_path, '[deploy]\nimage = "x:1"\n[deploy.leaves]\nenv = { PRICE = "$5" }\n')
    doc = _yaml().safe_load(compose_file(build_target(spec)))
    assert doc["services"]["shard-0"]["environment"]["PRICE"] == "$$5"
    spec = _probe_spec(tmp_path, '[deploy]\nimage = "x:1"\n[deploy.leaves]\ncommand = ["leaf", "{replica}"]\n')
    with pytest.raises(ConfigError, match="replica"):
        compose_file(build_target(spec))


def test_placeholders_map_to_the_container_and_braces_stay_escaped() -> None:
    values = {"python": "python", "config_dir": "/app", "shard": "{shard}", "shards": "4"}
    command = translate(["{python}", "{config_dir}/x", "--s={shard}/{shards}", "{{literal}}"], "w", values)
    assert fill(command, shard="2") == ["python", "/app/x", "--s=2/4", "{literal}"]
    with pytest.raises(ConfigError, match=r"placeholder \{replica\}"):
        translate(["{replica}"], "merge.command", {"python": "python"})
