"""Structured logs: one JSON object per line on stderr, for both services and the ingest CLI.

    {"time": "2026-01-01T12:00:00.123+00:00", "level": "INFO", "service": "retriever",
     "logger": "kgrag.access", "message": "POST /v1/search 200 12.3ms", "request_id": "..."}

`ServiceMiddleware` sets `request_id` (a ContextVar) for the whole request, so every line logged
while the request runs, in its task or in the threads Starlette runs sync endpoints on, carries
the id; a record's own `extra={"request_id": ...}` wins. uvicorn's loggers go through the same
handler; its access log is off (`access_log=False`): the middleware writes the access lines.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class RequestIdFilter(logging.Filter):
    """Gives a record without a `request_id` the id of the request being served, if any."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record comes (tests swap it for a capture)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if request_id := getattr(record, "request_id", None):
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(service: str, level: int | str = logging.INFO) -> None:
    """Route every logger (uvicorn's included) to one JSON handler on stderr; calling it again
    replaces that handler (the ingest CLI's `main` runs many times in the tests)."""
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
