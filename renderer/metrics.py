"""Prometheus metrics of one renderer process."""

from __future__ import annotations

import os
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values

from healthcheck import CheckResult
from renderer.concurrency_limit import AdaptiveLimit

# Who a MongoDB read is for: "reader" (a request waits on it), "refresh" (a background refresh of
# a page in its revalidation window) or "editor" (the publish path). Set by whoever starts the work.

BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0)
BACKEND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def enable_multiprocess(directory: str) -> None:
    """Share metrics between forked renderer processes (prometheus-client's multiprocess mode).

    Call before the processes fork and before any ``Metrics`` exists; ``/metrics`` on any process
    then reports the sum over all of them.
    """
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def multiprocess_dir() -> str | None:
    """The shared metrics directory, when several processes serve."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class _Children(dict[tuple[str, int], Counter]):
    """Labelled children of a counter, each made on first use."""

    def __init__(self, counter: Counter) -> None:
        super().__init__()
        self._counter = counter

    def __missing__(self, labels: tuple[str, int]) -> Counter:
        child = self[labels] = self._counter.labels(*labels)
        return child


class Metrics:
    """Every metric the renderer records, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "pagecache_requests", "Pages answered, by tier and HTTP status", ["tier", "status"], registry=r
        )
        # ``metrics.answered[tier, status].inc()``: each child looked up once, not on every request.
        self.answered = _Children(self.requests)
        self.mongodb_reads = Counter(
            "pagecache_mongodb_reads",
            "Reads sent to MongoDB, by path: a reader waiting, a background refresh, the editors' API, "
            "the latest-news box's own refresh",
            ["path"],
            registry=r,
        )
        self.refreshes = Counter(
            "pagecache_background_refreshes",
            "Background refreshes of pages in their revalidation window, by outcome",
            ["outcome"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "pagecache_request_seconds",
            "Time to answer a page request, by the tier that answered",
            ["tier"],
            registry=r,
            buckets=REQUEST_BUCKETS,
        )
        self.shed = Counter(
            "pagecache_mongodb_shed",
            "MongoDB reads over the concurrency limit: served stale at once, queued, or 503",
            ["outcome"],
            registry=r,
        )
        self.mongodb_limit = Gauge(
            "pagecache_mongodb_concurrency_limit",
            "Adaptive limit on concurrent MongoDB reads (summed over processes)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.mongodb_in_flight = Gauge(
            "pagecache_mongodb_in_flight",
            "MongoDB reads in flight (summed over processes)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.mongodb_latency_estimate = Gauge(
            "pagecache_mongodb_latency_estimate_seconds",
            "The limit's view of MongoDB read latency: short (recent) and long (usual)",
            ["window"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.revalidating_hits = Counter(
            "pagecache_revalidating_hits",
            "Pages answered from Redis past their freshness while a refresh runs",
            registry=r,
        )
        self.invalidation_gaps = Counter(
            "pagecache_invalidation_gaps",
            "Times the process may have missed invalidations (subscribed again, or its connection went "
            "deaf) and dropped every in-process copy",
            registry=r,
        )
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
        # A histogram, not a high-water mark: an alert on it resolves once old pages stop being
        # served (a gauge of the oldest age ever seen paged until every process restarted).
        self.stale_age = Histogram(
            "pagecache_stale_page_age_seconds",
            "Age of each stale page served (since it was rendered)",
            buckets=(1, 10, 60, 300, 900, 3600, 6 * 3600, 24 * 3600),
            registry=r,
        )
        self.breaker_state = Gauge(
            "pagecache_breaker_state",
            "Breaker state: 0 closed, 1 half-open, 2 open (the most open of the live processes)",
            ["backend"],
            registry=r,
            multiprocess_mode="livemax",
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
        self.purges = Counter(
            "pagecache_purges",
            "CDN purges sent from the purge log, by target and result",
            ["node", "result"],
            registry=r,
        )
        self.purges_dropped = Counter(
            "pagecache_purges_dropped",
            "CDN purges given up: older than any object they could remove",
            ["reason"],
            registry=r,
        )
        self.backend_latency = Histogram(
            "pagecache_backend_call_seconds",
            "One attempt of one backend call, success or not",
            ["backend"],
            registry=r,
            buckets=BACKEND_BUCKETS,
        )
        self.publishes = Counter(
            "pagecache_publishes", "Publish API calls by action and HTTP status", ["action", "status"], registry=r
        )
        self.retries = Counter(
            "pagecache_backend_retries",
            "Retries of backend calls: spent, or refused by the retry budget",
            ["backend", "outcome"],
            registry=r,
        )
        self.render_errors = Counter("pagecache_render_errors", "Pages whose template failed to render", registry=r)
        self.articles_left_out = Counter(
            "pagecache_articles_left_out",
            "Articles left out of a listing: a document no teaser can show (no title, not a date)",
            registry=r,
        )
        self.undecodable = Counter(
            "pagecache_undecodable_cache_values",
            "Cached values that could not be decoded (treated as misses and repaired)",
            registry=r,
        )
        self.render_seconds = Histogram(
            "pagecache_cold_render_seconds", "MongoDB read + render time of cold pages", registry=r
        )

    def retried(self, backend: str) -> Callable[[bool], None]:
        """Listener for ``Guard`` retries of ``backend``."""
        spent, refused = self.retries.labels(backend, "spent"), self.retries.labels(backend, "refused")
        return lambda allowed: (spent if allowed else refused).inc()

    def mongodb_limit_changed(self, limit: AdaptiveLimit) -> None:
        """Publish the concurrency limit's state."""
        self.mongodb_limit.set(int(limit.limit))
        self.mongodb_in_flight.set(limit.in_flight)
        self.mongodb_latency_estimate.labels("short").set(limit.short_rtt)
        self.mongodb_latency_estimate.labels("long").set(limit.long_rtt)

    def mongodb_read(self, caller: str) -> None:
        """Count one MongoDB read for ``caller`` (``Deadline.caller``: the path that runs it)."""
        self.mongodb_reads.labels(caller).inc()

    def breaker_changed(self, backend: str, old: str, new: str) -> None:
        """Listener for ``AsyncCircuitBreaker`` transitions."""
        self.breaker_state.labels(backend).set(BREAKER_STATES.get(new, -1))
        self.breaker_transitions.labels(backend, new).inc()

    def stale_page_served(self, reason: str, age_seconds: float) -> None:
        """Count a stale page, by reason and by age."""
        self.stale_served.labels(reason).inc()
        self.stale_age.observe(age_seconds)

    def health_checked(self, result: CheckResult) -> None:
        """Listener for healthcheck runs: one count per check that reached its dependency."""
        self.health_checks.labels(result.component, str(result.passed).lower()).inc()

    def exposition(self) -> bytes:
        """All metrics in Prometheus text format (summed over processes in multiprocess mode)."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


def worker_restarts_counter() -> Counter:
    """Renderer workers replaced after dying, counted by the supervising parent process (its own
    file in the multiprocess directory, so every worker's ``/metrics`` reports it)."""
    return Counter(
        "pagecache_worker_restarts",
        "Renderer worker processes that died and were replaced",
        ["reason"],
        registry=CollectorRegistry(),
    )
