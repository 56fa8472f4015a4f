"""/metrics after known traffic on a two-process renderer, and one JSON log line per request."""

from __future__ import annotations

import json
import time
from typing import Callable

from tests.conftest import StackClients
from tests.helpers import get, metric, stored_page, unique_slug, wait_until


def test_metrics_count_the_traffic_they_saw_across_processes(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish=False, PROCESSES="2")
    slug = unique_slug()
    s.add_article(slug)
    for _ in range(30):
        assert get(s.renderer, f"/noticia/{slug}.ghtml").status == 200
    for bad in ("/noticia/UPPER.ghtml", "/noticia/%00.ghtml", "/Nada/", "/noticia/a..b.ghtml", "/x.php"):
        assert get(s.renderer, bad).status == 404
    pids = {
        json.loads(line)["pid"]
        for line in s.server("renderer").log_path.read_text().splitlines()
        if line.startswith("{")
    }
    assert len(pids) == 2  # both processes served

    # Any process answers /metrics with the sum over both.
    for _ in range(3):
        assert metric(s.renderer, "pagecache_requests_total", tier="mongo", status="200") == 1
        assert metric(s.renderer, "pagecache_requests_total", tier="redis", status="200") == 29
        assert metric(s.renderer, "pagecache_requests_total", tier="none", status="404") == 5
        assert metric(s.renderer, "pagecache_mongodb_reads_total", path="reader") == 1
    assert metric(s.renderer, "pagecache_backend_call_seconds_count", backend="redis") >= 30
    assert metric(s.renderer, "pagecache_backend_call_seconds_count", backend="mongodb") >= 1
    assert metric(s.renderer, "pagecache_breaker_state", backend="mongodb") == 0


def test_stale_pages_and_their_age_are_visible_in_metrics(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish=False, PAGE_TTL="1", REVALIDATE_WINDOW="0")
    slug = unique_slug()
    s.add_article(slug)
    get(s.renderer, f"/noticia/{slug}.ghtml")
    wait_until(lambda: not stored_page(s.redis, slug).is_servable(time.time()), timeout=5)
    s.server("ferretdb").kill()
    stale = get(s.renderer, f"/noticia/{slug}.ghtml", timeout=5)
    assert stale.headers["X-Tier"] == "stale"
    assert stale.headers["CDN-Cache-Control"] == "max-age=2, stale-if-error=86400"  # asked for again soon
    assert metric(s.renderer, "pagecache_stale_pages_served_total") == 1
    assert metric(s.renderer, "pagecache_stale_page_age_seconds_count") == 1
    assert metric(s.renderer, "pagecache_stale_page_age_seconds_sum") >= 1  # past its TTL


def test_every_request_is_one_json_log_line_with_its_request_id(stack: StackClients) -> None:
    slug = unique_slug()
    stack.add_article(slug)
    get(stack.renderer, f"/noticia/{slug}.ghtml", {"X-Request-Id": "leitor-123"})
    through_varnish = get(stack.site, f"/noticia/{slug}.ghtml")
    varnish_id = through_varnish.headers["X-Request-Id"]
    assert varnish_id.startswith("varnish-")

    def lines() -> list[dict[str, object]]:
        text = stack.server("renderer").log_path.read_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def request_line(rid: str) -> dict[str, object] | None:
        return next((line for line in lines() if line.get("request_id") == rid and line["message"] == "request"), None)

    mine = wait_until(lambda: request_line("leitor-123"), timeout=5)
    assert mine["path"] == f"/noticia/{slug}.ghtml"
    assert mine["status"] == 200 and mine["tier"] == "mongo" and mine["method"] == "GET"
    assert isinstance(mine["duration_ms"], float)
    # Varnish's request id reached the renderer (the first fetch through Varnish was a miss... or a hit).
    if through_varnish.headers["X-Cache"] == "MISS":
        assert wait_until(lambda: request_line(varnish_id), timeout=5)["tier"] == "redis"
