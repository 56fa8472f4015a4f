"""Outages of real servers: FerretDB killed, Redis frozen (SIGSTOP), every renderer killed.

Each test starts a private stack with fast breakers (tests/conftest.py FAULT_SETTINGS).
"""

from __future__ import annotations

import time
from typing import Callable

from tests.conftest import StackClients
from tests.helpers import get, metric, mongo_reads, stored_page, unique_slug, varnish_backends_sick, wait_until

# A request may take its deadline (1.5 s in FAULT_SETTINGS); a hung one fails on this client timeout.
CLIENT_TIMEOUT = 6.0


def path(slug: str) -> str:
    return f"/noticia/{slug}.ghtml"


def breaker_state(renderer: str, backend: str) -> float:
    return metric(renderer, "pagecache_breaker_state", backend=backend)


def test_mongodb_killed_serves_stale_copies_then_recovers_after_one_trial(
    make_stack: Callable[..., StackClients],
) -> None:
    # Records are fresh for 1 s, then only the last good copies: later requests go past them.
    s = make_stack(varnish=False, PAGE_TTL="1", REVALIDATE_WINDOW="0")
    warm = [unique_slug("quente") for _ in range(3)]
    for slug in warm:
        s.add_article(slug, title=f"Manchete {slug}")
        assert get(s.renderer, path(slug)).headers["X-Tier"] == "mongo"
    cold = unique_slug("fria")
    s.add_article(cold)
    wait_until(lambda: not any(stored_page(s.redis, slug).is_servable(time.time()) for slug in warm), timeout=5)

    s.server("ferretdb").kill()

    for slug in warm:
        resp = get(s.renderer, path(slug), timeout=CLIENT_TIMEOUT)
        assert resp.status == 200
        assert resp.headers["X-Tier"] == "stale"
        assert f"Manchete {slug}" in resp.text
        assert "detail=stale-mongodb-" in resp.headers["Cache-Status"]
        assert "s-maxage=2" in resp.headers["Cache-Control"]

    never_fetched = get(s.renderer, path(cold), timeout=CLIENT_TIMEOUT)
    assert never_fetched.status == 503
    assert int(never_fetched.headers["Retry-After"]) >= 1

    wait_until(lambda: get(s.renderer, path(cold)).status == 503 and breaker_state(s.renderer, "mongodb") == 2)
    reads_with_breaker_open = mongo_reads(s.renderer)
    for _ in range(20):
        resp = get(s.renderer, path(unique_slug("outra")), timeout=CLIENT_TIMEOUT)
        assert resp.status == 503 and resp.headers["Retry-After"]
        assert "breaker-open" in resp.headers["Cache-Status"]
    assert mongo_reads(s.renderer) == reads_with_breaker_open  # no backend call while open

    s.server("ferretdb").start()
    fresh = wait_until(lambda: (r := get(s.renderer, path(warm[0]))).headers["X-Tier"] == "mongo" and r, timeout=20)
    assert fresh.status == 200
    assert breaker_state(s.renderer, "mongodb") == 0
    assert metric(s.renderer, "pagecache_breaker_transitions_total", backend="mongodb", to_state="half-open") >= 1
    assert metric(s.renderer, "pagecache_breaker_transitions_total", backend="mongodb", to_state="closed") >= 1
    assert get(s.renderer, path(cold)).status == 200


def test_redis_frozen_pages_come_from_memory_or_mongodb_within_the_deadline(
    make_stack: Callable[..., StackClients],
) -> None:
    s = make_stack(varnish=False)
    slugs = [unique_slug() for _ in range(4)]
    for slug in slugs:
        s.add_article(slug)
    assert get(s.renderer, path(slugs[0])).headers["X-Tier"] == "mongo"

    s.server("redis").freeze()
    try:
        # Until the breaker opens each request pays Redis timeouts, never more than its deadline.
        # A page this process served before comes from its own copy; the others from MongoDB.
        for slug in slugs:
            resp = get(s.renderer, path(slug), timeout=CLIENT_TIMEOUT)
            assert resp.status == 200
            assert resp.headers["X-Tier"] == ("memory" if slug == slugs[0] else "mongo")
        wait_until(lambda: breaker_state(s.renderer, "redis") == 2, timeout=5)
        waits_so_far = metric(s.renderer, "pagecache_backend_errors_total", backend="redis", error="timeout")
        for _ in range(3):
            for slug in slugs:
                resp = get(s.renderer, path(slug), timeout=CLIENT_TIMEOUT)
                assert resp.status == 200 and resp.headers["X-Tier"] == "memory"
        # With the breaker open, no request waited on Redis again.
        assert metric(s.renderer, "pagecache_backend_errors_total", backend="redis", error="timeout") == waits_so_far
        assert metric(s.renderer, "pagecache_backend_errors_total", backend="redis", error="breaker-open") > 0
    finally:
        s.server("redis").thaw()

    def served_from_redis() -> bool:
        get(s.renderer, path(slugs[1]))
        return get(s.renderer, path(slugs[1])).headers["X-Tier"] == "redis"

    wait_until(served_from_redis, timeout=15, interval=0.3)
    assert breaker_state(s.renderer, "redis") == 0


def test_redis_down_and_mongodb_down_serves_the_in_process_copy(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish=False)
    slug = unique_slug()
    s.add_article(slug, title="Cópia guardada no processo")
    assert get(s.renderer, path(slug)).status == 200
    s.server("redis").kill()
    s.server("ferretdb").kill()
    resp = get(s.renderer, path(slug), timeout=CLIENT_TIMEOUT)
    assert resp.status == 200
    # Younger than PAGE_TTL it stands in for Redis; older, it is the stale-on-failure copy.
    assert resp.headers["X-Tier"] == "memory"
    assert "Cópia guardada no processo" in resp.text
    assert get(s.renderer, path(unique_slug()), timeout=CLIENT_TIMEOUT).status == 503


def test_every_renderer_killed_varnish_serves_warm_pages_stale_and_cold_ones_503(
    make_stack: Callable[..., StackClients],
) -> None:
    s = make_stack(SHARED_MAX_AGE="1")
    warm, cold = unique_slug("quente"), unique_slug("fria")
    s.add_article(warm, title="Página quente")
    s.add_article(cold)
    assert get(s.site, path(warm)).headers["X-Cache"] == "MISS"
    assert get(s.site, path(warm)).headers["X-Cache"] == "HIT"
    time.sleep(1.2)  # past the 1 s TTL: only a grace copy is left

    s.server("renderer").kill()

    for _ in range(5):
        resp = get(s.site, path(warm))
        assert resp.status == 200
        assert resp.headers["X-Cache"] == "HIT-STALE"
        assert "Página quente" in resp.text
        assert "varnish; hit; detail=grace" in resp.headers["Cache-Status"]
    missing = get(s.site, path(cold))
    assert missing.status == 503
    assert missing.headers["Retry-After"]
    # Once the probe marks the renderer sick, warm pages are still served from grace.
    wait_until(lambda: varnish_backends_sick(s.server("varnish")), timeout=10)
    assert get(s.site, path(warm)).headers["X-Cache"] == "HIT-STALE"
