"""What a cluster needs that a deployment file does not say: the ``[deploy]`` table.

Every rule about ``[deploy]`` lives here, and only here: its keys, their
defaults (each with its reason), the precedence of the command-line flags
over the file, and how a local command of the deployment file becomes a
command in a container. ``kubernetes`` and ``compose`` build manifests
from the ``Target`` this module returns and decide nothing about the
application themselves.

Precedence of an image: ``--leaf-image`` (``--merge-image``,
``--root-image``), then ``--image``, then ``[deploy.leaves] image`` (...),
then ``[deploy] image``. No image at all is an error: there is no image
name that would be right for someone else's application.

Local commands become container commands by their placeholders: ``{python}``
is ``python`` (the image's interpreter on its PATH), ``{config_dir}`` is
``[deploy] workdir`` (where the image keeps what sat beside the deployment
file), ``{shard}`` and ``{shards}`` are the shard's index and count, and
``{replica}`` is the replica's number (Kubernetes: the StatefulSet pod's
ordinal, through ``$(SCATTER_REPLICA)``; compose scales a shard's service,
whose replicas have no number, so it is refused there). A role's
``command`` in ``[deploy.ROLE]`` replaces the derived one: the argv run in
the container, replacing the image's entrypoint.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from root.config import Table
from root.errors import ConfigError
from scatter.runtime import DeploymentSpec, shards_text
from scatter_common.serving import DEFAULT_GRACE_SECONDS

# The hand-written demo manifests' choices, kept (docs/deploy.md explains each).
DEFAULT_NAMESPACE = "scatter"
DEFAULT_PULL_POLICY = "IfNotPresent"  # a locally loaded image (kind, minikube) must not be pulled
DEFAULT_WORKDIR = "/app"
DEFAULT_UID = 10001  # the image's unprivileged user (deploy/docker/Dockerfile)
# Kubernetes' own default; the processes' drain (grace_seconds) plus the root's
# preStop must fit inside it.
DEFAULT_TERMINATION_GRACE_SECONDS = 30
DEFAULT_HEALTH_COMMAND = ("scatter-entrypoint", "health")  # the image's health check (docs/deploy.md)
DEFAULT_ROOT_REPLICAS = 2  # one keeps serving through a rollout or a node drain
DEFAULT_ROOT_PORT = 50051  # conventional ports (deploy/docker/Dockerfile's EXPOSE)
DEFAULT_LEAF_PORT = 50061
DEFAULT_METRICS_PORT = 9100  # the usual node-exporter-style port; the pod's scrape port
DEFAULT_MERGE_METRICS_PORT = 9101  # beside the root's, in the same pod
DEFAULT_MERGE_SOCKET = "/var/run/scatter/merge.sock"
DEFAULT_DATA_DIR = "/var/lib/scatter"
DEFAULT_ROOT_CONFIG = "/etc/scatter/root.toml"
# The root's Service drops the pod from its endpoints before SIGTERM makes the
# root refuse new calls (endpoint removal and SIGTERM race otherwise).
DEFAULT_PRE_STOP_SECONDS = 5
DEFAULT_LOG_FORMAT = "json"  # one JSON object a line, with the trace id (docs/operations.md)
# Measured on the demo (docs/deploy.md, "Resources"): a leaf ~32 MiB, the index
# build ~80 MiB, an idle root ~24 MiB, the merge ~30 MiB; requests above, limits
# well above. Size real leaves from their shard.
DEFAULT_RESOURCES: dict[str, dict[str, str]] = {
    "leaves": {"cpu_request": "250m", "memory_request": "64Mi", "cpu_limit": "1", "memory_limit": "256Mi"},
    "init": {"cpu_request": "500m", "memory_request": "128Mi", "cpu_limit": "1", "memory_limit": "512Mi"},
    "merge": {"cpu_request": "100m", "memory_request": "64Mi", "cpu_limit": "1", "memory_limit": "256Mi"},
    "root": {"cpu_request": "500m", "memory_request": "128Mi", "cpu_limit": "2", "memory_limit": "512Mi"},
}
# A Kubernetes name (RFC 1123 label): the namespace and every object name built from it.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class Resources:
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str


@dataclass(frozen=True)
class Container:
    """One process of the deployment, as it runs in a container."""

    image: str
    command: tuple[str, ...]  # replaces the image's entrypoint; may hold {shard}, {shards}, {replica}
    env: Mapping[str, str]
    resources: Resources


@dataclass(frozen=True)
class Target:
    """Everything the manifests say, decided: ``kubernetes`` and ``compose`` only lay it out."""

    name: str  # app.kubernetes.io/instance, and compose's project name
    namespace: str
    shards: int
    replicas: int  # per shard (per leaf process: each serves one or more shards)
    leaf: Container
    init: Container | None  # the leaves' data, fetched or built before each leaf starts
    merge: Container
    root: Container
    root_document: Mapping[str, Any]  # the root config, less merge and shards
    root_replicas: int
    root_port: int
    root_metrics_port: int
    leaf_port: int
    leaf_metrics_port: int
    merge_metrics_port: int
    merge_socket: str
    data_dir: str
    workdir: str  # the leaves', merge's and init's working directory, as the deployment file's folder locally
    root_config_path: str
    pull_policy: str
    uid: int
    termination_grace_seconds: int
    pre_stop_seconds: int
    grace_seconds: float  # every process's drain on SIGTERM: the root's grace_seconds
    ready_timeout: float  # seconds a leaf may take to report SERVING ([runtime] ready_timeout_ms)
    health_command: tuple[str, ...]
    log_format: str

    # The shards of each leaf process, consecutive ([leaves] shards_per_process):
    # one StatefulSet (Kubernetes) or service (compose) each, whose leaves get
    # scatter.runtime.shard_env in their environment.
    processes: tuple[range, ...] = ()

    def process_name(self, served: range) -> str:
        """The StatefulSet, headless Service or compose service of the leaves serving ``served``.

        ``shard-N`` for one shard (the layout before several shards per process
        existed, kept), ``shards-A-B`` for several.
        """
        return ("shard-" if len(served) == 1 else "shards-") + shards_text(served)

    def process_of(self, shard: int) -> range:
        """The shards of the leaf process that serves ``shard``."""
        return next(served for served in self.processes if shard in served)

    def shard_name(self, shard: int) -> str:
        """The StatefulSet, headless Service (Kubernetes) or service (compose) that serves one shard."""
        return self.process_name(self.process_of(shard))

    @property
    def merge_address(self) -> str:
        return f"unix:{self.merge_socket}"


@dataclass(frozen=True)
class Images:
    """Images given on the command line; they beat the file's."""

    image: str = ""
    leaves: str = ""
    merge: str = ""
    root: str = ""


def _quantity(table: Table, key: str, default: str) -> str:
    value = table.get(key, str, default)
    if not _QUANTITY.match(value):
        raise ConfigError(f'{table.where(key)}: expected a Kubernetes quantity such as "250m" or "64Mi", got {value!r}')
    return value


def _resources(table: Table, role: str) -> Resources:
    defaults = DEFAULT_RESOURCES[role]
    return Resources(**{key: _quantity(table, key, default) for key, default in defaults.items()})


def _port(table: Table, key: str, default: int) -> int:
    value = table.get(key, int, default)
    if not 0 < value < 65536:
        raise ConfigError(f"{table.where(key)} must be in [1, 65535], got {value}")
    return value


def _strings(table: Table, key: str) -> tuple[str, ...] | None:
    value = table.get(key, list, None)
    if value is None:
        return None
    if not value or not all(isinstance(part, str) for part in value):
        raise ConfigError(f"{table.where(key)}: expected a non-empty list of strings")
    return tuple(value)


def _env(table: Table) -> dict[str, str]:
    env = table.get("env", dict, {})
    if not all(isinstance(v, str) for v in env.values()):
        raise ConfigError(f"{table.where('env')}: values must be strings")
    return dict(env)


def _name(where: str, value: str) -> str:
    if not _DNS_LABEL.match(value) or len(value) > 40:
        raise ConfigError(
            f"{where}: {value!r} is not a Kubernetes name (lower-case letters, digits and '-', at most 40)"
        )
    return value


def translate(command: Sequence[str], where: str, values: Mapping[str, str]) -> tuple[str, ...]:
    """A local command's placeholders replaced by their value in a container.

    Only the placeholders of ``values`` are known; a value may itself be a
    placeholder kept for the layout (``{shard}``), filled in per shard later.
    """
    out = []
    for part in command:

        def replace(match: re.Match[str], part: str = part) -> str:
            key = match.group(1)
            if key not in values:
                known = ", ".join("{" + k + "}" for k in sorted(values))
                raise ConfigError(f"{where}: placeholder {{{key}}} in {part!r} has no value here (known: {known})")
            return values[key]

        # str.format's escapes: {{ and }} are literal braces.
        pieces = part.split("{{")
        out.append("{{".join(_PLACEHOLDER.sub(replace, piece) for piece in pieces))
    return tuple(out)


def fill(command: Sequence[str], **values: str) -> list[str]:
    """Fill the per-shard placeholders kept by ``translate`` and undo the brace escapes."""
    return [part.format(**values) for part in command]


def build_target(spec: DeploymentSpec, images: Images = Images(), namespace: str = "") -> Target:
    """Validate ``[deploy]`` (the file's, and the flags) into a ``Target``; ConfigError names the field."""
    if spec.tls is not None:
        raise ConfigError(
            "[tls]: exporting TLS is not supported yet (the certificates would have to become Secrets); "
            "remove [tls] from the file you export"
        )
    if spec.tree is not None:
        raise ConfigError("[tree]: exporting a two-level tree is not supported yet; export one level")
    deploy = Table(spec.deploy, "deploy")
    in_file = deploy.get("namespace", str, DEFAULT_NAMESPACE)
    namespace = _name("--namespace", namespace) if namespace else _name("deploy.namespace", in_file)
    name = _name("deploy.name", deploy.get("name", str, namespace))
    workdir = deploy.get("workdir", str, DEFAULT_WORKDIR)
    if not workdir.startswith("/"):
        raise ConfigError(f"deploy.workdir: expected an absolute path in the image, got {workdir!r}")
    pull_policy = deploy.get("pull_policy", str, DEFAULT_PULL_POLICY)
    if pull_policy not in ("Always", "IfNotPresent", "Never"):
        raise ConfigError(f"deploy.pull_policy: expected Always, IfNotPresent or Never, got {pull_policy!r}")
    uid = deploy.get("uid", int, DEFAULT_UID)
    if uid <= 0:
        raise ConfigError(f"deploy.uid must be > 0 (the pods run as non-root), got {uid}")
    termination = deploy.number(
        "termination_grace_seconds", int, DEFAULT_TERMINATION_GRACE_SECONDS, low=0, low_open=True, high=86400
    )
    health_command = _strings(deploy, "health_command") or DEFAULT_HEALTH_COMMAND
    log_format = deploy.get("log_format", str, DEFAULT_LOG_FORMAT)
    if log_format not in ("json", "text"):
        raise ConfigError(f"deploy.log_format: expected json or text, got {log_format!r}")
    image = deploy.get("image", str, "")

    def image_of(role: str, table: Table, flag: str) -> str:
        own = table.get("image", str, "")  # read even when a flag wins: it is a known key
        chosen = flag or images.image or own or image
        if not chosen:
            one = "leaf" if role == "leaves" else role
            raise ConfigError(
                f"no image for the {role}: give --image IMAGE (or --{one}-image), "
                'or write image = "NAME:TAG" in [deploy] (or [deploy.' + role + "])"
            )
        return chosen

    base = {"python": "python", "config_dir": workdir}

    leaves = deploy.table("leaves")
    replicas = leaves.number("replicas", int, spec.replicas, low=1, high=10_000)
    leaf_port = _port(leaves, "port", DEFAULT_LEAF_PORT)
    leaf_metrics = _port(leaves, "metrics_port", DEFAULT_METRICS_PORT)
    if leaf_metrics == leaf_port:
        raise ConfigError("deploy.leaves.metrics_port must differ from deploy.leaves.port")
    per_shard = {**base, "shard": "{shard}", "shards": str(spec.shards), "replica": "{replica}", "port": str(leaf_port)}
    leaf_where = "deploy.leaves.command" if "command" in leaves.data else "leaves.command"
    leaf = Container(
        image_of("leaves", leaves, images.leaves),
        translate(_strings(leaves, "command") or spec.leaves.command, leaf_where, per_shard),
        {**spec.leaves.env, **_env(leaves)},
        _resources(leaves, "leaves"),
    )
    leaves.finish()

    init_table = deploy.table("init")
    init = None
    data_dir = init_table.get("data_dir", str, DEFAULT_DATA_DIR)
    if not data_dir.startswith("/"):
        raise ConfigError(f"deploy.init.data_dir: expected an absolute path in the image, got {data_dir!r}")
    init_command = _strings(init_table, "command")
    if init_command is not None:
        init = Container(
            init_table.get("image", str, "") or leaf.image,
            translate(init_command, "deploy.init.command", per_shard),
            _env(init_table),
            _resources(init_table, "init"),
        )
    elif init_table.data:
        init_table.get("image", str, "")
        _env(init_table)
        _resources(init_table, "init")
        if set(init_table.data) - {"data_dir"}:
            raise ConfigError("deploy.init: give command = [...] (what fetches or builds a leaf's data)")
    init_table.finish()

    merge_table = deploy.table("merge")
    merge_socket = merge_table.get("socket", str, DEFAULT_MERGE_SOCKET)
    if not merge_socket.startswith("/"):
        raise ConfigError(f"deploy.merge.socket: expected an absolute path, got {merge_socket!r}")
    merge_where = "deploy.merge.command" if "command" in merge_table.data else "merge.command"
    merge = Container(
        image_of("merge", merge_table, images.merge),
        translate(_strings(merge_table, "command") or spec.merge.command, merge_where, base),
        {**spec.merge.env, **_env(merge_table)},
        _resources(merge_table, "merge"),
    )
    merge_metrics = _port(merge_table, "metrics_port", DEFAULT_MERGE_METRICS_PORT)
    merge_table.finish()

    root_table = deploy.table("root")
    root_port = _port(root_table, "port", DEFAULT_ROOT_PORT)
    root_metrics = _port(root_table, "metrics_port", DEFAULT_METRICS_PORT)
    if len({root_port, root_metrics, merge_metrics}) < 3:
        raise ConfigError("deploy.root.port, deploy.root.metrics_port and deploy.merge.metrics_port must differ")
    root_config_path = root_table.get("config", str, DEFAULT_ROOT_CONFIG)
    if not root_config_path.startswith("/") or root_config_path.endswith("/"):
        raise ConfigError(f"deploy.root.config: expected an absolute file path, got {root_config_path!r}")
    default_root_command = ("scatter", "root", "--config", "{config}", "--log-level", "info")
    root = Container(
        image_of("root", root_table, images.root),
        translate(_strings(root_table, "command") or default_root_command, "deploy.root.command",
                  {**base, "config": root_config_path}),
        _env(root_table),
        _resources(root_table, "root"),
    )  # fmt: skip
    root_replicas = root_table.number("replicas", int, DEFAULT_ROOT_REPLICAS, low=1, high=10_000)
    pre_stop = root_table.get("pre_stop_seconds", int, DEFAULT_PRE_STOP_SECONDS)
    if pre_stop < 0:
        raise ConfigError(f"deploy.root.pre_stop_seconds must be >= 0, got {pre_stop}")
    root_table.finish()
    deploy.finish()

    document = {section: dict(value) for section, value in spec.root.items()}
    root_section = dict(document.get("root", {}))
    grace = float(root_section.get("grace_seconds", DEFAULT_GRACE_SECONDS))
    if grace + pre_stop >= termination:
        raise ConfigError(
            f"root.grace_seconds ({grace:g}) + deploy.root.pre_stop_seconds ({pre_stop}) must be below "
            f"deploy.termination_grace_seconds ({termination}), or Kubernetes kills the root mid-drain"
        )
    # The file's listen is local (often port 0); in a container the root listens on every interface.
    root_section["listen"] = f"0.0.0.0:{root_port}"
    root_section["metrics_listen"] = f"0.0.0.0:{root_metrics}"
    document["root"] = root_section
    return Target(
        name=name,
        namespace=namespace,
        shards=spec.shards,
        replicas=replicas,
        leaf=leaf,
        init=init,
        merge=merge,
        root=root,
        root_document=document,
        root_replicas=root_replicas,
        root_port=root_port,
        root_metrics_port=root_metrics,
        leaf_port=leaf_port,
        leaf_metrics_port=leaf_metrics,
        merge_metrics_port=merge_metrics,
        merge_socket=merge_socket,
        data_dir=data_dir,
        workdir=workdir,
        root_config_path=root_config_path,
        pull_policy=pull_policy,
        uid=uid,
        termination_grace_seconds=termination,
        pre_stop_seconds=pre_stop,
        grace_seconds=grace,
        ready_timeout=spec.ready_timeout,
        health_command=tuple(health_command),
        log_format=log_format,
        processes=tuple(spec.process_shards()),
    )


def startup_failures(timeout: float, period: int) -> int:
    """A startup probe's failureThreshold that allows ``timeout`` seconds at ``period``."""
    return max(1, math.ceil(timeout / period))
