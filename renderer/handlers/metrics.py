"""``GET /metrics`` in Prometheus text format."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST

from renderer.handlers.allow import AllowOn405
from renderer.services import Services


class MetricsHandler(AllowOn405):
    """The process's metrics registry."""

    def initialize(self, services: Services) -> None:
        self.services = services

    def compute_etag(self) -> None:
        return None

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(self.services.metrics.exposition())
