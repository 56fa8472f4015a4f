"""1000 concurrent requests for one cold article across two renderer processes: one MongoDB read."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Callable

import aiohttp

from devstack import servers
from tests.conftest import StackClients
from tests.helpers import mongo_reads, unique_slug

REQUESTS = 1000


async def fire(urls: list[str]) -> Counter[tuple[int, str]]:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = asyncio.Event()

        async def one(url: str) -> tuple[int, str]:
            await start.wait()
            async with session.get(url) as resp:
                await resp.read()
                return resp.status, resp.headers.get("X-Tier", "")

        tasks = [asyncio.ensure_future(one(url)) for url in urls]
        await asyncio.sleep(0)
        start.set()
        return Counter(await asyncio.gather(*tasks))


def test_a_thousand_concurrent_cold_requests_read_mongodb_once(
    make_stack: Callable[..., StackClients],
) -> None:
    # A generous deadline: under 1000 connections on two cores the losers must outwait the winner.
    settings = {"REQUEST_DEADLINE": "10", "LOCK_WAIT": "8", "LOCK_TTL": "10"}
    s = make_stack(varnish=False, **settings)
    second = servers.renderer(
        s.stack.run_dir, servers.free_port(), {**s.stack.env, **settings, "BREAKER_FAIL_MAX": "3", "PROCESSES": "1"}
    ).start()
    try:
        renderers = [s.renderer, f"http://127.0.0.1:{second.port}"]
        slug = unique_slug("disputada")
        s.add_article(slug)
        before = mongo_reads(*renderers)
        urls = [f"{renderers[i % 2]}/noticia/{slug}.ghtml" for i in range(REQUESTS)]
        outcomes = asyncio.run(fire(urls))
        assert sum(outcomes.values()) == REQUESTS
        assert {status for status, _ in outcomes} == {200}, outcomes
        assert mongo_reads(*renderers) - before == 1, outcomes
        assert outcomes[(200, "mongo")] >= 1
    finally:
        second.stop()
