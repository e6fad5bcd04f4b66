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


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
FORMAT_VARIABLE = "SCATTER_LOG_FORMAT"


class LogConfigError(ValueError):
    """A log level or format that does not exist; the message names where it came from."""


def level(text: str) -> str:
    """A level name, any case, as ``LEVELS`` spells it; else LogConfigError (an argparse ``type``)."""
    name = text.upper()
    if name not in LEVELS:
        raise LogConfigError(f"expected one of {', '.join(LEVELS)} (any case), got {text!r}")
    return name


def chosen_format(log_format: str | None = None) -> str:
    """``log_format``, else $SCATTER_LOG_FORMAT, else "text"; LogConfigError naming the source if neither is known."""
    if log_format is not None:
        if log_format.lower() not in FORMATS:
            raise LogConfigError(f"log format must be 'text' or 'json', got {log_format!r}")
        return log_format.lower()
    from_env = os.environ.get(FORMAT_VARIABLE) or "text"
    if from_env.lower() not in FORMATS:
        raise LogConfigError(f"environment variable {FORMAT_VARIABLE}={from_env!r}: expected 'text' or 'json'")
    return from_env.lower()


def configure(level_name: str = "INFO", log_format: str | None = None) -> None:
    """Set up the root logger once; ``log_format`` defaults to $SCATTER_LOG_FORMAT or "text".

    Raises LogConfigError for an unknown level or format (also when logging
    was configured already, so a bad $SCATTER_LOG_FORMAT is never ignored).
    """
    chosen = chosen_format(log_format)
    name = level(level_name)
    root = logging.getLogger()
    if root.handlers:
        return  # the user's program configured logging itself
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(name)
