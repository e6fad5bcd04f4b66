"""``scatter root --config FILE``: one root server process.

Builds the shards (channels opened once, at start, one per replica) and the
policies from the configuration, registers Root.Query with raw-bytes
responses (see root.wire), and runs the shared lifecycle: health NOT_SERVING
until ready, drain on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import subprocess
import sys
import time

import grpc
from prometheus_client import CollectorRegistry

from root.config import MAX_WORKERS, RootConfig, load_root_config
from root.errors import ConfigError
from root.http_ingress import QUERY_PATH, HttpIngress
from root.metrics import root_families
from root.policies import HedgeBudget, HedgeDelay, LatencyWindow, ReplicaSet, ShardPolicy
from root.reload import ConfigWatcher
from root.scatter import Shard
from root.service import RootService
from root.snapshot import snapshot_reader
from root.status_page import render
from root.transport import Replica, channel_options
from scatter_common import logs, loop
from scatter_common.addresses import ListenError
from scatter_common.metrics import FamiliesCollector, MetricsServer
from scatter_common.serving import ServeOptions, ServiceHost, serve_until_signal

SERVICE_NAME = "scatter_gather.v1.Root"
LEAF_SERVICE_NAME = "scatter_gather.v1.Leaf"


def build_policies(config: RootConfig) -> list[ShardPolicy]:
    """One ShardPolicy per configured shard: every pure decision, no channel opened.

    A budget per shard, so that no shard's hedges spend another's tokens,
    and one reserve they share, so that the root's extra load stays bounded
    by max_extra_load of its calls plus the reserve (root/policies/budget.py).
    """
    reserve = HedgeBudget.reserve(time.monotonic, config.budget)
    return [
        ShardPolicy(
            chooser=ReplicaSet(shard.replicas, time.monotonic, config.replicas),
            latencies=LatencyWindow(config.latency_window),
            hedging=config.hedging,
            hedge_delay=HedgeDelay(config.hedging),
            budget=HedgeBudget.for_shard(time.monotonic, config.budget, reserve),
        )
        for shard in config.shards
    ]


def build_shards(config: RootConfig) -> list[Shard]:
    """One Shard per configured shard, each with its channels and policies."""
    options = channel_options(config.max_message_bytes)
    count = config.shard_count
    policies = build_policies(config)
    return [
        Shard(
            index=index,
            count=count,
            replicas=[Replica(address, options, config.upstream_tls) for address in shard.replicas],
            policy=policy,
            leaves=shard.leaves,
        )
        for (index, _), shard, policy in zip(config.leaf_spans(), config.shards, policies, strict=True)
    ]


def add_root_service(server: grpc.aio.Server, service: RootService) -> None:
    """Root.Query, and Leaf.Execute so a root can be a shard of a higher root.

    Both are registered with raw bytes in and out (no deserializer, no
    serializer). In: admission counts and refuses a request by its body's
    size before anything reads the body, so a refusal costs no parse (issue
    13); the handler then reads the body itself (``root.wire.query_request``
    for a Query, ``scatter_common.bodies.deserializer`` for the rest: a body
    that does not parse is INVALID_ARGUMENT, logged in one line and counted,
    where grpc's own deserializer would answer UNKNOWN with a traceback).
    Out: the handlers return the serialized message, spliced from the
    merge's bytes (see root.wire).
    """
    query: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
        service.query, request_deserializer=None, response_serializer=None
    )
    execute: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
        service.execute, request_deserializer=None, response_serializer=None
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(SERVICE_NAME, {"Query": query}),
            grpc.method_handlers_generic_handler(LEAF_SERVICE_NAME, {"Execute": execute}),
        ]
    )


async def serve(config: RootConfig, worker: int = 0, config_path: str | None = None) -> None:
    service = RootService(config, build_shards(config))
    service.allocator.configure()
    await service.start()
    # SIGHUP or a changed file reloads the config (root.reload).
    watcher = ConfigWatcher(config_path, service) if config_path is not None else None
    if watcher is not None:
        watcher.start()

    # The HTTP/JSON door, on this loop: its requests take the query path in process (root.http_ingress).
    ingress = HttpIngress(service, config) if config.http is not None else None
    if ingress is not None:
        bound_http = await ingress.start(reuse_port=config.workers > 1)
        print(f"scatter: root HTTP/JSON queries on http://{bound_http}{QUERY_PATH}", file=sys.stderr, flush=True)

    async def stop() -> None:
        if ingress is not None:
            await ingress.stop(config.grace_seconds)
        if watcher is not None:
            await watcher.close()
        await service.close()

    host = ServiceHost(
        ServeOptions(
            address=config.listen,
            max_message_bytes=config.max_message_bytes,
            grace_seconds=config.grace_seconds,
            reuse_port=config.workers > 1,
            tls=config.tls,
        ),
        [SERVICE_NAME, LEAF_SERVICE_NAME],
    )
    add_root_service(host.server, service)
    metrics: MetricsServer | None = None
    if config.metrics_listen:
        # The HTTP thread reads only snapshots taken on this loop (see root.snapshot).
        snapshot = snapshot_reader(service, asyncio.get_running_loop())
        registry = CollectorRegistry(auto_describe=True)
        registry.register(FamiliesCollector(lambda: root_families(snapshot())))
        metrics = MetricsServer(registry, {"/": lambda: ("text/html; charset=utf-8", render(snapshot()))})
        try:
            bound = metrics.start(worker_metrics_address(config.metrics_listen, worker))
        except ListenError as exc:
            raise ConfigError(f"root.metrics_listen: {exc}") from None
        print(f"scatter: root status page on http://{bound}/ (metrics: /metrics)", file=sys.stderr, flush=True)
    try:
        await serve_until_signal(host, role="root", on_stop=stop)
    except ListenError as exc:
        raise ConfigError(f"root.listen: {exc}") from None
    finally:
        if metrics is not None:
            metrics.stop()


def worker_metrics_address(address: str, worker: int) -> str:
    """Worker N of a multi-process root serves its metrics on the configured port + N."""
    host, _, port = address.rpartition(":")
    return address if worker == 0 or port == "0" else f"{host}:{int(port) + worker}"


def run_workers(argv: list[str], workers: int) -> int:
    """Run ``workers`` root processes on one port (SO_REUSEPORT) until a signal; forward it to all.

    Each worker is a whole root with its own policies and channels: the
    kernel spreads connections across them, which uses every core (one
    Python process is bound to one by the GIL). If a worker dies, the others
    are stopped too, so a supervisor restarts the root as a whole.
    """
    procs = [
        subprocess.Popen([sys.executable, "-m", "scatter.cli", "root", *argv, "--worker", str(i)])
        for i in range(workers)
    ]

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # SIGHUP: each worker reloads its config
        signal.signal(sig, forward)
    status = 0
    while procs:
        for proc in list(procs):
            code = proc.poll()
            if code is None:
                continue
            procs.remove(proc)
            if code != 0 and status == 0:
                status = code
                forward(signal.SIGTERM, None)
        time.sleep(0.1)
    return status


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scatter root", description="Run one root server.")
    parser.add_argument("--config", required=True, help="root configuration file (TOML)")
    parser.add_argument(
        "--workers", type=int, help="root processes sharing the port (overrides [root] workers; default 1)"
    )
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)  # set by run_workers
    parser.add_argument("--log-level", default="WARNING", type=_level, help="logging level (default WARNING)")
    parser.add_argument(
        "--log-format", choices=["text", "json"], help="text (default) or json lines ($SCATTER_LOG_FORMAT)"
    )
    args = parser.parse_args(argv)
    try:
        logs.configure(args.log_level, args.log_format)
    except logs.LogConfigError as exc:
        print(f"scatter root: {exc}", file=sys.stderr)
        return 2
    try:
        config = load_root_config(args.config)
    except ConfigError as exc:
        print(f"scatter root: {exc}", file=sys.stderr)
        return 2
    if args.workers is not None:
        if not 1 <= args.workers <= MAX_WORKERS:
            print(f"scatter root: --workers must be in [1, {MAX_WORKERS}], got {args.workers}", file=sys.stderr)
            return 2
        config = dataclasses.replace(config, workers=args.workers)
    if config.workers > 1 and args.worker is None:
        return run_workers(argv, config.workers)
    try:
        loop.run(serve(config, args.worker or 0, args.config))
    except ConfigError as exc:  # an address in the file that cannot be bound
        print(f"scatter root: {args.config}: {exc}", file=sys.stderr)
        return 2
    return 0


def _level(text: str) -> str:
    try:
        return logs.level(text)
    except logs.LogConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
