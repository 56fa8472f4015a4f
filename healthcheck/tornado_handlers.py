"""Tornado handlers: ``/healthcheck`` (readiness, Varnish probe) and ``/healthcheck/live``."""

from __future__ import annotations

import json
import os

import tornado.web

from healthcheck.formats import HEALTH_JSON, http_status, ietf_format, seed_format
from healthcheck.runner import HealthCheck


class _ReadOnly(tornado.web.RequestHandler):
    """GET and HEAD only (a load balancer may probe with either); a 405 says so in ``Allow``."""

    def set_status(self, status_code: int, reason: str | None = None) -> None:
        super().set_status(status_code, reason)
        if status_code == 405:
            self.set_header("Allow", "GET, HEAD")

    async def head(self) -> None:
        result = self.get()  # type: ignore[func-returns-value]
        if result is not None:
            await result


class HealthcheckHandler(_ReadOnly):
    """Detailed per-dependency health; ``Accept: application/health+json`` for the IETF format."""

    def initialize(self, health: HealthCheck) -> None:
        self.health = health

    def compute_etag(self) -> None:
        return None

    async def get(self) -> None:
        report = await self.health.report()
        self.set_status(http_status(report))
        self.set_header("Cache-Control", "no-store")
        if HEALTH_JSON in self.request.headers.get("Accept", ""):
            self.set_header("Content-Type", HEALTH_JSON)
            self.finish(json.dumps(ietf_format(report)))
        else:
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(seed_format(report)))


class LiveHandler(_ReadOnly):
    """Liveness: the process answers. No backend is called."""

    def compute_etag(self) -> None:
        return None

    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.finish({"status": "alive", "pid": os.getpid()})
