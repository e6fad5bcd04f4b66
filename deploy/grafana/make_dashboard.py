"""Writes deploy/grafana/scatter-gather.json, the Grafana dashboard of every process's metrics.

    python deploy/grafana/make_dashboard.py      # rewrites the JSON next to this file

The dashboard is generated rather than edited by hand so that every panel's
query is a line here, and the test (tests/integration/test_dashboard.py)
checks that the committed JSON is this script's output and that every
metric name its queries use is exported by a running deployment. The
datasource is an input (``DS_PROMETHEUS``), chosen when the dashboard is
imported; ``$shard`` filters the per-shard and per-replica panels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("scatter-gather.json")
DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
WINDOW = "$__rate_interval"


def q(expr: str, legend: str) -> dict[str, Any]:
    return {"expr": expr, "legendFormat": legend}


def quantiles(metric: str, by: str = "", legend: str = "", match: str = "") -> list[dict[str, Any]]:
    group = f"le{', ' + by if by else ''}"
    return [
        q(
            f"histogram_quantile({p}, sum by ({group}) (rate({metric}_bucket{match}[{WINDOW}])))",
            f"p{round(p * 100)}{' ' + legend if legend else ''}",
        )
        for p in (0.5, 0.99)
    ]


# (title, unit, targets): one time-series panel each, two per row.
PANELS: list[tuple[str, str, list[dict[str, Any]]]] = [
    (
        "Root: requests by gRPC code",
        "reqps",
        [q(f"sum by (code) (rate(scatter_root_requests_total[{WINDOW}]))", "{{code}}")],
    ),
    (
        "Root: latency (arrival to answer, OK requests)",
        "s",
        quantiles("scatter_root_request_duration_seconds"),
    ),
    (
        "Root: coverage of answered requests (mean)",
        "percentunit",
        [
            q(
                f"sum(rate(scatter_root_coverage_ratio_sum[{WINDOW}]))"
                f" / sum(rate(scatter_root_coverage_ratio_count[{WINDOW}]))",
                "answered / total",
            )
        ],
    ),
    (
        "Root: in flight and shed",
        "short",
        [
            q("sum(scatter_root_in_flight)", "in flight"),
            q(f"sum(rate(scatter_root_shed_total[{WINDOW}]))", "shed / s"),
        ],
    ),
    (
        "Hedges: sent, won, refused by the budget (per s)",
        "short",
        [
            q(f'sum(rate(scatter_root_hedges_sent_total{{shard=~"$shard"}}[{WINDOW}]))', "sent"),
            q(f'sum(rate(scatter_root_hedges_won_total{{shard=~"$shard"}}[{WINDOW}]))', "won"),
            q(f'sum(rate(scatter_root_hedge_budget_exhausted_total{{shard=~"$shard"}}[{WINDOW}]))', "refused"),
            q(f'sum(rate(scatter_root_failovers_total{{shard=~"$shard"}}[{WINDOW}]))', "failovers"),
        ],
    ),
    (
        "Hedge rate (extra leaf calls per shard call)",
        "percentunit",
        [
            q(
                f'sum by (shard) (rate(scatter_root_shard_attempts_total{{shard=~"$shard"}}[{WINDOW}]))'
                f' / sum by (shard) (rate(scatter_root_shard_calls_total{{shard=~"$shard"}}[{WINDOW}])) - 1',
                "shard {{shard}}",
            )
        ],
    ),
    (
        "Shards: latency (first attempt to answer)",
        "s",
        quantiles("scatter_root_shard_duration_seconds", "shard", "shard {{shard}}", '{shard=~"$shard"}'),
    ),
    (
        "Shards: outcomes other than OK (per s)",
        "short",
        [
            q(
                "sum by (shard, status) "
                f'(rate(scatter_root_shard_results_total{{shard=~"$shard", status!="OK"}}[{WINDOW}]))',
                "shard {{shard}} {{status}}",
            )
        ],
    ),
    (
        "Replicas: calls started (per s)",
        "short",
        [
            q(
                f'sum by (shard, replica) (rate(scatter_root_replica_attempts_total{{shard=~"$shard"}}[{WINDOW}]))',
                "{{shard}} {{replica}}",
            )
        ],
    ),
    (
        "Replicas: outstanding calls",
        "short",
        [q('scatter_root_replica_outstanding{shard=~"$shard"}', "{{shard}} {{replica}}")],
    ),
    (
        "Replicas: ejected now, ejections, probes that brought one back",
        "short",
        [
            q(
                'sum by (shard, replica) (scatter_root_replica_ejected{shard=~"$shard"})',
                "ejected {{shard}} {{replica}}",
            ),
            q(
                "sum by (shard, replica) "
                f'(increase(scatter_root_replica_ejections_total{{shard=~"$shard"}}[{WINDOW}]))',
                "ejections {{shard}} {{replica}}",
            ),
            q(
                f'sum by (shard, replica) (increase(scatter_root_replica_returns_total{{shard=~"$shard"}}[{WINDOW}]))',
                "returned {{shard}} {{replica}}",
            ),
            q(
                f'sum by (shard, replica) (increase(scatter_root_replica_probes_total{{shard=~"$shard"}}[{WINDOW}]))',
                "probes {{shard}} {{replica}}",
            ),
        ],
    ),
    (
        "Discovery: replica sets applied, failed lookups",
        "short",
        [
            q(
                f'sum by (shard) (increase(scatter_root_membership_changes_total{{shard=~"$shard"}}[{WINDOW}]))',
                "changes {{shard}}",
            ),
            q(
                f'sum by (shard) (increase(scatter_root_discovery_failures_total{{shard=~"$shard"}}[{WINDOW}]))',
                "failures {{shard}}",
            ),
        ],
    ),
    (
        "Leaves: calls by outcome (per s)",
        "short",
        [q(f"sum by (outcome) (rate(scatter_leaf_calls_total[{WINDOW}]))", "{{outcome}}")],
    ),
    (
        "Leaves: in flight, by process",
        "short",
        [q("scatter_leaf_in_flight", "{{instance}}")],
    ),
    ("Leaves: call latency", "s", quantiles("scatter_leaf_call_duration_seconds")),
    (
        "Merge: calls by outcome (per s), in flight",
        "short",
        [
            q(f"sum by (outcome) (rate(scatter_merge_calls_total[{WINDOW}]))", "{{outcome}}"),
            q("sum(scatter_merge_in_flight)", "in flight"),
        ],
    ),
    ("Merge: call latency", "s", quantiles("scatter_merge_call_duration_seconds")),
]


def dashboard() -> dict[str, Any]:
    panels = []
    for n, (title, unit, targets) in enumerate(PANELS):
        panels.append(
            {
                "id": n + 1,
                "type": "timeseries",
                "title": title,
                "datasource": DS,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (n % 2), "y": 8 * (n // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [{**t, "datasource": DS, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)],
            }
        )
    return {
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource", "pluginId": "prometheus"}],
        "title": "scatter-gather",
        "uid": "scatter-gather",
        "description": "Root, leaves and merge of a scatter-gather deployment (docs/operations.md).",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "tags": ["scatter-gather"],
        "templating": {
            "list": [
                {
                    "name": "shard",
                    "label": "shard",
                    "type": "query",
                    "datasource": DS,
                    "query": "label_values(scatter_root_shard_calls_total, shard)",
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                    "refresh": 2,
                }
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
