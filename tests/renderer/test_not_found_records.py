"""404s cost what they are worth in Redis: a URL that never named a page lives NOT_FOUND_TTL as
a record of a few hundred bytes (every 404 is the one not-found page), so a flood of made-up URLs
never evicts real pages' records, which are also their pages' last good copies; a takedown's
record keeps its fence for the page TTL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import redis
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from devstack import servers
from devstack.samples import article_document
from renderer import contract
from renderer.backends import redis_pages
from renderer.backends.redis_pages import RedisPages
from renderer.render import PageRenderer
from renderer.resilience import AsyncCircuitBreaker, Deadline, Guard, RetryPolicy

REAL_PAGES = 300
MADE_UP = 20_000
PAGE_TTL, NOT_FOUND_TTL = 300, 10
# The flood's last records, read back: the first ones may have lived their 10 s by the end of a
# flood on a loaded machine (a suite run read "nunca-00001" back as expired).
LAST_MADE_UP, LAST_SECTION = f"nunca-{MADE_UP - 1:05d}", contract.section_cache_id("secao-1999")


def real_article(n: int) -> dict[str, object]:
    payload = {
        "slug": f"materia-real-{n}",
        "title": f"Matéria real {n}",
        "section": "rio",
        "body_html": "<p>" + "Texto da matéria. " * 250 + "</p>",
        "published_at": datetime(2026, 11, 20, tzinfo=UTC).isoformat(),
    }
    return article_document(payload)


async def flood(port: int) -> None:
    client = aioredis.Redis(port=port, socket_timeout=5, retry=Retry(NoBackoff(), 0), max_connections=200)
    renderer = PageRenderer("pagecache news", "http://127.0.0.1:6081")
    guard = Guard(AsyncCircuitBreaker("flood-test", fail_max=1000, reset_timeout=1), 5.0, RetryPolicy(1, 0, 0),
                  redis_pages.is_transient)  # fmt: skip
    pages = RedisPages(client, guard, page_ttl=PAGE_TTL, stale_ttl=86400, lock_ttl=5, not_found_ttl=NOT_FOUND_TTL,
                       not_found_body=renderer.generic_not_found.html)  # fmt: skip

    async def put_all(items: list[tuple[str, object]]) -> None:
        for start in range(0, len(items), 100):
            deadline = Deadline.after(30)
            await asyncio.gather(
                *(pages.put(deadline, cache_id, page) for cache_id, page in items[start : start + 100])
            )

    try:
        await put_all([(f"materia-real-{n}", renderer.article(real_article(n))) for n in range(REAL_PAGES)])
        # What readers of made-up URLs leave: unknown articles, and fronts of sections with none.
        made_up: list[tuple[str, object]] = [
            (f"nunca-{n:05d}", renderer.not_found(f"nunca-{n:05d}")) for n in range(MADE_UP)
        ]
        made_up += [(contract.section_cache_id(f"secao-{n}"), renderer.section_front(f"secao-{n}", [], version=7))
                    for n in range(2_000)]  # fmt: skip
        await put_all(made_up)
        # A 404 read back is the whole not-found page.
        back = await pages.get(Deadline.after(5), LAST_MADE_UP)
        assert back is not None and back.status == 404 and back.html == renderer.generic_not_found.html
        # A takedown fences for the page TTL; it too holds no body.
        await pages.put(Deadline.after(5), "materia-real-0", renderer.not_found("materia-real-0", version=2))
    finally:
        await client.aclose()


def test_a_flood_of_made_up_urls_never_evicts_real_pages(tmp_path: Path) -> None:
    port = servers.free_port()
    # Room for the real pages (~3 MB) and the flood's records, not for the flood's pages in full
    # (~3 KB each: ~66 MB before, each kept 5 minutes).
    server = servers.redis_server(tmp_path, port, maxmemory="16mb").start()
    try:
        asyncio.run(flood(port))
        sync = redis.Redis(port=port)
        assert sync.info("stats")["evicted_keys"] == 0
        missing = [n for n in range(1, REAL_PAGES) if not sync.exists(contract.page_key(f"materia-real-{n}"))]
        assert missing == []
        assert 0 < sync.ttl(contract.page_key(LAST_MADE_UP)) <= NOT_FOUND_TTL
        assert 0 < sync.ttl(contract.page_key(LAST_SECTION)) <= NOT_FOUND_TTL
        assert sync.strlen(contract.page_key(LAST_MADE_UP)) < 400
        assert NOT_FOUND_TTL < sync.ttl(contract.page_key("materia-real-0")) <= PAGE_TTL
        sync.close()
    finally:
        server.stop()
