"""Every setting, read once from the environment (12-factor), with its default and why."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """Renderer configuration. ``Settings.from_env()`` is the only reader of os.environ."""

    port: int = 8888
    address: str = "127.0.0.1"  # 0.0.0.0 in a container
    # 0: one process per core.
    processes: int = 0
    redis_url: str = "redis://127.0.0.1:6379/0"
    mongodb_url: str = "mongodb://127.0.0.1:27017/"
    mongodb_db: str = "pagecache"
    # Each Varnish node's admin listener (purges); readers use the public one (6081).
    varnish_urls: tuple[str, ...] = ("http://127.0.0.1:6082",)
    editor_tokens: tuple[str, ...] = field(default_factory=tuple)
    site_name: str = "pagecache news"
    site_url: str = "http://127.0.0.1:6081"
    # Strict-Transport-Security max-age on pages; 0 sends none (set it where TLS terminates upstream).
    hsts_max_age: int = 0

    # Tier freshness.
    page_ttl: int = 300  # Redis page:<slug>
    # Past its TTL a page stays this long in Redis, answered at once while one background refresh
    # per page (across processes) re-reads MongoDB: readers of a hot page never wait on MongoDB.
    revalidate_window: int = 900
    ttl_jitter: float = 0.05  # a page's TTL is shortened by up to this share, so pages warmed together spread out
    stale_ttl: int = 86400  # Redis stale:<slug>, served when MongoDB fails
    shared_max_age: int = 10  # Varnish/CDN TTL via s-maxage
    stale_while_revalidate: int = 10
    stale_if_error: int = 86400
    stale_shared_max_age: int = 2  # a stale page is re-asked for soon
    not_found_ttl: int = 10  # negative caching of unknown articles, in Redis and Varnish
    home_size: int = 20
    section_size: int = 30  # articles on a section front
    latest_box_size: int = 5  # articles in the "latest news" box

    # Resilience.
    request_deadline: float = 2.0  # everything one request does fits in this
    redis_timeout: float = 0.25
    mongodb_timeout: float = 1.0
    mongodb_write_timeout: float = 4.0  # publishing is not latency-critical; commits may queue
    retry_attempts: int = 3
    retry_initial_wait: float = 0.02
    retry_max_wait: float = 0.25
    retry_budget_ratio: float = 0.2  # retries per backend at most this share of first attempts (10 s window)
    # The slice of every request's deadline MongoDB attempts may not spend: the stale fallback's.
    stale_reserve: float = 0.4
    breaker_fail_max: int = 5
    breaker_reset_timeout: float = 5.0
    lock_ttl: float = 3.0  # expiry of lock:page:<slug> if its holder dies
    lock_wait: float = 1.5  # how long a loser waits for the winner's write
    last_good_size: int = 1000  # in-process stale copies when Redis is down too

    # Publishing.
    # Larger bodies get 413. 8 MiB holds any article the schema allows, even one whose 500,000
    # characters of body_html are all \\u-escaped astral characters (12 bytes each).
    publish_max_bytes: int = 8 * 1024 * 1024
    # Hosts image_url may name (comma-separated); empty: any public host name.
    image_hosts: tuple[str, ...] = ()
    publish_deadline: float = 5.0  # commit, render and purge all fit in this
    purge_timeout: float = 1.0  # one PURGE to one Varnish node
    purge_attempts: int = 3
    purge_retry_interval: float = 1.0  # how often the pending-purge queue is retried
    # A queued purge older than an object's whole life in Varnish (TTL + 24 h grace) has nothing
    # left to remove: it is dropped.
    purge_max_age: float = 90000.0

    # Healthcheck.
    health_cache_seconds: float = 2.0
    health_check_timeout: float = 0.5
    health_critical: tuple[str, ...] = ("mongodb",)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, default in cls().__dict__.items():
            raw = env.get(name.upper())
            if raw is None:
                continue
            if isinstance(default, tuple):
                values[name] = _split(raw)
            elif isinstance(default, bool):
                values[name] = raw.lower() in ("1", "true", "yes", "on")
            else:
                values[name] = type(default)(raw)
        return cls(**values)  # type: ignore[arg-type]
