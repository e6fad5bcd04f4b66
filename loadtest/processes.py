"""Extra processes beside a local deployment, for side-by-side benchmarks.

A benchmark that compares two roots runs both on the same leaves and merge:
the deployment's own root, and a second one started here from a copy of
the deployment's generated root config, edited (hedging off, another
module such as the naive root). Stopped by its own handle, with a bounded
wait.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomli_w

from scatter.runtime import Child, Deployment, free_port


def probe_dir() -> Path:
    """examples/probe of the project checkout: beside this package (editable install) or the current folder.

    The probe application is not installed with the package; benchmarks that
    run it need a checkout, as the commands in docs/benchmarks.md are run
    from one.
    """
    for checkout in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if (checkout / "examples" / "probe" / "leaf.py").is_file():
            return checkout / "examples" / "probe"
    raise SystemExit("scatter bench: examples/probe not found; run this benchmark from a checkout of the project")


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
    config = dep.run_dir / f"{name}.toml"
    config.write_text(tomli_w.dumps(document))
    argv = [sys.executable, "-m", module, *(["root"] if module == "scatter.cli" else []), "--config", str(config)]
    child = Child(name, argv, {}, dep.spec.directory, document["root"]["listen"], dep.run_dir / f"{name}.log")
    child.start()
    try:
        child.wait_healthy(60)
        yield child
    finally:
        child.signal(signal.SIGTERM)
        if child.proc is not None:
            try:
                child.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
