"""``scatter up CONFIG.toml``: run a local deployment until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from scatter.runtime import ConfigError, Deployment, StartupError, load_deployment
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
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    total = spec.shards * spec.replicas
    print(f"scatter up: starting merge and {total} leaves ({spec.shards} shards x {spec.replicas} replicas)...")
    try:
        with Deployment(spec, log_dir=args.log_dir, quiet=False) as dep:
            print(f"scatter up: logs in {dep.run_dir}")
            print(f"scatter up: status page http://{dep.children['root'].metrics_address}/")
            print(f"scatter up: root serving on {dep.root_address} (Ctrl-C to stop)", flush=True)
            stop.wait()
            print("scatter up: stopping...", flush=True)
    except (StartupError, OSError) as exc:  # OSError: a child that could not be started at all
        print(f"scatter up: {exc}", file=sys.stderr)
        return 1
    print("scatter up: stopped")
    return 0
