"""Prometheus metrics of one renderer process (DESIGN §6)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from healthcheck import CheckResult

BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}


class Metrics:
    """Every metric the renderer records, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "pagecache_requests", "Pages answered, by tier and HTTP status", ["tier", "status"], registry=r
        )
        self.mongodb_reads = Counter("pagecache_mongodb_reads", "Reads sent to MongoDB", registry=r)
        self.backend_errors = Counter(
            "pagecache_backend_errors",
            "Backend calls that failed, by backend and error",
            ["backend", "error"],
            registry=r,
        )
        self.coalesced = Counter(
            "pagecache_coalesced_requests",
            "Cold requests that waited for another fetch instead of reading MongoDB",
            ["level"],
            registry=r,
        )
        self.stale_served = Counter(
            "pagecache_stale_pages_served", "Stale pages served because MongoDB failed", ["reason"], registry=r
        )
        self.stale_age = Gauge(
            "pagecache_stale_page_age_seconds", "Age of the oldest stale page served since start", registry=r
        )
        self.breaker_state = Gauge(
            "pagecache_breaker_state", "Breaker state: 0 closed, 1 half-open, 2 open", ["backend"], registry=r
        )
        self.breaker_transitions = Counter(
            "pagecache_breaker_transitions", "Breaker state changes", ["backend", "to_state"], registry=r
        )
        self.health_checks = Counter(
            "pagecache_health_checks",
            "Healthcheck checks run against a dependency",
            ["component", "passed"],
            registry=r,
        )
        self.purges = Counter("pagecache_purges", "Varnish purges by node and result", ["node", "result"], registry=r)
        self.purge_queue = Gauge("pagecache_purge_queue_length", "Purges waiting for an unreachable node", registry=r)
        self.publishes = Counter(
            "pagecache_publishes", "Publish API calls by action and HTTP status", ["action", "status"], registry=r
        )
        self.render_seconds = Histogram(
            "pagecache_cold_render_seconds", "MongoDB read + render time of cold pages", registry=r
        )

    def breaker_changed(self, backend: str, old: str, new: str) -> None:
        """Listener for ``AsyncCircuitBreaker`` transitions."""
        self.breaker_state.labels(backend).set(BREAKER_STATES.get(new, -1))
        self.breaker_transitions.labels(backend, new).inc()

    def stale_page_served(self, reason: str, age_seconds: float) -> None:
        """Count a stale page and keep the oldest age seen, so hidden outages stay visible."""
        self.stale_served.labels(reason).inc()
        current = self.stale_age._value.get()
        if age_seconds > current:
            self.stale_age.set(age_seconds)

    def health_checked(self, result: CheckResult) -> None:
        """Listener for healthcheck runs: one count per check that reached its dependency."""
        self.health_checks.labels(result.component, str(result.passed).lower()).inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
