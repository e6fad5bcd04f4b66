"""The deployments the benchmarks and the integration tests run: the one builder of their documents.

Every benchmark and ``tests/_cluster.py`` build their ``scatter up``
document (scatter/runtime/spec.py) here, and override only what they
measure; nothing else writes one by hand. Two applications:

- the probe application (``examples/probe``: ``leaf.py``, ``merge.py``,
  ``combine.py``), with latency and stalls injected by flags or per
  request: ``probe_document`` / ``probe_spec``. It is not installed with
  the package; ``probe_dir`` finds it in a checkout, or says where to get it.
- the demo search as ``scatter demo`` runs it (``demo_spec``), over the
  cached stdlib index or any index folder.

``started`` runs a spec through the local runtime, retrying once when a
picked port was taken in between.
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scatter.runtime import Deployment, DeploymentSpec, StartupError, parse_deployment

__all__ = ["PROBE_SOURCE", "demo_spec", "probe_dir", "probe_document", "probe_spec", "started"]

# Where the probe application lives in the project's repository.
PROBE_SOURCE = "examples/probe"
# The folder that holds the loadtest package: the checkout (editable install) or site-packages.
PACKAGE_PARENT = Path(__file__).resolve().parent.parent


def probe_dir() -> Path:
    """examples/probe of the project checkout: beside this package (editable install) or the current folder.

    The probe application is not installed with the package; benchmarks that
    run it need a checkout, as the commands in docs/benchmarks.md are run
    from one.
    """
    for checkout in (PACKAGE_PARENT, Path.cwd()):
        if (checkout / PROBE_SOURCE / "leaf.py").is_file():
            return checkout / PROBE_SOURCE
    raise SystemExit(
        f"scatter bench: {PROBE_SOURCE} not found; this benchmark runs the probe application, which is not "
        f"installed with the package: run it from a checkout of the project (the folder that holds {PROBE_SOURCE})"
    )


def probe_document(
    shards: int,
    replicas: int,
    *,
    leaf_flags: Sequence[str] = (),
    leaf_env: Mapping[str, str] | None = None,
    root: Mapping[str, Any] | None = None,
    sections: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The probe application, ``shards`` x ``replicas`` leaves started with ``leaf_flags``.

    ``root`` adds to the root's settings (it listens on a free port of
    127.0.0.1); ``sections`` are whole sections of the document
    (``hedging``, ``replicas``, ``runtime``, ``tls``, ``tree``), a mapping
    rather than keywords because ``[replicas]`` is one of them.
    """
    leaves: dict[str, Any] = {"command": ["{python}", "leaf.py", *leaf_flags], "shards": shards, "replicas": replicas}
    if leaf_env:
        leaves["env"] = dict(leaf_env)
    document: dict[str, Any] = {
        "root": {"listen": "127.0.0.1:0", **(root or {})},
        "merge": {"command": ["{python}", "merge.py"]},
        "leaves": leaves,
    }
    document.update(sections or {})
    return document


def probe_spec(shards: int, replicas: int, **options: Any) -> DeploymentSpec:
    """``probe_document(shards, replicas, **options)`` parsed, its commands run in :func:`probe_dir`."""
    return parse_deployment(probe_document(shards, replicas, **options), probe_dir())


def demo_spec(
    index: Path | None = None,
    *,
    shards: int | None = None,
    replicas: int | None = None,
    shards_per_process: int = 1,
    **root: Any,
) -> DeploymentSpec:
    """The demo search as ``scatter demo`` runs it, root settings overridden by ``root``.

    Without ``index``, the stdlib index ``scatter demo`` caches (built on first
    use); shards and replicas default to the demo's (4 x 2).
    """
    from demo_search import DEMO_REPLICAS, DEMO_SHARDS, deployment_toml, ensure_stdlib_index

    shards = DEMO_SHARDS if shards is None else shards
    if index is None:
        index = ensure_stdlib_index(shards)
    text = deployment_toml(
        index.resolve(),
        shards=shards,
        replicas=DEMO_REPLICAS if replicas is None else replicas,
        shards_per_process=shards_per_process,
    )
    document = tomllib.loads(text)
    document["root"].update(root)
    # The demo's commands are modules (python -m demo_search.leaf): any folder will do; this one
    # puts the package that is running on the children's path first.
    return parse_deployment(document, PACKAGE_PARENT)


@contextmanager
def started(spec: DeploymentSpec, log_dir: Path) -> Iterator[Deployment]:
    """Start ``spec`` through the local runtime, logs into ``log_dir/logs``; stop it at the end."""
    try:
        dep = Deployment(spec, log_dir=log_dir / "logs").__enter__()
    except StartupError as exc:
        # One retry: the runtime picks free ports before the children bind them, and another
        # process can take one in between ("Address already in use"). A second failure is real.
        print(f"scatter bench: deployment did not start, retrying once: {str(exc).splitlines()[0]}", file=sys.stderr)
        dep = Deployment(spec, log_dir=log_dir / "logs-retry").__enter__()
    try:
        yield dep
    finally:
        dep.stop()
