"""Processes a benchmark starts itself, beside or instead of a local deployment.

A benchmark that compares two roots runs both on the same leaves and merge:
the deployment's own root, and a second one started here (``extra_root``)
from a copy of the deployment's generated root config, edited (hedging off,
another module such as the naive root). A benchmark whose processes the
runtime cannot describe (the fan-out benchmark's multi-shard leaves) starts
them one by one in a ``Processes`` group. Either way each process is a
``scatter.runtime.Child``: started, waited for on the health service, and
stopped by its own handle with the runtime's ``stop_children``.
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomli_w

from scatter.runtime import Child, Deployment, free_port, stop_children

READY_TIMEOUT = 60.0  # seconds: a cold Python importing grpc and numpy on a busy 2-core machine
STOP_GRACE = 30.0  # seconds for a drain before SIGKILL


class Processes:
    """Children started one at a time, each healthy before the next, stopped together.

    ``cwd`` is where their commands run, ``run_dir`` where their configs and logs go.
    """

    def __init__(self, cwd: Path, run_dir: Path) -> None:
        self.cwd = cwd
        self.run_dir = run_dir
        self.children: list[Child] = []

    def start(self, name: str, argv: Sequence[str], address: str, env: Mapping[str, str] | None = None) -> Child:
        """Start ``argv`` (it serves on ``address``) and wait until it is SERVING."""
        child = Child(name, argv, env or {}, self.cwd, address, self.run_dir / f"{name}.log")
        self.children.append(child)
        child.start()
        child.wait_healthy(READY_TIMEOUT)
        return child

    def start_root(
        self,
        name: str,
        document: dict[str, Any],
        module: str = "scatter.cli",
        env: Mapping[str, str] | None = None,
    ) -> Child:
        """A root process (``scatter root``, or ``module``'s own ``--config``) from a root config document."""
        config = self.run_dir / f"{name}.toml"
        config.write_text(tomli_w.dumps(document))
        argv = [sys.executable, "-m", module, *(["root"] if module == "scatter.cli" else []), "--config", str(config)]
        child = self.start(name, argv, str(document["root"]["listen"]), env)
        child.metrics_address = str(document["root"].get("metrics_listen", ""))
        return child

    def stop(self) -> None:
        stop_children(self.children[::-1], STOP_GRACE)  # the last started (a root) first: it drains


@contextmanager
def processes(cwd: Path, run_dir: Path) -> Iterator[Processes]:
    """A ``Processes`` group whose children are stopped when the block ends, however it ends."""
    group = Processes(cwd, run_dir)
    try:
        yield group
    finally:
        group.stop()


@contextmanager
def extra_root(
    dep: Deployment, name: str, edit: Callable[[dict[str, Any]], None], module: str = "scatter.cli"
) -> Iterator[Child]:
    """A second root process on the same leaves and merge, its config edited by ``edit``."""
    document = tomllib.loads((dep.run_dir / "root.toml").read_text())
    document["root"]["listen"] = f"127.0.0.1:{free_port()}"
    if document["root"].get("metrics_listen"):
        document["root"]["metrics_listen"] = f"127.0.0.1:{free_port()}"
    edit(document)
    with processes(dep.spec.directory, dep.run_dir) as group:
        yield group.start_root(name, document, module)
