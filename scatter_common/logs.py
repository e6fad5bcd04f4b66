"""Logging for every process: plain text by default, one JSON object per line
when asked (``--log-format json`` or ``SCATTER_LOG_FORMAT=json``), for log
shippers. A record about a request carries its id (the trace id) in
``extra={"request_id": ...}``; both formats show it.

grpc's own noise is said in our terms here too (``CallEndedFilter``): a call
whose status grpc could not send because the call had already ended is one
INFO line, not an ERROR with a traceback.
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


# grpc.aio's servicer loop (grpc/_cython/_cygrpc/aio/server.pyx.pxi, _handle_exceptions).
GRPC_SERVER_LOGGER = "grpc._cython.cygrpc"
_CALL_ENDED = "ExecuteBatchError raised in core by servicer method"


class CallEndedFilter(logging.Filter):
    """grpc.aio's ERROR-with-traceback for a call that ended before its answer went out: one INFO line.

    When a handler answers (or aborts) a call that grpc core has already
    ended, because its deadline passed or its client went away in the same
    instant, sending the status fails and grpc logs
    ``ExecuteBatchError raised in core by servicer method [...]`` at ERROR
    with a traceback (grpc/grpc#32551: "if client closed the connection, we
    don't need to send status"). Nothing is wrong and nobody is left to tell;
    a client racing its deadline must not fill the log with tracebacks (the
    fuzz suite found it). Installed on grpc's logger, so it holds whoever
    configured the handlers.
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self._logger = logger

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(_CALL_ENDED):
            return True
        record.msg = (
            f"{record.getMessage()}: the call had ended (its deadline passed or its client went away) "
            "before its answer was sent"
        )
        record.args = None
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return self._logger.isEnabledFor(logging.INFO)


def quiet_grpc() -> None:
    """Install ``CallEndedFilter`` on grpc's server logger (once)."""
    logger = logging.getLogger(GRPC_SERVER_LOGGER)
    if not any(isinstance(f, CallEndedFilter) for f in logger.filters):
        logger.addFilter(CallEndedFilter(logger))


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
    quiet_grpc()
    root = logging.getLogger()
    if root.handlers:
        return  # the user's program configured logging itself
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(name)
