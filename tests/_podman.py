"""Podman for the container tests: the command, the base image, one image build per session.

Shared by ``tests/integration/test_containers.py`` (the hand-written compose
file) and ``tests/integration/test_export_containers.py`` (the exported one).
Where no image registry is reachable the base image is made locally from
Debian's packages by ``deploy/docker/local-base.sh`` (root and debootstrap
needed; the result is kept). Set SCATTER_TEST_BASE_IMAGE to use another base,
and SCATTER_TEST_OCI_RUNTIME to choose podman's runtime (default: runc when
installed, since crun fails on some cgroup v1 hosts), and SCATTER_TEST_IMAGE
to use an image already built from this tree.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "deploy" / "docker"
BASE_IMAGE = os.environ.get("SCATTER_TEST_BASE_IMAGE", "localhost/scatter-base:bookworm")
IMAGE = "localhost/scatter-gather:test"
# Lower than podman's defaults: runc cannot raise them above this host's hard limits.
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
BASE_TIMEOUT = 600.0  # debootstrap: ~1.5 min here
BUILD_TIMEOUT = 600.0  # ~25 s here, pip downloads included
READY_TIMEOUT = 90.0


def _podman() -> list[str]:
    runtime = os.environ.get("SCATTER_TEST_OCI_RUNTIME") or ("runc" if shutil.which("runc") else "")
    return ["podman", *(["--runtime", runtime] if runtime else [])]


def podman(*args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*_podman(), *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}", pytrace=False)
    return result


def _ensure_base_image() -> None:
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return
    if BASE_IMAGE != "localhost/scatter-base:bookworm":
        podman("pull", BASE_IMAGE, timeout=BASE_TIMEOUT)
        return
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        pytest.fail(
            f"no {BASE_IMAGE}: run deploy/docker/local-base.sh as root (apt-get install debootstrap), "
            "or set SCATTER_TEST_BASE_IMAGE to a python:3.11-slim image podman can pull",
            pytrace=False,
        )
    result = subprocess.run(
        [str(DOCKER / "local-base.sh"), BASE_IMAGE], capture_output=True, text=True, timeout=BASE_TIMEOUT
    )
    assert result.returncode == 0, f"local-base.sh failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


# Every image this test builds carries this label, so the ones a rebuild
# leaves untagged can be pruned without touching anybody else's images.
TEST_LABEL = "org.scatter-gather.test-build=1"


@functools.cache
def build_image() -> str:
    """Build deploy/docker/Dockerfile as IMAGE (layers cached between builds) and return IMAGE.

    Once per test session: both container tests use the same image, and a
    second build reran pip (the tree's test files had changed the COPY
    layer), which cost 70 s.

    SCATTER_TEST_IMAGE names an image already built from this tree instead
    (a rerun without the ~25 s build, or a build whose pip needed retries).
    """
    prebuilt = os.environ.get("SCATTER_TEST_IMAGE")
    if prebuilt:
        return prebuilt
    _ensure_base_image()
    started = time.monotonic()
    podman(
        "build", *ULIMITS, "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--label", TEST_LABEL,
        "-f", str(DOCKER / "Dockerfile"), "-t", IMAGE, str(REPO),
        timeout=BUILD_TIMEOUT,
    )  # fmt: skip
    print(f"image built in {time.monotonic() - started:.1f} s")
    return IMAGE


def prune_images() -> None:
    """Remove the untagged images our rebuilds left, and nobody else's."""
    podman("image", "prune", "-f", "--filter", f"label={TEST_LABEL}", check=False, timeout=120)


def skip_without_podman() -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        shutil.which("podman") is None, reason="podman is not installed (apt-get install podman runc)"
    )


def free_port() -> int:
    """A free TCP port on 127.0.0.1, to publish a container's port on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Containers:
    """Containers of one test, by name -> id: what both compose runners share.

    A subclass fills ``ids`` as it starts containers and says, with
    ``health_test``, which compose health check a container runs.
    """

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def health_test(self, name: str) -> list[str]:
        """The compose ``healthcheck.test`` of container ``name`` (``["CMD", ...]``)."""
        raise NotImplementedError

    def remove_all(self) -> None:
        """Stop every container at once (SIGTERM, SIGKILL after 10 s), then remove them."""
        ids = list(reversed(self.ids.values()))
        if ids:
            podman("stop", "--time", "10", *ids, check=False, timeout=60)
            podman("rm", "--force", *ids, check=False, timeout=60)

    def wait_exit(self, name: str, timeout: float) -> int:
        return int(podman("wait", self.ids[name], timeout=timeout).stdout.strip())

    def wait_healthy(self, names: list[str]) -> None:
        """Run each container's compose health check in it until it passes (`docker compose --wait`)."""
        deadline = time.monotonic() + READY_TIMEOUT
        pending = list(names)
        while pending and time.monotonic() < deadline:
            test = self.health_test(pending[0])
            assert test[0] == "CMD"
            if podman("exec", self.ids[pending[0]], *test[1:], check=False, timeout=30).returncode == 0:
                pending.pop(0)
            else:
                time.sleep(0.5)
        assert not pending, f"not healthy after {READY_TIMEOUT:.0f} s: {pending}\n{self.logs()}"

    def logs(self) -> str:
        out = []
        for name, cid in self.ids.items():
            log = podman("logs", cid, check=False, timeout=30)
            out.append(f"--- {name}\n{(log.stdout + log.stderr)[-1500:]}")
        return "\n".join(out)
