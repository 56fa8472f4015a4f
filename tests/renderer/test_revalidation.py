"""Stale-while-revalidate at the Redis tier: past its TTL a page is answered at once and refreshed
in the background, once per TTL across processes, without ever overwriting a newer write."""

from __future__ import annotations

import json
import time
from typing import Callable

import pytest

from devstack.probes import metric
from renderer.rendered_page import RenderedPage
from tests.conftest import StackClients
from tests.helpers import expire_records, get, mongodb_usable, request, unique_slug, wait_until
from tests.holding_proxy import HoldingProxy
from tests.renderer.test_publish import AUTH, article, put

# The box is read once at start and on publishes only: its own background refreshes would count
# among the page's.
SHORT = {"PAGE_TTL": "2", "REVALIDATE_WINDOW": "60", "TTL_JITTER": "0", "LATEST_BOX_REFRESH": "3600"}


def reads(url: str, path: str) -> float:
    return metric(url, "pagecache_mongodb_reads_total", path=path)


def refreshes(url: str, outcome: str) -> float:
    return metric(url, "pagecache_background_refreshes_total", outcome=outcome)


@pytest.mark.slow
def test_a_page_read_through_its_ttl_is_refreshed_in_the_background_once_per_ttl(
    make_stack: Callable[..., StackClients],
) -> None:
    s = make_stack(varnish=False, PROCESSES="2", **SHORT)
    slug = unique_slug("quente")
    s.add_article(slug)
    assert get(s.renderer, f"/noticia/{slug}.ghtml").headers["X-Tier"] == "mongo"
    tiers, revalidating = [], []
    started = time.monotonic()
    while time.monotonic() - started < 9.0:
        resp = get(s.renderer, f"/noticia/{slug}.ghtml")
        assert resp.status == 200
        tiers.append(resp.headers["X-Tier"])
        if "revalidating" in resp.headers["Cache-Status"]:
            revalidating.append(resp.headers["Cache-Control"])
        time.sleep(0.05)
    # Readers never waited on MongoDB after the first read; the page was refreshed about once per
    # TTL (9 s / 2 s), by one process at a time.
    assert set(tiers) == {"redis"}
    assert reads(s.renderer, "reader") == 1
    refreshed = refreshes(s.renderer, "refreshed")
    assert 3 <= refreshed <= 5, refreshed
    assert reads(s.renderer, "refresh") == refreshed + refreshes(s.renderer, "superseded")
    # While revalidating, the page claims no more freshness than a stale page.
    assert revalidating and all("s-maxage=2," in value for value in revalidating)


def test_a_refresh_that_fails_leaves_the_page_in_place(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish=False, **SHORT)
    slug = unique_slug("sem-banco")
    s.add_article(slug, title="Continua no ar")
    assert get(s.renderer, f"/noticia/{slug}.ghtml").status == 200
    s.server("ferretdb").kill()
    time.sleep(2.5)  # past the TTL: every read now asks for a refresh, which fails
    for _ in range(20):
        resp = get(s.renderer, f"/noticia/{slug}.ghtml")
        assert resp.status == 200 and "Continua no ar" in resp.text
        assert resp.headers["X-Tier"] == "redis" and "revalidating" in resp.headers["Cache-Status"]
        time.sleep(0.1)
    failed = refreshes(s.renderer, "failed") + refreshes(s.renderer, "skipped-breaker-open")
    assert failed >= 1
    # Past the window the record is the last good copy, and the stale-on-failure path serves it.
    expire_records(s.redis, slug)
    resp = get(s.renderer, f"/noticia/{slug}.ghtml")
    assert resp.status == 200 and resp.headers["X-Tier"] == "stale"


@pytest.mark.slow
@pytest.mark.parametrize("change", ["publish", "unpublish"])
def test_a_publish_or_unpublish_during_a_refresh_wins(
    make_stack: Callable[..., StackClients], proxy: HoldingProxy, change: str
) -> None:
    # The stack's renderer reads MongoDB through the proxy (its refresh can be held back); the
    # editors publish through another renderer that reads MongoDB directly.
    # The refresh's MongoDB read, held by the proxy, must outlast the editors' publish: both its
    # deadline (the request deadline) and the read's own timeout. Under a loaded suite a publish
    # took longer than the fault settings' 0.5 s read timeout, and the refresh "failed" (shown by
    # holding the publish back 0.7 s: fails with MONGODB_TIMEOUT 0.5, passes with 5).
    s = make_stack(
        varnish=False,
        MONGODB_URL=f"mongodb://127.0.0.1:{proxy.port}/",
        REQUEST_DEADLINE="10",
        MONGODB_TIMEOUT="5",
        **SHORT,
    )
    proxy.connect_to("127.0.0.1", s.stack.ports.mongodb)
    # The renderer's first reads (its box) went to the proxy before it had a target.
    wait_until(lambda: mongodb_usable(s.renderer), timeout=20)
    editors = s.editors_renderer(**SHORT).start()
    try:
        api = f"http://127.0.0.1:{editors.port}"
        slug = unique_slug("corrida")
        # Held: the reply that carries the article's body, which only the article's own read has
        # (a listing's reply names the slug too, and the publisher's settle pass makes this
        # renderer read its box again about now: holding that instead made the test flaky).
        body = f"<p>corpo-{slug}</p>"
        assert put(api, slug, article("Versão lida", body_html=body)).status in (200, 201, 202)
        assert "Versão lida" in get(s.renderer, f"/noticia/{slug}.ghtml").text
        time.sleep(2.2)  # into the revalidation window
        proxy.hold(f"corpo-{slug}".encode())
        resp = get(s.renderer, f"/noticia/{slug}.ghtml")
        assert "revalidating" in resp.headers["Cache-Status"] and "Versão lida" in resp.text
        assert proxy.holding.wait(10), "the refresh's MongoDB answer never came through the proxy"
        # MongoDB has answered the refresh with "Versão lida"; now the editors change the article.
        if change == "publish":
            assert put(api, slug, article("Versão publicada")).status in (200, 202)
        else:
            assert request(api, "DELETE", f"/api/articles/{slug}", None, AUTH).status in (200, 202)
        proxy.release()
        wait_until(lambda: refreshes(s.renderer, "superseded") == 1, timeout=10)
        stored = RenderedPage.from_bytes(s.redis.get(f"page:{slug}"))
        if change == "publish":
            assert stored.status == 200 and b"Vers\xc3\xa3o publicada" in stored.html
        else:
            assert stored.status == 404 and stored.version == 2
    finally:
        editors.stop()
    assert json.loads(get(s.renderer, "/healthcheck").body)["status"] in ("success", "degraded")
