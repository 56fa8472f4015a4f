"""JSON logs, each line with the id of the request it belongs to (``request_id``, set by
``renderer.app`` when the request arrives; the access log is written there too)."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

request_id: ContextVar[str] = ContextVar("request_id", default="-")


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def configure(level: str = "INFO") -> None:
    """JSON lines on stderr at ``level`` (the ``LOG_LEVEL`` setting), each with the current request id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s %(request_id)s",
            rename_fields={"levelname": "level", "asctime": "time", "name": "logger", "process": "pid"},
        )
    )
    handler.addFilter(_RequestId())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("tornado.access").setLevel(logging.WARNING)  # our access line replaces it
