"""Abandoned queries stop on the server: every MongoDB read carries the time left in its attempt
(pymongo's timeout, sent as maxTimeMS), so after a burst of reads that timed out the stand-in is
idle within about a second instead of working through them for seconds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any, Iterator

import pymongo
import pytest
from pymongo import AsyncMongoClient, MongoClient

from devstack import servers
from renderer.backends import mongo_articles
from renderer.breaker import AsyncCircuitBreaker
from renderer.resilience import Deadline, Guard, RetryPolicy

ARTICLES = 10000


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def slow_mongodb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[servers.Server, str]]:
    """A stand-in whose listing query scans and sorts a catalogue in full (no pushdown)."""
    port = servers.free_port()
    server = servers.ferretdb(tmp_path_factory.mktemp("slow"), port).start()
    url = f"mongodb://127.0.0.1:{port}/"
    with MongoClient(url) as client:
        padding = "x" * 2000
        client["pagecache"]["articles"].insert_many(
            {"_id": f"a{n}", "published": True, "published_at": n, "body_html": padding} for n in range(ARTICLES)
        )
    yield server, url
    server.stop()


def idle_cpu_after_a_burst(server: servers.Server, url: str, scope: Any) -> float:
    """CPU the stand-in uses in the second after 20 listing reads gave up at 50 ms each (measured
    while the client is still open, as a renderer's pool stays open)."""

    async def burst() -> float:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
        breaker = AsyncCircuitBreaker("slow-test", fail_max=1000, reset_timeout=1)
        guard = Guard(breaker, 0.05, RetryPolicy(1, 0, 0), mongo_articles.is_transient, scope=scope,
                      is_timeout=mongo_articles.is_timeout)  # fmt: skip
        mongo = mongo_articles.MongoArticles(client, "pagecache", guard)
        await client.admin.command("ping")  # connected first: what times out is the reads
        try:
            outcomes = await asyncio.gather(
                *(mongo.latest(Deadline.after(1.0), 20) for _ in range(20)), return_exceptions=True
            )
            # Each read takes ~0.4 s of the server's time: all but a few (a client starved of CPU
            # can see the answer and its own timeout at once) gave up.
            gave_up = sum(isinstance(o, BaseException) for o in outcomes)
            assert gave_up >= 15, f"only {gave_up} of 20 reads timed out at 50 ms"
            await asyncio.sleep(0.5)  # what the server finishes within half a second is not "snowballing"
            before = cpu_seconds(server.pid)
            await asyncio.sleep(1.0)
            return cpu_seconds(server.pid) - before
        finally:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.close(), 5)

    return asyncio.run(burst())


def test_a_burst_of_timed_out_reads_leaves_the_server_idle(slow_mongodb: tuple[servers.Server, str]) -> None:
    server, url = slow_mongodb
    assert idle_cpu_after_a_burst(server, url, scope=pymongo.timeout) < 0.2


def test_without_the_time_limit_the_server_works_on_for_abandoned_reads(
    slow_mongodb: tuple[servers.Server, str],
) -> None:
    """Why the limit is sent: reads cancelled only on the client keep the server busy."""
    server, url = slow_mongodb
    time.sleep(2)  # whatever the other test left running
    assert idle_cpu_after_a_burst(server, url, scope=lambda seconds: contextlib.nullcontext()) > 0.5
