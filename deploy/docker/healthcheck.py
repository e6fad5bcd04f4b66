"""``scatter-health ADDRESS``: exit 0 when the server at ADDRESS reports SERVING.

The container image's health check, for the places that cannot speak gRPC
health themselves: Docker/compose ``healthcheck`` and a Kubernetes ``exec``
probe on a Unix socket (the kubelet's native ``grpc`` probe takes a port only).
It asks the standard ``grpc.health.v1.Health/Check`` for the overall service
(``""``), exactly as a ``grpc:`` probe does.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> int:
    parser = argparse.ArgumentParser(prog="scatter-health", description=__doc__.splitlines()[0].strip("`"))
    parser.add_argument("address", help="'host:port' or 'unix:/path'")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the answer (default 2)")
    args = parser.parse_args()
    with grpc.insecure_channel(args.address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=args.timeout)
        except grpc.RpcError as exc:
            print(f"scatter-health: {args.address}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if status != "SERVING":
        print(f"scatter-health: {args.address}: {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
