"""``scatter up CONFIG.toml``: run a local deployment until Ctrl-C or SIGTERM.

A signal stops it at any moment, also while the children are starting: the
first SIGINT or SIGTERM stops every child gracefully (the root first), a
second one SIGKILLs what is still running. Exit status: 0 once stopped on a
signal, 1 when the deployment could not start, 2 for a bad deployment file.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from scatter.runtime import ConfigError, Deployment, StartupError, StartupInterrupted, load_deployment
from scatter.runtime.spec import check_can_start
from scatter_common import logs


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scatter up", description="Start root, merge and every leaf replica of a deployment file."
    )
    parser.add_argument("config", type=Path, help="deployment file (TOML); see docs/configuration.md")
    parser.add_argument("--log-dir", type=Path, help="folder for the children's logs (default: a temporary one)")
    args = parser.parse_args(argv)
    try:
        logs.chosen_format()  # the children inherit $SCATTER_LOG_FORMAT: refuse a bad one before starting them
        spec = load_deployment(args.config)
        check_can_start(spec)
    except (ConfigError, logs.LogConfigError) as exc:
        print(f"scatter up: {exc}", file=sys.stderr)
        return 2
    dep = Deployment(spec, log_dir=args.log_dir, quiet=False)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        # Only sets flags: the main thread notices within one health-check poll,
        # whether it is starting children, serving or already stopping.
        if stop.is_set():
            print("scatter up: second signal: killing the children now", file=sys.stderr, flush=True)
        stop.set()
        dep.interrupt()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    processes = len(spec.process_shards())
    total = processes * spec.replicas
    per = f", {spec.shards_per_process} per process" if spec.shards_per_process > 1 else ""
    print(f"scatter up: starting merge and {total} leaves ({spec.shards} shards{per} x {spec.replicas} replicas)...")
    try:
        with dep:
            print(f"scatter up: logs in {dep.run_dir}")
            print(f"scatter up: status page http://{dep.children['root'].metrics_address}/")
            if dep.children["root"].http_address:
                print(f"scatter up: HTTP/JSON queries on http://{dep.children['root'].http_address}/v1/query")
            print(f"scatter up: root serving on {dep.root_address} (Ctrl-C to stop)", flush=True)
            stop.wait()
            print("scatter up: stopping...", flush=True)
    except StartupInterrupted:
        print("scatter up: interrupted while starting; every child stopped", flush=True)
        return 0
    except (StartupError, OSError) as exc:  # OSError: a child that could not be started at all
        print(f"scatter up: {exc}", file=sys.stderr)
        return 1
    print("scatter up: stopped")
    return 0
