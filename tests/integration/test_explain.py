"""QueryOptions.explain: every attempt of every shard, reported to the client and drawn by `scatter query --explain`."""

from __future__ import annotations

import subprocess
import sys

from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import root_pb2, shard_pb2
from scatter.query import explain
from tests._cluster import Client, ms, probe_cluster
from tests._procs import REPO, child_env

SLOW = "shard0-replica0"  # SCATTER_REPLICA_ID of one replica of shard 0


def test_explain_reports_each_attempt_and_the_cli_draws_them() -> None:
    with probe_cluster(shards=2, replicas=2) as dep:
        client = Client(dep.root_address)
        try:
            hedged = None
            for _ in range(40):
                request = root_pb2.QueryRequest()
                request.payload.Pack(probe_pb2.ProbeRequest(replica_delays={SLOW: ms(150)}))
                request.options.explain = True
                response = client.stub.Query(request, timeout=5)
                if response.shards[0].hedge_won:
                    hedged = response
                    break
            assert hedged is not None
            plain, _, _ = client.probe()
            assert all(not shard.attempt_reports for shard in plain.shards)  # only when asked
        finally:
            client.close()
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "scatter.cli",
                "query",
                dep.root_address,
                "--type",
                "probe.v1.ProbeRequest",
                "{}",
                "--explain",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=REPO,
            env=child_env(),
        )
    shard0 = hedged.shards[0]
    attempts = list(shard0.attempt_reports)
    assert [a.kind for a in attempts][:2] == [shard_pb2.ATTEMPT_KIND_FIRST, shard_pb2.ATTEMPT_KIND_HEDGE]
    assert attempts[0].outcome == "CANCELLED" and attempts[1].outcome == "OK"
    assert attempts[0].replica == dep.children["leaf-0-0"].address
    assert attempts[0].started.ToNanoseconds() <= attempts[1].started.ToNanoseconds()
    assert attempts[1].ended.ToNanoseconds() <= hedged.latency.ToNanoseconds()
    drawn = explain(hedged)
    assert "shard 0  OK (a hedge won)" in drawn and "#2 hedge" in drawn and "CANCELLED" in drawn
    assert cli.returncode == 0, cli.stderr
    assert "#1 first" in cli.stderr and '"attemptReports"' in cli.stdout
