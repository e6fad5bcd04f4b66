"""The embedded local runtime: ``scatter up`` runs a whole deployment as
local processes (a pod supervisor), no container engine needed.

Public face, for the demo, the benchmarks and the tests:

- ``load_deployment`` / ``parse_deployment`` read a deployment file into a
  ``DeploymentSpec`` (raising ``ConfigError`` with the field to fix);
  ``shard_env`` is what a leaf process finds in its environment about its
  shards (``scatter export`` sets the same), ``shards_text`` their name;
- ``Deployment(spec)`` starts it, waits for health, restarts crashed
  children and stops every process by its own handle (a context manager);
  ``StartupError`` when it cannot come up, ``StartupInterrupted`` when
  ``interrupt()`` (a signal) stopped it while it was coming up;
- ``Child`` is one supervised process, ``free_port`` and ``check_health``
  the two probes the supervisor itself uses, ``stop_children`` how it
  stops a group of children (SIGTERM, a bounded wait, SIGKILL);
- ``plan_front`` / ``run_nginx``: the nginx admission front of ``scatter
  front`` (its config derived from the root's, and nginx run by its handle).
"""

from root.errors import ConfigError
from scatter.front import plan_front, run_nginx
from scatter.runtime.spec import DeploymentSpec, load_deployment, parse_deployment, shard_env, shards_text
from scatter.runtime.supervisor import (
    Child,
    Deployment,
    StartupError,
    StartupInterrupted,
    check_health,
    free_port,
    stop_children,
)

__all__ = [
    "Child",
    "ConfigError",
    "Deployment",
    "DeploymentSpec",
    "StartupError",
    "StartupInterrupted",
    "check_health",
    "free_port",
    "load_deployment",
    "parse_deployment",
    "plan_front",
    "run_nginx",
    "shard_env",
    "shards_text",
    "stop_children",
]
