"""The deployment file of ``scatter up``: a root configuration whose merge
and leaves are commands to start instead of addresses to call.

    [root]                      # as in the root's own config (see root.config)
    listen = "127.0.0.1:50051"  # port 0: pick a free port
    min_coverage = 1.0

    [merge]
    command = ["{python}", "merge.py"]

    [leaves]
    command = ["{python}", "leaf.py", "--index", "{config_dir}/index"]
    shards = 4
    replicas = 2
    shards_per_process = 1      # 2: each leaf process serves two shards (SCATTER_SHARDS)
    env = { LOG_LEVEL = "info" }

    [runtime]
    ready_timeout_ms = 60000

    [deploy]                    # for `scatter export` only (scatter.export)
    image = "myapp:1.0"

Commands run in the file's folder. Placeholders: {python} (this Python),
{config_dir}, and for leaves {shard}, {shards}, {replica}. Every child also
gets SCATTER_HOST, SCATTER_PORT, and leaves SCATTER_SHARD_INDEX,
SCATTER_SHARD_COUNT and SCATTER_REPLICA_ID, so a leaf in any language finds
its address and shard in its environment. With ``shards_per_process`` above
1, each leaf process serves that many consecutive shards (the last one
fewer), named in SCATTER_SHARDS ("4-7"; SCATTER_SHARD_INDEX and {shard} are
the first), and the root sends them one ``ExecuteShards`` call per request.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from root.config import MAX_DURATION_MS, Table, parse_root_config, read_toml
from root.errors import ConfigError
from scatter_common.tls import check_certificates, check_key_pair

# A leaf that loads a large index may take a while; a minute is generous
# for the demo and still fails a broken command in bounded time.
DEFAULT_READY_TIMEOUT_MS = 60_000.0
# First restart after 0.5 s, doubling to at most 10 s (Kubernetes'
# CrashLoopBackOff starts at 10 s and caps at 5 min: tuned for fleets, not
# for one machine where a fast retry is cheap).
DEFAULT_RESTART_BACKOFF_MS = 500.0
DEFAULT_MAX_RESTART_BACKOFF_MS = 10_000.0


@dataclass(frozen=True)
class ProcessSpec:
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeploymentTls:
    """One certificate for every process of a local deployment (absolute paths)."""

    cert_file: str
    key_file: str
    ca_file: str
    mutual: bool = False  # every hop also requires a client certificate from ca_file


@dataclass(frozen=True)
class TreeSpec:
    """A two-level deployment: ``groups`` lower roots, each over a slice of the shards."""

    groups: int
    combiner: ProcessSpec  # the lower roots' merge: answers in the leaves' partial type
    root: Mapping[str, Any] = field(default_factory=dict)  # [root] settings of the lower roots


@dataclass(frozen=True)
class DeploymentSpec:
    root: Mapping[str, Any]  # the root config document, less merge and shards
    merge: ProcessSpec
    leaves: ProcessSpec
    shards: int
    replicas: int
    directory: Path
    shards_per_process: int = 1
    ready_timeout: float = DEFAULT_READY_TIMEOUT_MS / 1000
    restart_backoff: float = DEFAULT_RESTART_BACKOFF_MS / 1000
    max_restart_backoff: float = DEFAULT_MAX_RESTART_BACKOFF_MS / 1000
    root_command: tuple[str, ...] = (sys.executable, "-m", "scatter.cli", "root")
    tls: DeploymentTls | None = None
    tree: TreeSpec | None = None
    # [deploy]: what a cluster needs that a local run does not (image, namespace,
    # resources...). ``scatter up`` ignores it; ``scatter export`` validates it.
    deploy: Mapping[str, Any] = field(default_factory=dict)

    def process_shards(self) -> list[range]:
        """The shards of each leaf process (of each replica): consecutive runs of ``shards_per_process``."""
        size = self.shards_per_process
        return [range(first, min(first + size, self.shards)) for first in range(0, self.shards, size)]

    def root_document(self, merge_address: str, leaf_addresses: list[list[str]]) -> dict[str, Any]:
        """The root config document with the addresses the runtime assigned."""
        doc = dict(self.root)
        doc["merge"] = {"address": merge_address}
        doc["shards"] = [{"replicas": replicas} for replicas in leaf_addresses]
        if self.tls is not None:
            t = self.tls
            doc["tls"] = {"cert_file": t.cert_file, "key_file": t.key_file}
            doc["upstream_tls"] = {"ca_file": t.ca_file}
            if t.mutual:
                doc["tls"]["client_ca_file"] = t.ca_file
                doc["upstream_tls"].update(cert_file=t.cert_file, key_file=t.key_file)
        return doc


def shards_text(served: range) -> str:
    """A leaf process's shards as ``scatter up`` and ``scatter export`` name them: ``3``, or ``4-7``."""
    return str(served[0]) if len(served) == 1 else f"{served[0]}-{served[-1]}"


def shard_env(served: range, shards: int) -> dict[str, str]:
    """What a leaf process serving ``served`` of ``shards`` finds in its environment about its shards.

    SCATTER_SHARD_INDEX (and ``{shard}``) is the first shard; a process of
    several also gets SCATTER_SHARDS, e.g. ``4-7``. ``scatter up`` and
    ``scatter export`` both set these.
    """
    env = {"SCATTER_SHARD_INDEX": str(served[0]), "SCATTER_SHARD_COUNT": str(shards)}
    if len(served) > 1:
        env["SCATTER_SHARDS"] = shards_text(served)
    return env


def _process(table: Table) -> ProcessSpec:
    command = table.require("command", list)
    if not command or not all(isinstance(part, str) for part in command):
        raise ConfigError(f"{table.where('command')}: expected a non-empty list of strings")
    env = table.get("env", dict, {})
    if not all(isinstance(v, str) for v in env.values()):
        raise ConfigError(f"{table.where('env')}: values must be strings")
    return ProcessSpec(tuple(command), env)


# Sections that belong to the root's own configuration, passed through.
_ROOT_SECTIONS = ("root", "hedging", "replicas", "discovery", "http")


def parse_deployment(data: Mapping[str, Any], directory: Path) -> DeploymentSpec:
    doc = Table(data, "")
    merge = doc.table("merge")
    merge_spec = _process(merge)
    merge.finish()
    leaves = doc.table("leaves")
    leaves_spec = _process(leaves)
    shards = leaves.number("shards", int, 1, low=1)
    replicas = leaves.number("replicas", int, 1, low=1)
    per_process = leaves.number("shards_per_process", int, 1, low=1, high=shards)
    leaves.finish()
    runtime = doc.table("runtime")
    ready, backoff, max_backoff = (
        runtime.number(key, float, default, low=0.0, low_open=True, high=MAX_DURATION_MS)
        for key, default in (
            ("ready_timeout_ms", DEFAULT_READY_TIMEOUT_MS),
            ("restart_backoff_ms", DEFAULT_RESTART_BACKOFF_MS),
            ("max_restart_backoff_ms", DEFAULT_MAX_RESTART_BACKOFF_MS),
        )
    )
    runtime.finish()
    tls_table = doc.table("tls")
    tls = None
    if tls_table.data:
        paths = {}
        for key in ("cert_file", "key_file", "ca_file"):
            path = directory / tls_table.require(key, str)
            if not path.is_file():
                raise ConfigError(f"tls.{key}: no such file {str(path)!r}")
            paths[key] = str(path)
        for key in ("cert_file", "key_file", "ca_file"):
            try:
                if key == "key_file":
                    check_key_pair(paths["cert_file"], paths["key_file"])
                else:
                    check_certificates(paths[key])
            except ValueError as exc:
                raise ConfigError(f"tls.{key}: {exc}") from None
        tls = DeploymentTls(**paths, mutual=tls_table.get("mutual", bool, False))
    tls_table.finish()
    tree_table = doc.table("tree")
    tree = None
    if tree_table.data:
        tree_table.require("groups", int)
        groups = tree_table.number("groups", int, 1, low=1)
        if groups > shards:
            raise ConfigError(f"tree.groups ({groups}) must not exceed leaves.shards ({shards})")
        combiner = tree_table.table("combiner")
        combiner_spec = _process(combiner)
        combiner.finish()
        tree = TreeSpec(groups, combiner_spec, tree_table.get("root", dict, {}))
    tree_table.finish()
    root_doc = {name: data[name] for name in _ROOT_SECTIONS if name in data}
    doc.used.update(_ROOT_SECTIONS)
    deploy = doc.get("deploy", dict, {})
    doc.finish()
    spec = DeploymentSpec(
        root=root_doc,
        merge=merge_spec,
        leaves=leaves_spec,
        shards=shards,
        replicas=replicas,
        directory=directory,
        shards_per_process=per_process,
        ready_timeout=ready / 1000,
        restart_backoff=backoff / 1000,
        max_restart_backoff=max_backoff / 1000,
        tls=tls,
        tree=tree,
        deploy=deploy,
    )
    # Validate the root part now, with placeholder addresses, so a typo in
    # [root] fails before any process starts.
    # Five-digit ports, as wide as the runtime's, so the framing counted is the same.
    placeholder = [[f"127.0.0.1:{10000 + (s * replicas + r) % 55000}" for r in range(replicas)] for s in range(shards)]
    parse_root_config(spec.root_document("127.0.0.1:1", placeholder))
    return spec


def check_can_start(spec: DeploymentSpec) -> None:
    """What ``scatter up`` checks before it starts anything; a ConfigError naming the key if it cannot.

    Not part of reading the file: a deployment exported to run elsewhere
    (``scatter export``) names programs of its containers, not of this machine.
    """
    processes = [("merge.command", spec.merge), ("leaves.command", spec.leaves)]
    if spec.tree is not None:
        processes.append(("tree.combiner.command", spec.tree.combiner))
    for where, process in processes:
        _check_program(where, process.command[0], spec.directory, process.env)
    _check_listen(spec)


def _check_program(where: str, program: str, directory: Path, env: Mapping[str, str]) -> None:
    """The program of a command can be run here: else a ConfigError naming the key, not a crash loop.

    Found as ``subprocess`` will look for it: a path relative to the file's
    folder (the children's working directory), else on the children's PATH.
    A program with a placeholder other than {python} and {config_dir} is
    known only per child and is left to the supervisor.
    """
    try:
        program = program.format(python=sys.executable, config_dir=directory)
    except (KeyError, IndexError, ValueError):
        return
    if os.sep in program:
        path = directory / program
        if not path.is_file():
            raise ConfigError(f"{where}: no such program {str(path)!r}")
        if not os.access(path, os.X_OK):
            raise ConfigError(f"{where}: {str(path)!r} is not executable (chmod +x, or run it with {{python}})")
    elif shutil.which(program, path=env.get("PATH", os.environ.get("PATH", os.defpath))) is None:
        raise ConfigError(f"{where}: {program!r} is not a program on PATH")


def _check_listen(spec: DeploymentSpec) -> None:
    """The root's ``listen``, ``metrics_listen`` and ``[http] listen`` can be bound now: else a ConfigError.

    A moment's bind of each (SO_REUSEADDR, as grpc binds), before any child
    starts: a port in use or a host that is not this machine's is said in
    one line, not as a root that exits while its leaves are already up.
    """
    for table, key in (("root", "listen"), ("root", "metrics_listen"), ("http", "listen")):
        address = spec.root.get(table, {}).get(key)
        if not isinstance(address, str) or not address or address.startswith("unix:"):
            continue
        host, _, port = address.rpartition(":")
        try:
            family, kind, proto, _, sockaddr = socket.getaddrinfo(
                host.strip("[]"), int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(sockaddr)
        except OSError as exc:
            raise ConfigError(f"{table}.{key}: cannot listen on {address}: {exc.strerror or exc}") from None


def load_deployment(path: str | Path) -> DeploymentSpec:
    """Read and validate a deployment file."""
    path = Path(path)
    data = read_toml(path)
    try:
        return parse_deployment(data, path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
