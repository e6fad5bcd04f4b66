"""Reading the HTTP side of a process: a page, and one series of a Prometheus exposition."""

from __future__ import annotations

import re
import urllib.request


def fetch(address: str, path: str) -> str:
    """The body of ``http://ADDRESS/PATH`` as text."""
    with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in a Prometheus text exposition."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if found == labels:
            return float(match.group(2))
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")
