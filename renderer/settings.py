"""Every setting, declared once: its type, default and one line saying what it does.

``Settings.from_env()`` is the only reader of the environment (12-factor); the README's table is
generated from these declarations (``python -m renderer.settings``) and a test keeps them equal.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from renderer.sections import DEFAULT_SECTIONS, Sections


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def setting(default: Any, help: str, shown: str | None = None) -> Any:
    """Declare a setting: ``default``, what it does (``help``), and how the table shows the
    default when its value alone would not say it (``shown``)."""
    return field(default=default, metadata={"help": help, "shown": shown})


@dataclass(frozen=True)
class Settings:
    """Renderer configuration, read from environment variables named like the fields, uppercased."""

    # Where and how it runs.
    port: int = setting(8888, "where the renderer listens")
    address: str = setting("127.0.0.1", "address to bind (``0.0.0.0`` in a container)")
    processes: int = setting(0, "renderer processes (``0``: one per core; metrics summed across them)")
    log_level: str = setting("INFO", "JSON logs on stderr; INFO includes one line per request")
    redis_url: str = setting(
        "redis://127.0.0.1:6379/0",
        "``redis+cluster://host:port`` for a Redis Cluster, ``redis+sentinel://h:p,h:p/service`` for Sentinel",
    )
    mongodb_url: str = setting("mongodb://127.0.0.1:27017/", "any MongoDB URL (replica sets and read preferences too)")
    mongodb_db: str = setting("pagecache", "database of the ``articles`` and ``listings`` collections")
    editor_tokens: tuple[str, ...] = setting((), "comma-separated bearer tokens of the editors' API")
    site_name: str = setting("pagecache news", "the site's name in pages, titles and JSON-LD")
    site_url: str = setting("http://127.0.0.1:6081", "base of canonical links (the public edge)")
    site_sections: tuple[str, ...] = setting(
        DEFAULT_SECTIONS,
        "the sections, ``slug=Name`` comma-separated in the navigation's order; a publish to any other is refused",
        "g1's: ``rio=Rio de Janeiro,sao-paulo=São Paulo,…``",
    )
    site_timezone: str = setting("America/Sao_Paulo", "the time zone of the dates pages show (IANA name)")
    connection_max_age: float = setting(
        30.0, "client connections are closed after this age (s), so Varnish spreads over new renderers"
    )
    http_idle_timeout: float = setting(
        65.0,
        "a client connection is closed when a request's headers have not all come this long (s) after it "
        "opened or after its last answer: idle and slowly sent headers alike (Tornado times both with one "
        "clock). Above Varnish's ``backend_idle_timeout`` (60 s): Varnish closes an idle connection first",
    )
    http_body_timeout: float = setting(
        30.0, "a request's whole body must come within this (s), or the connection is closed"
    )
    hsts_max_age: int = setting(0, "``Strict-Transport-Security`` max-age on pages (0: none; set it where TLS ends)")

    # Tier freshness.
    page_ttl: int = setting(300, "freshness of a page's record in Redis (s)")
    revalidate_window: int = setting(
        900, "past its freshness, a page is answered and refreshed in the background this long (s)"
    )
    ttl_jitter: float = setting(0.05, "freshness shortened by up to this share, so pages warmed together spread out")
    stale_ttl: int = setting(
        86400, "how long a page's record stays in Redis as its last good copy, served when MongoDB fails (s)"
    )
    shared_max_age: int = setting(10, "Varnish/CDN TTL of a fresh page (``s-maxage``, s)")
    stale_while_revalidate: int = setting(10, "``stale-while-revalidate`` of a fresh page (s)")
    stale_if_error: int = setting(86400, "``stale-if-error`` of every page (s)")
    stale_shared_max_age: int = setting(2, "``s-maxage`` of a stale or revalidating page: asked for again soon (s)")
    not_found_ttl: int = setting(10, "negative caching of unknown articles and sections, in Redis and Varnish (s)")
    cdn_ttl: int = setting(
        3600,
        "the CDN's TTL of a fresh page (``CDN-Cache-Control``, ``Surrogate-Control``, s); every publish purges "
        "the CDN, so this only bounds a purge lost for good. With ``CDN_PURGER=none`` it is held to "
        "``SHARED_MAX_AGE``: nothing would purge the CDN",
    )
    cdn_stale_while_revalidate: int = setting(10, "the CDN's ``stale-while-revalidate`` of a fresh page (s)")
    cdn_stale_if_error: int = setting(86400, "the CDN's ``stale-if-error`` of every page (s)")
    home_size: int = setting(20, "articles on the home")
    section_size: int = setting(30, "articles on a section front")
    latest_box_size: int = setting(5, 'articles in the "latest news" box')
    latest_box_refresh: float = setting(
        5.0, 'each process reads the "latest news" box again this often, and at once on a publish (s)'
    )

    # Resilience.
    request_deadline: float = setting(2.0, "everything one page request does fits in this (s)")
    redis_timeout: float = setting(0.25, "one Redis call (s)")
    mongodb_timeout: float = setting(1.0, "one MongoDB read (s)")
    mongodb_write_timeout: float = setting(4.0, "one MongoDB write (s); writes have their own breaker")
    retry_attempts: int = setting(3, "attempts per backend call, within the deadline")
    retry_initial_wait: float = setting(0.02, "first backoff between attempts (s; exponential, with jitter)")
    retry_max_wait: float = setting(0.25, "longest backoff between attempts (s)")
    retry_budget_ratio: float = setting(0.2, "retries per backend at most this share of first attempts (10 s window)")
    stale_reserve: float = setting(0.4, "the part of the deadline MongoDB may not spend: the stale fallback's (s)")
    breaker_fail_max: int = setting(5, "consecutive failures that open a breaker")
    breaker_reset_timeout: float = setting(5.0, "open time before one trial call (s)")
    lock_ttl: float = setting(3.0, "expiry of the cross-process fetch lock if its holder dies (s)")
    lock_wait: float = setting(1.5, "how long a cold request waits for another process's fetch (s)")
    mongodb_max_concurrency: int = setting(
        200, "ceiling of the adaptive limit on concurrent MongoDB reads per process (over it: stale at once)"
    )
    mongodb_wait_queue: int = setting(100, "reads with nothing stale to serve that may wait for a MongoDB slot")
    last_good_size: int = setting(1000, "pages each process keeps in memory for when Redis is down too")

    # Publishing.
    publish_max_bytes: int = setting(
        8 * 1024 * 1024, "larger API bodies get 413 with a JSON reason (any valid article fits)"
    )
    image_hosts: tuple[str, ...] = setting((), "hosts ``image_url`` may name, comma-separated", "(any public host)")
    publish_deadline: float = setting(5.0, "commit, render and purges of one publish fit in this (s)")
    purge_timeout: float = setting(1.0, "one PURGE or REFRESH from an agent to its Varnish node (s)")
    purge_attempts: int = setting(3, "attempts of one CDN purge call, within the publish deadline")
    purge_retry_interval: float = setting(
        1.0, "a CDN purge that failed is tried again after this (s; the log keeps it meanwhile)"
    )
    cdn_purger: str = setting("none", "who purges the CDN on a publish: ``none``, ``fastly`` or ``cloudflare``")
    fastly_api_url: str = setting("https://api.fastly.com", "Fastly's API base URL")
    fastly_service_id: str = setting("", "the Fastly service whose cache a publish purges", "(none)")
    fastly_api_token: str = setting("", "a Fastly API token with purge rights (``Fastly-Key``)", "(none)")
    cloudflare_api_url: str = setting("https://api.cloudflare.com", "Cloudflare's API base URL")
    cloudflare_zone_id: str = setting("", "the Cloudflare zone whose cache a publish purges", "(none)")
    cloudflare_api_token: str = setting("", "a Cloudflare API token with Cache Purge rights (Bearer)", "(none)")
    cloudflare_purge_rate: float = setting(
        4.5,
        "purge requests per second that every renderer sharing the Redis sends together: a little "
        "under the plan's (Free 0.083, Pro 5, Business 10, Enterprise 50)",
    )
    cloudflare_purge_burst: int = setting(
        20, "purge requests sent at once at most: a little under the plan's bucket (Free/Pro 25, Business 50)"
    )
    cdn_purge_timeout: float = setting(2.0, "one call to the CDN's purge API (s)")
    purge_max_age: float = setting(
        90000.0,
        "the purge log keeps events this long: past TTL + grace nothing is left to purge (s). A node "
        "away longer bans everything when it comes back",
    )
    purge_node_unready_after: float = setting(
        3.0,
        "a purge agent turns its node unready when it has not applied an event this old, or has not "
        "reached the log this long while its peers can (s)",
    )
    purge_node_dead_after: float = setting(
        10.0, "publishes stop waiting for a node whose agent has been silent this long (s; above the unready bound)"
    )

    # The purge agent beside each Varnish node (``pagecache-purge-agent``).
    purge_agent_node: str = setting("", "the node's name, unique in the fleet", "(the host name)")
    purge_agent_varnish_url: str = setting("http://127.0.0.1:6082", "the node's Varnish admin listener")
    purge_agent_port: int = setting(6083, "where the agent answers ``/ready``, ``/live`` and ``/metrics``")
    purge_agent_url: str = setting("", "how peers reach this agent", "``http://<host name>:<PURGE_AGENT_PORT>``")

    # Healthcheck.
    health_cache_seconds: float = setting(2.0, "healthcheck results reused for (s)")
    health_check_timeout: float = setting(0.5, "one healthcheck call to a dependency (s)")
    health_critical: tuple[str, ...] = setting(("mongodb",), "checks whose failure means ``failure`` (503)")

    def __post_init__(self) -> None:
        # A node must turn unready before publishes stop waiting for it: between the two, readers
        # could still reach a node that no acknowledged publish has purged.
        if self.purge_node_dead_after <= self.purge_node_unready_after:
            raise ValueError(
                f"PURGE_NODE_DEAD_AFTER ({self.purge_node_dead_after:g}) must be longer than "
                f"PURGE_NODE_UNREADY_AFTER ({self.purge_node_unready_after:g})"
            )
        Sections.parse(self.site_sections)  # says which entry is wrong
        try:
            ZoneInfo(self.site_timezone)
        except (ValueError, ZoneInfoNotFoundError):
            raise ValueError(f"SITE_TIMEZONE {self.site_timezone!r} is not an IANA time zone") from None

    def process_count(self) -> int:
        """How many renderer processes run: ``PROCESSES``, or one per CPU this process may use."""
        return self.processes or available_cpus()

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


def available_cpus(cgroup: str = "/sys/fs/cgroup/cpu.max") -> int:
    """The CPUs this process may use: the container's CPU limit (cgroup v2 ``cpu.max``, rounded
    up) when it has one, else the CPUs it is scheduled on. ``os.cpu_count()`` counts the host's."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = Path(cgroup).read_text().split()[:2]
    except (OSError, ValueError):
        return cpus
    if quota == "max":
        return cpus
    return max(1, min(cpus, -(-int(quota) // int(period))))


def _shown(default: Any, shown: str | None) -> str:
    if shown is not None:
        return shown
    if isinstance(default, tuple):
        return f"``{','.join(default)}``" if default else "(none)"
    return f"``{default}``"


def table() -> str:
    """The README's configuration table (reStructuredText), from the declarations above."""
    rows = [
        (f"``{f.name.upper()}``", _shown(f.default, f.metadata["shown"]), f.metadata["help"]) for f in fields(Settings)
    ]
    header = ("variable", "default", "what")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    rule = "  ".join("=" * w for w in widths)

    def line(cells: tuple[str, str, str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([rule, line(header), rule, *(line(row) for row in rows), rule]) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table())
