"""The exported Compose file of the demo, run as real containers with podman.

``scatter export compose deploy/demo.toml`` describes one service per shard
scaled to its replicas, and a root that finds each shard's replicas by the
service's name in DNS. Here each service is started as compose would start
it (entrypoint, working directory, user, environment, volumes, read-only
root, in dependency order), every replica of a shard under the shard's
network alias, on a private podman network whose DNS (aardvark) answers an
alias with every container that has it, as compose's does. Then: a search
through the root has full coverage with hits from every shard, a replica
stopped as compose stops it drains and exits 0 while coverage stays full,
and a replica added under the alias gets calls once the root's next lookup
finds it (no config change, no restart; the root's own /metrics says so).
"""

from __future__ import annotations

import json
import secrets
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from demo_search.cli import search_once
from scatter.export import Images, build_target, compose_file
from scatter.runtime import DeploymentSpec, load_deployment, parse_deployment
from tests._podman import (
    BASE_TIMEOUT,
    BUILD_TIMEOUT,
    REPO,
    ULIMITS,
    Containers,
    build_image,
    free_port,
    podman,
    prune_images,
    skip_without_podman,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(BASE_TIMEOUT + BUILD_TIMEOUT + 300), skip_without_podman()]


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    yield build_image()
    prune_images()


def _unescape(value: str) -> str:
    return value.replace("$$", "$")  # compose's escape of a literal $


class ExportedProject(Containers):
    """The exported compose file's services as podman containers, each remembered by id."""

    def __init__(self, image: str, tmp: Path, spec: DeploymentSpec | None = None) -> None:
        yaml = pytest.importorskip("yaml")
        target = build_target(spec or load_deployment(REPO / "deploy" / "demo.toml"), Images(image=image))
        self.compose: dict[str, Any] = yaml.safe_load(compose_file(target))
        self.metrics_port = target.root_metrics_port
        self.prefix = f"scatter-export-{secrets.token_hex(3)}"
        self.network = podman("network", "create", self.prefix).stdout.strip()
        super().__init__()
        self.root_port = free_port()
        self.configs: dict[str, Path] = {}
        for name, config in self.compose["configs"].items():
            self.configs[name] = tmp / f"{name}.toml"
            self.configs[name].write_text(_unescape(config["content"]))

    def start(self, service: str, replica: int = 0) -> str:
        s = self.compose["services"][service]
        name = f"{service}-{replica}"
        args = ["run", "--detach", *ULIMITS, "--name", f"{self.prefix}-{name}", "--network", self.network]
        args += ["--network-alias", service, "--hostname", name, "--user", s["user"], "--read-only"]
        args += ["--entrypoint", json.dumps([_unescape(a) for a in s["entrypoint"]])]
        args += ["--workdir", s["working_dir"]] if "working_dir" in s else []
        args += [a for t in s.get("tmpfs", []) for a in ("--tmpfs", t)]
        args += [a for k, v in s.get("environment", {}).items() for a in ("-e", f"{k}={_unescape(v)}")]
        for volume in s.get("volumes", []):
            source, target = volume.split(":", 1)
            args += ["-v", f"{self.prefix}-{source}:{target}"]
        for config in s.get("configs", []):
            args += ["-v", f"{self.configs[config['source']]}:{config['target']}:ro"]
        for port in s.get("ports", []):
            args += ["-p", f"127.0.0.1:{self.root_port}:{port.rsplit(':', 1)[1]}"]
        self.ids[name] = podman(*args, s["image"]).stdout.strip()
        return name

    def address(self, name: str) -> str:
        """The container's address on the project's network."""
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        return podman("inspect", "--format", fmt, self.ids[name]).stdout.strip()

    def metrics(self, containing: str = "") -> str:
        """The root's own /metrics (the lines containing ``containing``), fetched inside its container."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        fetch = f"import urllib.request; print(urllib.request.urlopen({url!r}).read().decode())"
        text = podman("exec", self.ids["root-0"], "python", "-c", fetch, timeout=30).stdout
        return "\n".join(line for line in text.splitlines() if containing in line)

    def replica_attempts(self, shard: str, address: str) -> float:
        """The root's scatter_root_replica_attempts for one replica."""
        return self.counter("scatter_root_replica_attempts_total", f'replica="{address}"', f'shard="{shard}"')

    def counter(self, name: str, *labels: str) -> float:
        """The sum of one of the root's counters over the series that have every label of ``labels``."""
        return sum(
            float(line.split()[-1])
            for line in self.metrics().splitlines()
            if line.startswith(name + "{") and all(label in line for label in labels)
        )

    def health_test(self, name: str) -> list[str]:
        return list(self.compose["services"][name.rsplit("-", 1)[0]]["healthcheck"]["test"])

    def close(self) -> None:
        self.remove_all()
        for volume in self.compose.get("volumes", {}):
            podman("volume", "rm", "--force", f"{self.prefix}-{volume}", check=False)
        podman("network", "rm", "--force", self.network, check=False)


@pytest.fixture
def project(image: str, tmp_path: Path) -> Iterator[ExportedProject]:
    p = ExportedProject(image, tmp_path)
    try:
        yield p
    finally:
        p.close()


def test_exported_compose_runs_and_follows_its_replicas_by_dns(project: ExportedProject) -> None:
    services = project.compose["services"]
    inits = [name for name in services if name.endswith("-init")]
    shards = [name for name in services if name.startswith("shard-") and not name.endswith("-init")]
    for name in inits:
        project.start(name)
    for name in inits:
        assert project.wait_exit(f"{name}-0", timeout=120) == 0, project.logs()
    leaves = [project.start(shard, r) for shard in shards for r in range(services[shard]["scale"])]
    merge = project.start("merge")
    project.wait_healthy([*leaves, merge])
    root = project.start("root")
    project.wait_healthy([root])

    with grpc.insecure_channel(f"127.0.0.1:{project.root_port}") as channel:
        response, _ = search_once(channel, "json decode", 5, deadline=10)
        assert response.coverage.answered == response.coverage.total == 4, project.logs()
        assert response.hits and response.hits[0].doc_id.startswith("json"), response
        found = {hit.shard_index for hit in search_once(channel, "return value", 50, deadline=10)[0].hits}
        assert found == {0, 1, 2, 3}  # each shard's service took its own shard

        # One replica of shard 0 stops as compose stops it: SIGTERM, drain, exit 0; the other answers.
        podman("stop", "--time", "30", project.ids["shard-0-1"], timeout=60)
        assert project.wait_exit("shard-0-1", timeout=10) == 0, project.logs()
        for _ in range(5):
            response, _ = search_once(channel, "json decode", 5, deadline=10)
            assert response.coverage.answered == 4, project.logs()

        # A new replica under the shard's alias: the root finds it at its next DNS lookup and calls it.
        added = project.start("shard-0", 2)
        project.wait_healthy([added])
        address = f"{project.address(added)}:{services['shard-0']['environment']['SCATTER_PORT']}"
        deadline = time.monotonic() + 30  # the root looks again every refresh_ms (5 s)
        while time.monotonic() < deadline and project.replica_attempts("0", address) == 0:
            search_once(channel, "json decode", 5, deadline=10)
            time.sleep(0.2)
        assert project.replica_attempts("0", address) > 0, f"{project.metrics('replica_attempts')}\n{project.logs()}"


def test_exported_compose_of_two_shards_per_process_is_asked_once_per_process(image: str, tmp_path: Path) -> None:
    """``shards_per_process = 2``: a service per leaf process, each serving two shards (SCATTER_SHARDS);
    the root's config names that service for both, finds the same containers for both, and sends
    them one ExecuteShards call per request (its batched-attempts counter, per shard)."""
    demo = REPO / "deploy" / "demo.toml"
    text = demo.read_text().replace("[leaves]\n", "[leaves]\nshards_per_process = 2\n", 1)
    project = ExportedProject(image, tmp_path, parse_deployment(tomllib.loads(text), demo.parent))
    try:
        services = project.compose["services"]
        leaves = [name for name in services if name.startswith("shards-") and not name.endswith("-init")]
        assert leaves == ["shards-0-1", "shards-2-3"], sorted(services)
        for name in leaves:
            project.start(f"{name}-init")
        for name in leaves:
            assert project.wait_exit(f"{name}-init-0", timeout=120) == 0, project.logs()
        started = [project.start(name) for name in leaves]  # one replica of each is enough here
        started.append(project.start("merge"))
        project.wait_healthy(started)
        root = project.start("root")
        project.wait_healthy([root])
        with grpc.insecure_channel(f"127.0.0.1:{project.root_port}") as channel:
            for _ in range(3):
                response, _ = search_once(channel, "return value", 50, deadline=10)
                assert response.coverage.answered == response.coverage.total == 4, project.logs()
            assert {hit.shard_index for hit in response.hits} == {0, 1, 2, 3}, "each process answers both its shards"
        for shard in range(4):
            assert project.counter("scatter_root_batched_attempts_total", f'shard="{shard}"') >= 3, project.metrics(
                "batched"
            )
    finally:
        project.close()
