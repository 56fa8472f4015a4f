"""1000 concurrent requests for one cold article across two renderer processes: one MongoDB read."""

from __future__ import annotations

import asyncio
from typing import Callable

from devstack import servers
from devstack.probes import concurrent_gets
from tests.conftest import StackClients
from tests.helpers import mongo_reads, unique_slug

REQUESTS = 1000


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
        outcomes = asyncio.run(concurrent_gets(urls))
        assert sum(outcomes.values()) == REQUESTS
        assert {status for status, _ in outcomes} == {200}, outcomes
        assert mongo_reads(*renderers) - before == 1, outcomes
        assert outcomes[(200, "mongo")] >= 1
    finally:
        second.stop()
