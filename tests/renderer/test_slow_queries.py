"""Abandoned queries stop on the server: every MongoDB read carries the time left in its attempt
(pymongo's timeout, sent as maxTimeMS), so after a burst of reads that timed out the stand-in
spends a few hundredths of a second of CPU on them, instead of seconds working through them
(0.00–0.04 s against 2.3–10.5 s here, on a quiet machine and beside two busy loops; the test
sends bursts with and without the limit alternately and compares them).
Stored listings: a cold front is two lookups by _id, and the home and the box share one query."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Iterator

import pymongo
import pytest
from pymongo import AsyncMongoClient, MongoClient, monitoring

from devstack import servers
from devstack.probes import cpu_seconds
from devstack.samples import article_document, outdate_listings
from renderer.backends import mongo_articles, mongo_listings
from renderer.resilience import AsyncCircuitBreaker, Deadline, Guard, RetryPolicy

ARTICLES = 10000


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


async def cpu_until_idle(pid: int, window: float = 0.5) -> float:
    """CPU time the process uses from now until a ``window`` in which it is idle (uses under 5 %
    of it), or 60 s. A total, not a rate: a process starved of CPU takes longer, not less."""
    total, give_up = 0.0, time.monotonic() + 60
    while time.monotonic() < give_up:
        before = cpu_seconds(pid)
        await asyncio.sleep(window)
        used = cpu_seconds(pid) - before
        total += used
        if used < 0.05 * window:
            break
    return total


def cpu_after_a_burst(server: servers.Server, url: str, scope: Any) -> float:
    """CPU the stand-in spends after 20 listing reads gave up at 50 ms each, until it is idle
    (measured while the client is still open, as a renderer's pool stays open)."""

    async def burst() -> float:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
        breaker = AsyncCircuitBreaker("slow-test", fail_max=1000, reset_timeout=1)
        guard = Guard(breaker, 0.05, RetryPolicy(1, 0, 0), mongo_articles.is_transient, scope=scope,
                      is_timeout=mongo_articles.is_timeout)  # fmt: skip
        mongo = mongo_listings.MongoListings(client, "pagecache", guard)
        await client.admin.command("ping")  # connected first: what times out is the reads
        # No stored listing (a read of an earlier burst may have finished and stored one): each of
        # the concurrent reads below runs the sorted query.
        await client["pagecache"]["listings"].delete_many({})
        await cpu_until_idle(server.pid)  # whatever an earlier burst left running
        try:
            # Twenty sizes: concurrent reads of one listing would share one query.
            outcomes = await asyncio.gather(
                *(mongo.listing(Deadline.after(1.0), 20 + n) for n in range(20)), return_exceptions=True
            )
            # Each read takes ~0.4 s of the server's time: all but a few (a client starved of CPU
            # can see the answer and its own timeout at once) gave up.
            gave_up = sum(isinstance(o, BaseException) for o in outcomes)
            assert gave_up >= 15, f"only {gave_up} of 20 reads timed out at 50 ms"
            return await cpu_until_idle(server.pid)
        finally:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.close(), 5)

    return asyncio.run(burst())


# Should a burst hang again (it did 4 times before the Guard stopped cancelling MongoDB calls),
# the thread method ends it with every thread's stack; the signal method's exception lands inside
# the event loop, and asyncio.run then waits for ever on the tasks it strands.
@pytest.mark.timeout(240, method="thread")
def test_abandoned_reads_stop_on_the_server_only_with_the_time_limit(slow_mongodb: tuple[servers.Server, str]) -> None:
    """Bursts with and without the limit sent, alternately, so that both meet the same machine:
    the stand-in's CPU after them, measured side by side. Alone, either bound flaked beside
    other tests (0.58 s once without the limit, 1.5 s once with it, in 2 of 14 parallel runs)."""
    server, url = slow_mongodb
    with_limit, without = 0.0, 0.0
    for _ in range(2):
        with_limit += cpu_after_a_burst(server, url, scope=pymongo.timeout)
        without += cpu_after_a_burst(server, url, scope=lambda seconds: contextlib.nullcontext())
    assert without > 1.0, (with_limit, without)  # why the limit is sent: the server works on
    assert with_limit < 0.2 * without, (with_limit, without)


class CommandLog(monitoring.CommandListener):
    """The commands a client sent, as (command, collection), as MongoDB saw them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((event.command_name, str(event.command.get(event.command_name))))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def note(slug: str, section: str, published_at: str) -> dict[str, Any]:
    """A short stored article of ``section``."""
    payload = {"slug": slug, "title": f"Nota {slug}", "section": section, "body_html": "<p>x</p>"}
    return article_document({**payload, "published_at": published_at})


async def read_listings(
    url: str, db_name: str, *reads: tuple[int, str | None]
) -> tuple[list[list[str]], list[tuple[str, str]]]:
    """Read listings ``(limit, section)`` at once through one ``MongoListings`` (stored 20 deep),
    as a renderer process does: the slugs each listed, and the commands sent (``endSessions`` aside)."""
    log = CommandLog()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, event_listeners=[log], tz_aware=True)
    breaker = AsyncCircuitBreaker("listing-test", fail_max=1000, reset_timeout=1)
    guard = Guard(breaker, 10.0, RetryPolicy(1, 0, 0), mongo_articles.is_transient)
    mongo = mongo_listings.MongoListings(client, db_name, guard)
    try:
        listings = await asyncio.gather(*(mongo.listing(Deadline.after(10.0), n, s, depth=20) for n, s in reads))
        slugs = [[article["slug"] for article in listing.articles] for listing in listings]
        return slugs, [command for command in log.sent if command[0] != "endSessions"]
    finally:
        await client.close()


def test_a_reader_reads_a_stored_listing_by_id_until_the_listings_change(
    slow_mongodb: tuple[servers.Server, str],
) -> None:
    """A cold front costs two lookups by _id, not a sorted query over the catalogue (which the
    stand-in answers by scanning every article): the first reader after a change runs the query
    and stores its result, fenced by the listings' generation, for every reader after it."""
    _, url = slow_mongodb
    with MongoClient(url) as client:
        database = client["listing_test"]
        database["articles"].insert_many(
            note(f"n{n}", ("rio", "sp")[n % 2], f"2026-11-{1 + n // 100:02d}T{n % 24:02d}:{n % 60:02d}:00Z")
            for n in range(2000)
        )
        expected = [d["slug"] for d in database["articles"].find({"section": "rio"}).sort("published_at", -1).limit(5)]

        def read(section: str | None) -> tuple[list[str], list[tuple[str, str]]]:
            [slugs], sent = asyncio.run(read_listings(url, "listing_test", (5, section)))
            return slugs, sent

        slugs, first = read("rio")
        assert slugs == expected
        assert ("find", "articles") in first and ("update", "listings") in first
        stored = database["listings"].find_one({"_id": "latest:rio"})
        assert stored is not None and len(stored["articles"]) == 20 and "body_html" not in stored["articles"][0]
        for _ in range(2):
            slugs, later = read("rio")
            assert slugs == expected and later == [("find", "listings"), ("find", "listings")]
        # A change behind the publisher's back moves the generation on: the stored listing is
        # outdated, and the next reader queries again.
        database["articles"].insert_one(note("nova", "rio", "2026-12-31T00:00:00Z"))
        outdate_listings(database)
        slugs, after_change = read("rio")
        assert slugs == ["nova", *expected[:4]] and ("find", "articles") in after_change
        # A section nobody published in gets no stored listing (scanners must not create documents).
        assert read("nenhuma")[0] == []
        assert database["listings"].find_one({"_id": "latest:nenhuma"}) is None


def test_the_home_and_the_box_share_one_query_of_the_newest_articles(
    slow_mongodb: tuple[servers.Server, str],
) -> None:
    """The home and the box list the newest articles of every section, so a publish (which renders
    both at once) or two readers missing them together query the catalogue once, not once each."""
    _, url = slow_mongodb
    with MongoClient(url) as client:
        database = client["shared_query_test"]
        database["articles"].insert_many(note(f"n{n}", "rio", f"2026-11-01T{n:02d}:00:00Z") for n in range(24))
        outdate_listings(database)

        (home, box), sent = asyncio.run(read_listings(url, "shared_query_test", (10, None), (5, None)))
        newest = [f"n{n}" for n in range(23, 3, -1)]
        assert home == newest[:10] and box == newest[:5]
        assert sent.count(("find", "articles")) == 1, sent
