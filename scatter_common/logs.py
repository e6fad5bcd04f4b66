"""Logging for every process: plain text by default, one JSON object per line
when asked (``--log-format json`` or ``SCATTER_LOG_FORMAT=json``), for log
shippers. A record about a request carries its id (the trace id) in
``extra={"request_id": ...}``; both formats show it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{text} [request {request_id}]" if request_id else text


def configure(level: str = "INFO", log_format: str | None = None) -> None:
    """Set up the root logger once; ``log_format`` defaults to $SCATTER_LOG_FORMAT or "text"."""
    chosen = (log_format or os.environ.get("SCATTER_LOG_FORMAT") or "text").lower()
    if chosen not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', got {chosen!r}")
    root = logging.getLogger()
    if root.handlers:
        return  # the user's program configured logging itself
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
