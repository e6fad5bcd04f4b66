"""The root's human status page: one table row per replica, refreshed on reload.

Rendered on the HTTP thread from a ``RootSnapshot``, the same one the
metrics read (``root.snapshot``), never from the live service: the
percentiles are sorted here, from a copy of each shard's window. No
JavaScript, so it works in any browser, curl or a terminal browser.
"""

from __future__ import annotations

import html
import time

from protos.scatter_gather.v1 import shard_pb2
from root.snapshot import RootSnapshot, SlowRequest


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


# Attempt colours by kind; a loser (cancelled) is drawn pale, a failure red-edged.
_KIND_COLOUR = {"first": "#4a7fc1", "hedge": "#e09a2c", "failover": "#8e5bb5"}
_WIDTH = 640  # px of the timeline's time axis
_ROW = 16  # px per shard


def _timeline(request: SlowRequest) -> str:
    """An inline SVG: one row per shard, one bar per attempt, from arrival to the answer."""
    shards = sorted({a.shard for a in request.attempts})
    if not shards:
        return ""
    span_ms = max([request.elapsed_ms, *(a.end_ms for a in request.attempts if a.end_ms == a.end_ms)]) or 1.0
    scale = _WIDTH / span_ms
    rows = {shard: n for n, shard in enumerate(shards)}
    parts = []
    for n, shard in enumerate(shards):
        y = n * _ROW
        parts.append(f'<text x="0" y="{y + 12}" class="lbl">shard {shard}</text>')
    for a in request.attempts:
        y = rows[a.shard] * _ROW + 2
        end = a.end_ms if a.end_ms == a.end_ms else request.elapsed_ms
        x = 70 + a.start_ms * scale
        w = max(2.0, (end - a.start_ms) * scale)
        colour = _KIND_COLOUR.get(a.kind, "#777")
        opacity = "0.35" if a.outcome == "CANCELLED" else "1"
        stroke = ' stroke="#b00020" stroke-width="2"' if a.outcome not in ("OK", "CANCELLED") else ""
        title = (
            f"shard {a.shard} attempt {a.attempt} ({a.kind}) on {a.replica}: {a.start_ms:.1f}-{end:.1f} ms, {a.outcome}"
        )
        parts.append(
            f'<rect class="attempt" data-kind="{html.escape(a.kind)}" data-outcome="{html.escape(a.outcome)}"'
            f' x="{x:.1f}" y="{y}" width="{w:.1f}" height="{_ROW - 4}" fill="{colour}"'
            f' fill-opacity="{opacity}"{stroke}><title>{html.escape(title)}</title></rect>'
        )
    height = len(shards) * _ROW
    return (
        f'<svg class="timeline" width="{_WIDTH + 80}" height="{height}" role="img"'
        f' aria-label="attempts of request {html.escape(request.request_id)}">{"".join(parts)}</svg>'
    )


def _slowest(snapshot: RootSnapshot) -> str:
    if not snapshot.slowest:
        return "<p>No request yet.</p>"
    items = []
    for request in snapshot.slowest:
        rid = html.escape(request.request_id)
        if snapshot.trace_url:
            url = html.escape(snapshot.trace_url.replace("{trace_id}", request.request_id), quote=True)
            rid = f'<a href="{url}">{rid}</a>'
        when = time.strftime("%H:%M:%S", time.localtime(request.at))
        items.append(
            f'<div class="slow"><p><code>{rid}</code> at {when}: {request.elapsed_ms:.1f} ms, '
            f"{html.escape(request.code)}, {request.answered}/{request.total} shards</p>{_timeline(request)}</div>"
        )
    return "".join(items)


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
svg.timeline {{ display: block; margin: 0 0 1em 0; }} svg .lbl {{ font-size: 11px; fill: #555; }}
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
<h2>Slowest requests of the last five minutes</h2>
<p>One row per shard, one bar per attempt from its start to its end:
<span style="color:#4a7fc1">first</span>, <span style="color:#e09a2c">hedge</span>,
<span style="color:#8e5bb5">failover</span>; pale: cancelled (it lost, or was cut off);
red edge: failed. Hover a bar for its replica and times.</p>
{_slowest(snapshot)}
<p>Metrics for Prometheus: <a href="/metrics">/metrics</a>. Reload to refresh.</p>
</body></html>
"""
    return page.encode()
