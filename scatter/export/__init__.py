"""``scatter export kubernetes | compose``: manifests for any application, from the deployment file.

The same file ``scatter up`` runs, plus a ``[deploy]`` table (or flags) for
what a cluster needs and a local run does not: images, namespace, ports,
resources, replicas per shard (docs/configuration.md, "[deploy]").

Public face:

- ``build_target(spec, images, namespace)`` validates ``[deploy]`` into a
  ``Target`` (``ConfigError`` naming the field);
- ``kubernetes_manifests(target)`` -> {file name: YAML}, in apply order;
  ``kubernetes_stream(target)``: the same documents as one stream;
- ``compose_file(target)`` -> the Compose file's YAML;
- ``kubernetes_root_config(target)`` / ``compose_root_config(target)``: the
  root configuration document each one mounts.
"""

from scatter.export.compose import compose as compose_file
from scatter.export.compose import root_config as compose_root_config
from scatter.export.kubernetes import manifest_stream as kubernetes_stream
from scatter.export.kubernetes import manifests as kubernetes_manifests
from scatter.export.kubernetes import root_config as kubernetes_root_config
from scatter.export.target import Images, Target, build_target

__all__ = [
    "Images",
    "Target",
    "build_target",
    "compose_file",
    "compose_root_config",
    "kubernetes_manifests",
    "kubernetes_root_config",
    "kubernetes_stream",
]
