"""The demo as real containers: build deploy/docker/Dockerfile with podman and run compose.yaml's services.

No Docker engine is needed: podman runs the image, and each service of
``deploy/docker/compose.yaml`` is started as compose would start it (same
command, environment, volumes, hostname, read-only root, health check, in
dependency order) on a private podman network, the root published on
127.0.0.1. Then the test searches through the root, stops one leaf replica
(it must drain and exit 0) and searches again: the other replica answers.

Where no image registry is reachable the base image is made locally from
Debian's packages by ``deploy/docker/local-base.sh`` (root and debootstrap
needed; the result is kept, so only the first run pays ~1.5 min). Set
SCATTER_TEST_BASE_IMAGE to use another base, e.g. ``docker.io/library/python:3.11-slim``,
and SCATTER_TEST_OCI_RUNTIME to choose podman's runtime (default: runc when
installed, since crun fails on some cgroup v1 hosts). Every container is
started detached, and stopped and removed by its id.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from demo_search.cli import search_once
from tests._podman import (
    BASE_TIMEOUT,
    BUILD_TIMEOUT,
    DOCKER,
    ULIMITS,
    Containers,
    build_image,
    free_port,
    podman,
    prune_images,
    skip_without_podman,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(BASE_TIMEOUT + BUILD_TIMEOUT + 300),
    skip_without_podman(),
]


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    yield build_image()
    prune_images()


class Project(Containers):
    """compose.yaml's services as podman containers; every container is remembered by id."""

    def __init__(self, image: str) -> None:
        try:
            import yaml
        except ImportError:
            pytest.fail("PyYAML is missing: pip install PyYAML (or pip install -e '.[test]')", pytrace=False)
        self.compose: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
        self.image = image
        self.prefix = f"scatter-test-{secrets.token_hex(3)}"
        self.network = podman("network", "create", self.prefix).stdout.strip()
        super().__init__()
        self.root_port = free_port()

    def service(self, name: str) -> dict[str, Any]:
        return dict(self.compose["services"][name])

    def start(self, name: str) -> str:
        s = self.service(name)
        args = ["run", "--detach", *ULIMITS, "--name", f"{self.prefix}-{name}"]
        args += ["--network", self.network, "--network-alias", name, "--hostname", s.get("hostname", name)]
        args += ["--read-only"] if s.get("read_only") else []
        args += [a for t in s.get("tmpfs", []) for a in ("--tmpfs", t)]
        args += [a for k, v in s.get("environment", {}).items() for a in ("-e", f"{k}={v}")]
        for volume in s.get("volumes", []):
            source, target = volume.split(":", 1)
            source = str((DOCKER / source).resolve()) if source.startswith(".") else f"{self.prefix}-{source}"
            args += ["-v", f"{source}:{target}"]
        for port in s.get("ports", []):
            args += ["-p", f"127.0.0.1:{self.root_port}:{port.rsplit(':', 1)[1]}"]
        self.ids[name] = podman(*args, self.image, *s["command"]).stdout.strip()
        return self.ids[name]

    def health_test(self, name: str) -> list[str]:
        return list(self.service(name)["healthcheck"]["test"])

    def close(self) -> None:
        self.remove_all()
        for volume in {v.split(":")[0] for s in self.compose["services"].values() for v in s.get("volumes", [])}:
            if not volume.startswith("."):
                podman("volume", "rm", "--force", f"{self.prefix}-{volume}", check=False)
        podman("network", "rm", "--force", self.network, check=False)


@pytest.fixture
def project(image: str) -> Iterator[Project]:
    p = Project(image)
    try:
        yield p
    finally:
        p.close()


def test_compose_demo_runs_as_containers_and_survives_a_leaf_stopping(project: Project) -> None:
    started = time.monotonic()
    project.start("index")
    assert project.wait_exit("index", timeout=120) == 0, project.logs()
    leaves = [name for name, s in project.compose["services"].items() if s["command"][0] == "leaf"]
    for name in [*leaves, "merge"]:
        project.start(name)
    project.wait_healthy([*leaves, "merge"])
    project.start("root")
    project.wait_healthy(["root"])
    user = podman("inspect", "--format", "{{.Config.User}}", project.ids["root"]).stdout.strip()
    assert user == "10001:10001"

    with grpc.insecure_channel(f"127.0.0.1:{project.root_port}") as channel:
        response, _ = search_once(channel, "json decode", 5, deadline=10)
        assert response.coverage.answered == response.coverage.total == 4, project.logs()
        assert response.hits and response.hits[0].doc_id.startswith("json"), response
        shards = {hit.shard_index for hit in search_once(channel, "return value", 50, deadline=10)[0].hits}
        assert shards == {0, 1, 2, 3}  # every leaf container took its own shard from its hostname

        # One replica of shard 0 goes away the way Kubernetes or compose stops it: SIGTERM, drain, exit 0.
        podman("stop", "--time", "30", project.ids["leaves-1"], timeout=60)
        assert project.wait_exit("leaves-1", timeout=10) == 0, project.logs()
        for _ in range(5):
            response, _ = search_once(channel, "json decode", 5, deadline=10)
            assert response.coverage.answered == 4, project.logs()
    print(f"demo containers started, queried and stopped in {time.monotonic() - started:.1f} s")
