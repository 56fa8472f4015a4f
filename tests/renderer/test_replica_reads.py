"""Listings read from one consistent place: with ``readPreference=secondaryPreferred`` (what the
Kubernetes config ships), page reads go to a secondary, but everything a listing's render depends
on — the generation, the stored listing, the sorted query, the stored result — goes to the
primary. Otherwise a reader could label a lagging secondary's list with the primary's newer
generation, and that record (an equal generation replaces) would stand as current.

FerretDB is one node; ``tests/fake_replica_set.py`` makes the driver see a replica set of proxies
and names the member each command went to.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterator

import pytest
from pymongo import AsyncMongoClient, MongoClient, monitoring

from devstack import servers
from devstack.samples import article_document
from renderer.backends import mongo_articles, mongo_listings
from renderer.resilience import AsyncCircuitBreaker, Deadline, Guard, RetryPolicy
from tests.fake_replica_set import FakeReplicaSet


class MemberLog(monitoring.CommandListener):
    """(command, collection, member) of every command sent, as the server got it."""

    def __init__(self, replica_set: FakeReplicaSet) -> None:
        self.replica_set = replica_set
        self.sent: list[tuple[str, str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name != "endSessions":
            target = str(event.command.get(event.command_name))
            self.sent.append((event.command_name, target, self.replica_set.member_of(event.connection_id)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def store(url: str, titles: dict[str, str], generation: int) -> None:
    """Articles (slug → title, newest last) and the listings' generation, written to one server."""
    with MongoClient(url) as client:
        db = client["pagecache"]
        for n, (slug, title) in enumerate(titles.items()):
            payload = {"slug": slug, "title": title, "section": "rio", "body_html": "<p>x</p>"}
            db["articles"].insert_one(article_document({**payload, "published_at": f"2026-11-2{n}T10:00:00Z"}))
        db["listings"].insert_one({"_id": "generation", "value": generation, "changed_at": 1.0})


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[int, int]]:
    started = [servers.ferretdb(tmp_path / name, servers.free_port()).start() for name in ("a", "b")]
    try:
        yield started[0].port, started[1].port
    finally:
        for server in started:
            server.stop()


async def read_through(replica_set: FakeReplicaSet, reads: Any) -> list[tuple[str, str, str]]:
    """Run ``reads(mongo)`` through a reader's ``MongoArticles`` (as a renderer builds it from a
    URL with ``readPreference=secondaryPreferred``); the commands it sent, with their member."""
    log = MemberLog(replica_set)
    url = replica_set.url("readPreference=secondaryPreferred")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, event_listeners=[log], tz_aware=True)
    guard = Guard(AsyncCircuitBreaker("replica-test", fail_max=1000, reset_timeout=1), 10.0, RetryPolicy(1, 0, 0),
                  mongo_articles.is_transient)  # fmt: skip
    try:
        await client.admin.command("ping")  # the set discovered, primary and secondary known
        log.sent.clear()
        await reads(
            mongo_articles.MongoArticles(client, "pagecache", guard),
            mongo_listings.MongoListings(client, "pagecache", guard),
        )
        return log.sent
    finally:
        await client.close()


def test_every_read_a_listing_depends_on_goes_to_the_primary(two_servers: tuple[int, int]) -> None:
    primary, _ = two_servers
    store(f"mongodb://127.0.0.1:{primary}/", {"antiga": "Antiga", "nova": "Nova"}, generation=2)
    replica_set = FakeReplicaSet(primary, primary)  # both members in front of one server: same data
    try:

        async def reads(mongo: mongo_articles.MongoArticles, listings: mongo_listings.MongoListings) -> None:
            listing = await listings.listing(Deadline.after(10), 10, "rio", depth=20)
            assert [a["slug"] for a in listing.articles] == ["nova", "antiga"]
            await listings.listing(Deadline.after(10), 10, "rio", depth=20)  # the stored one, this time
            assert (await mongo.article(Deadline.after(10), "nova")) is not None

        sent = asyncio.run(read_through(replica_set, reads))
    finally:
        replica_set.close()
    listing_commands, article_read = sent[:-1], sent[-1]
    # The generation, the stored listing (none yet), the sorted query, the result stored; then
    # the generation and the stored listing again.
    assert [command[:2] for command in listing_commands[:3]] == [
        ("find", "listings"),
        ("find", "listings"),
        ("find", "articles"),
    ]
    assert {member for *_, member in listing_commands} == {"primary"}, sent
    # A page's own read follows the configured preference.
    assert article_read == ("find", "articles", "secondary"), sent


def test_a_lagging_secondary_never_feeds_a_listing(two_servers: tuple[int, int]) -> None:
    """The secondary fronts a server of its own, a publish behind the primary: the listing must be
    the primary's (its article, its generation), never the secondary's older list."""
    primary, lagging = two_servers
    store(f"mongodb://127.0.0.1:{primary}/", {"antiga": "Antiga", "nova": "Nova"}, generation=2)
    store(f"mongodb://127.0.0.1:{lagging}/", {"antiga": "Antiga"}, generation=1)
    replica_set = FakeReplicaSet(primary, lagging)
    seen: list[Any] = []
    try:

        async def reads(mongo: mongo_articles.MongoArticles, listings: mongo_listings.MongoListings) -> None:
            for section in ("rio", None):
                seen.append(await listings.listing(Deadline.after(10), 10, section, depth=20))

        asyncio.run(read_through(replica_set, reads))
    finally:
        replica_set.close()
    for listing in seen:
        assert (listing.generation, [a["slug"] for a in listing.articles]) == (2, ["nova", "antiga"])
