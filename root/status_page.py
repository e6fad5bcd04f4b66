"""The root's human status page: one table row per replica, refreshed on reload.

Rendered on the HTTP thread from a ``RootSnapshot``, the same one the
metrics read (``root.snapshot``), never from the live service: the
percentiles are sorted here, from a copy of each shard's window. No
JavaScript, so it works in any browser, curl or a terminal browser.
"""

from __future__ import annotations

import html

from protos.scatter_gather.v1 import shard_pb2
from root.snapshot import RootSnapshot


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def render(snapshot: RootSnapshot) -> bytes:
    listen = snapshot.listen
    total_requests = sum(n for _, n in snapshot.requests_by_code)
    codes = ", ".join(f"{code} {n}" for code, n in snapshot.requests_by_code) or "none yet"
    rows = []
    for shard in snapshot.shards:
        hedge_rate = shard.hedges_sent / shard.calls if shard.calls else 0.0
        ok = shard.outcome(shard_pb2.SHARD_STATUS_OK)
        p50, p99 = shard.latencies.percentiles(0.5, 0.99)
        replicas = shard.replicas
        for replica in replicas:
            if replica.ejected and replica.ejected_until is not None:
                back_in = replica.ejected_until - snapshot.now
                health = f'<td class="bad">ejected, probed; back in {back_in:.0f} s at the latest</td>'
            elif replica.down:
                health = '<td class="warn">NOT_SERVING (loading or draining)</td>'
            elif replica.suspect:
                health = '<td class="warn">suspect: lost a race, avoided</td>'
            elif replica.consecutive_failures:
                health = f'<td class="warn">{replica.consecutive_failures} failures in a row</td>'
            else:
                health = '<td class="good">ok</td>'
            first = replica.index == 0
            shard_cells = (
                f'<td rowspan="{len(replicas)}">{shard.index}</td>'
                f'<td rowspan="{len(replicas)}">{shard.calls}</td>'
                f'<td rowspan="{len(replicas)}">{ok}</td>'
                f'<td rowspan="{len(replicas)}">{_ms(p50)}</td>'
                f'<td rowspan="{len(replicas)}">{_ms(p99)}</td>'
                f'<td rowspan="{len(replicas)}">{hedge_rate:.1%} ({shard.hedges_won} won)</td>'
                if first
                else ""
            )
            rows.append(
                f"<tr>{shard_cells}<td>{html.escape(replica.address)}</td>{health}"
                f"<td>{replica.outstanding}</td><td>{_ms(replica.ewma)}</td><td>{replica.ejections}</td></tr>"
            )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>scatter root {html.escape(listen)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th {{ background: #f3f3f3; }} td.good {{ color: #176b24; }} td.warn {{ color: #a35d00; }}
td.bad {{ color: #b00020; font-weight: bold; }} code {{ background: #f3f3f3; padding: 1px 4px; }}
</style></head><body>
<h1>scatter root on <code>{html.escape(listen)}</code></h1>
<p>Up {snapshot.uptime:.0f} s. Requests: {total_requests} ({html.escape(codes)}); in flight {snapshot.in_flight}
of {snapshot.max_in_flight}; shed {snapshot.shed}. Merge: <code>{html.escape(snapshot.merge_address)}</code>.
min_coverage {snapshot.min_coverage:g}; hedging {"on" if snapshot.hedging_enabled else "off"}.
Latencies are of successful calls; p50/p99 over the last {snapshot.latency_window} per shard.</p>
<table>
<tr><th>shard</th><th>calls</th><th>answered</th><th>p50 ms</th><th>p99 ms</th><th>hedge rate</th>
<th>replica</th><th>health</th><th>outstanding</th><th>latency EWMA ms</th><th>ejections</th></tr>
{"".join(rows)}
</table>
<p>Metrics for Prometheus: <a href="/metrics">/metrics</a>. Reload to refresh.</p>
</body></html>
"""
    return page.encode()
