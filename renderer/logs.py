"""JSON logs: one line per request, and a request id that follows the request through every tier."""

from __future__ import annotations

import logging
import os
import sys
import uuid
from contextvars import ContextVar

import tornado.web
from pythonjsonlogger.json import JsonFormatter

from renderer import contract

request_id: ContextVar[str] = ContextVar("request_id", default="-")
access_log = logging.getLogger("pagecache.access")


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def configure() -> None:
    """JSON lines on stderr at ``LOG_LEVEL`` (default INFO), each with the current request id."""
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
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    logging.getLogger("tornado.access").setLevel(logging.WARNING)  # our access line replaces it


def begin_request(handler: tornado.web.RequestHandler) -> str:
    """Take the request's id from ``X-Request-Id`` (Varnish sets one) or make one; echo it back."""
    rid = handler.request.headers.get("X-Request-Id") or uuid.uuid4().hex[:16]
    request_id.set(rid)
    handler.set_header("X-Request-Id", rid)
    return rid


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's ``log_function``: one JSON line per request."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    request = handler.request
    access_log.info(
        "request",
        extra={
            "method": request.method,
            "path": request.path,
            "status": handler.get_status(),
            "duration_ms": round(request.request_time() * 1000, 2),
            "tier": handler._headers.get(contract.HEADER_TIER, ""),
            "request_id": handler._headers.get("X-Request-Id") or request.headers.get("X-Request-Id", "-"),
        },
    )
