"""What a process has cost so far, read from Linux's /proc: CPU time and memory.

The one place the benchmarks read procfs. CPU time is user + system of
every thread of the process (grpc's poller and executor threads included),
so a difference of two readings around a run is what the run cost that
process. Linux only; the benchmarks that report these numbers run there.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

__all__ = ["cpu_seconds", "memory_kib", "tree_cpu_seconds"]

_TICKS = os.sysconf("SC_CLK_TCK")
MEMORY_KEYS = ("VmRSS", "RssAnon", "RssFile", "VmHWM")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (all its threads)."""
    # The command name in field 2 may hold spaces and parentheses: split after its last ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its direct children (a root's ``--workers`` processes)."""
    total = cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = task / "children"
        if children.exists():
            for child in children.read_text().split():
                with contextlib.suppress(FileNotFoundError):  # exited between the two reads
                    total += cpu_seconds(int(child))
    return total


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile (memory-mapped file pages touched) and VmHWM of ``pid``, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return {key: int(m.group(1)) for key in MEMORY_KEYS if (m := re.search(rf"^{key}:\s+(\d+) kB", status, re.M))}
