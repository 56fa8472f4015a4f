"""MongoDB slow or saturated: reads over the adaptive limit get their stale copy at once; a page
with none waits for a slot within its deadline instead of being refused."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Callable

import aiohttp

from devstack.chaos import duty_cycle
from devstack.probes import concurrent_gets, metric
from devstack.samples import article_document
from tests.conftest import StackClients
from tests.helpers import expire_records, get, mongodb_usable, unique_slug, wait_until
from tests.holding_proxy import HoldingProxy


def test_reads_over_the_limit_get_their_stale_copy_at_once(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish=False, MONGODB_MAX_CONCURRENCY="4", REQUEST_DEADLINE="3", MONGODB_TIMEOUT="2")
    slugs = [unique_slug("sobrecarga") for _ in range(20)]
    for slug in slugs:
        s.add_article(slug)
        assert get(s.renderer, f"/noticia/{slug}.ghtml").status == 200  # a stale: copy each
    expire_records(s.redis, *slugs)
    s.server("ferretdb").freeze()  # alive, answering nothing: every read hangs
    try:
        outcomes = asyncio.run(concurrent_gets([f"{s.renderer}/noticia/{slug}.ghtml" for slug in slugs]))
        health = json.loads(get(s.renderer, "/healthcheck").body)
    finally:
        s.server("ferretdb").thaw()
    assert outcomes == {(200, "stale"): 20}
    # At most the limit waited on MongoDB; the rest were answered from their stale copies at once.
    assert metric(s.renderer, "pagecache_mongodb_shed_total", outcome="stale") >= 16
    load = next(r for r in health["results"] if r["checker"] == "mongodb load")
    assert load["passed"] is False and "shedding" in load["output"]
    assert health["status"] == "degraded"


def test_cold_misses_wait_for_a_slot_when_mongodb_is_slow_but_alive(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish=False, MONGODB_MAX_CONCURRENCY="2", REQUEST_DEADLINE="6", MONGODB_TIMEOUT="4")
    slugs = [unique_slug("fria") for _ in range(12)]
    for slug in slugs:
        s.add_article(slug)  # never read: no copy anywhere
    stop = threading.Event()
    cycling = threading.Thread(target=duty_cycle, args=(s.server("ferretdb").pid, stop), daemon=True)
    cycling.start()
    try:
        outcomes = asyncio.run(concurrent_gets([f"{s.renderer}/noticia/{slug}.ghtml" for slug in slugs]))
    finally:
        stop.set()
        cycling.join()
    assert outcomes == {(200, "mongo"): 12}
    assert metric(s.renderer, "pagecache_mongodb_shed_total", outcome="queued") >= 1
    assert metric(s.renderer, "pagecache_mongodb_shed_total", outcome="unavailable") == 0


def test_with_mongodb_slowed_no_read_starts_over_the_limit_and_the_limit_recovers(
    make_stack: Callable[..., StackClients], proxy: HoldingProxy
) -> None:
    """The adaptive limit at work on a real stack: MongoDB slows to ~15 % of its capacity under a
    stream of cold reads (nothing stale, so they queue for slots). The finds MongoDB has in hand,
    counted at a proxy in front of it, never outnumber the limit the renderer reports for long
    (a read already running when the limit falls finishes, no new one starts), the limit falls,
    and once MongoDB is fast again it grows back. Before the fix a freed slot went to the next
    waiter whatever the limit: the server kept ~20 finds while the limit said 4."""
    s = make_stack(varnish=False, MONGODB_URL=f"mongodb://127.0.0.1:{proxy.port}/", REQUEST_DEADLINE="6",
                   MONGODB_TIMEOUT="4", BREAKER_FAIL_MAX="1000")  # fmt: skip
    proxy.connect_to("127.0.0.1", s.stack.ports.mongodb)
    wait_until(lambda: mongodb_usable(s.renderer))  # its first look, before the proxy led anywhere, failed
    slugs = [unique_slug("limite") for _ in range(2500)]
    s.articles.insert_many([article_document({"slug": slug, "title": slug, "section": "rio", "body_html": "<p>x</p>",
                                              "published_at": "2026-11-29T10:00:00Z"}) for slug in slugs])  # fmt: skip
    unread = iter(slugs)

    def limit() -> float:
        return metric(s.renderer, "pagecache_mongodb_concurrency_limit")

    async def cold_reads(rate: float, seconds: float, samples: list[tuple[int, float]] | None = None) -> list[int]:
        """Open-loop cold reads (each article once) for ``seconds``; with ``samples``, (finds at
        MongoDB, limit) every 50 ms meanwhile, kept when the limit was the same before and after."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def one(slug: str) -> int:
                async with session.get(f"{s.renderer}/noticia/{slug}.ghtml") as resp:
                    await resp.read()
                    return resp.status

            async def sample(until: float) -> None:
                while samples is not None and time.monotonic() < until:
                    before = await asyncio.to_thread(limit)
                    finds = proxy.finds_in_flight
                    if await asyncio.to_thread(limit) == before:
                        samples.append((finds, before))
                    await asyncio.sleep(0.05)

            end = time.monotonic() + seconds
            sampler = asyncio.ensure_future(sample(end))
            tasks, sent, started = [], 0, time.monotonic()
            while (now := time.monotonic()) < end:
                due = int((now - started) * rate) - sent
                tasks += [asyncio.ensure_future(one(next(unread))) for _ in range(due)]
                sent += max(due, 0)
                await asyncio.sleep(0.005)
            await sampler
            return list(await asyncio.gather(*tasks))

    assert set(asyncio.run(cold_reads(rate=40, seconds=3))) == {200}  # a fast MongoDB: learnt
    fast_limit = limit()
    stop = threading.Event()
    cycling = threading.Thread(target=duty_cycle, args=(s.server("ferretdb").pid, stop), daemon=True)
    cycling.start()
    samples: list[tuple[int, float]] = []
    try:
        asyncio.run(cold_reads(rate=200, seconds=6, samples=samples))
    finally:
        stop.set()
        cycling.join()
    slow_limit = min(limit for _, limit in samples)
    assert slow_limit < fast_limit / 2, (fast_limit, samples)
    # Reads started under a higher limit may still be running when it falls (at 15 % a find can
    # take a few hundred ms): each sample is held to the highest limit of the half second before
    # it, plus one for the sampling's own lag. With the old release() the server kept the finds
    # of the highest limit for as long as reads queued.
    over = [
        (finds, [limit for _, limit in samples[max(0, n - 10) : n + 1]])
        for n, (finds, _) in enumerate(samples)
        if finds > max(limit for _, limit in samples[max(0, n - 10) : n + 1]) + 1
    ]
    assert len(samples) > 30 and not over, (over, samples)
    # Fast again: the limit grows back once reads need it (it never grows while under half used).
    for _ in range(6):
        burst = [f"{s.renderer}/noticia/{next(unread)}.ghtml" for _ in range(40)]
        assert set(asyncio.run(concurrent_gets(burst))) == {(200, "mongo")}
    assert limit() >= 2 * slow_limit, (slow_limit, limit())
