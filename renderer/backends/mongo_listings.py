"""The listings in MongoDB: the newest articles of the home and of each section front (and the
"latest news" box), versioned by one generation.

One document, ``{_id: "generation", value: n}``, bumped by every publish and takedown, versions the
listings as an article's ``version`` versions its page. Beside it, each listing's newest articles as
of a generation (``{_id: "latest:<section>|*"}``), so that a reader who misses Redis makes two
lookups by ``_id``, not a sorted query over the catalogue.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pymongo
import pymongo.errors as mongo_errors
from pymongo import ReadPreference
from pymongo.asynchronous.collection import AsyncCollection

from healthcheck import SingleFlight
from renderer import contract
from renderer.backends.mongo_articles import MongoBackend
from renderer.resilience import Deadline

_GENERATION = {"_id": "generation"}
# What a listing shows of an article: all but its body (and the write's own bookkeeping).
_LISTED_PROJECTION = {"_id": False, "body_html": False, "write_id": False, "writes": False}

log = logging.getLogger("pagecache.mongodb")


def listing_id(section: str | None, apart: int = 0) -> str:
    """The ``_id`` of a stored listing: the newest articles of ``section``, or of all sections;
    one kept ``apart`` (the news sitemap's 1,000) names its depth, so the pages' stay small."""
    return f"latest:{section or '*'}" + (f":{apart}" if apart else "")


@dataclass(frozen=True)
class Listing:
    """The newest articles, as of listings generation ``generation`` (begun at ``changed_at``)."""

    generation: int
    changed_at: float
    articles: list[dict[str, Any]]


class MongoListings(MongoBackend):
    """The listings' reads (for readers and the publisher) and the generation's bump (publishes)."""

    # What a listing's render depends on (the generation, the stored listing, the sorted query) is
    # read from the primary for everyone: from two members, a reader could label a lagging
    # secondary's list with a newer generation.

    @cached_property
    def listings(self) -> AsyncCollection[dict[str, Any]]:
        """The stored listings and their generation."""
        return self.db[contract.LISTINGS_COLLECTION].with_options(read_preference=ReadPreference.PRIMARY)

    @cached_property
    def _listed(self) -> AsyncCollection[dict[str, Any]]:
        return self.db[contract.ARTICLES_COLLECTION].with_options(read_preference=ReadPreference.PRIMARY)

    @cached_property
    def _queries(self) -> SingleFlight[tuple[str, int, int], list[dict[str, Any]]]:
        return SingleFlight()

    async def _generation(self) -> tuple[int, float]:
        self._fail_fast_if_unreachable()
        doc = await self.listings.find_one(_GENERATION)
        return (int(doc["value"]), float(doc.get("changed_at", 0.0))) if doc else (0, 0.0)

    async def _bump_generation(self) -> int:
        self._fail_fast_if_unreachable()
        doc = await self.listings.find_one_and_update(
            _GENERATION,
            {"$inc": {"value": 1}, "$set": {"changed_at": time.time()}},
            upsert=True,
            return_document=pymongo.ReturnDocument.AFTER,
        )
        assert doc is not None  # an upsert returning the document after the update always has one
        return int(doc["value"])

    async def bump_generation(self, deadline: Deadline) -> int:
        """A new listings generation (after a publish or takedown is committed, before its listings
        are rendered): every listing rendered since names a newer version than any before."""
        return await self.guard.run(deadline, self._bump_generation)

    async def _query_latest(self, limit: int, section: str | None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"published": True}
        if section is not None:
            query["section"] = section
        cursor = self._listed.find(query, _LISTED_PROJECTION)
        return await cursor.sort("published_at", pymongo.DESCENDING).limit(limit).to_list(limit)

    async def _listing(self, limit: int, section: str | None, depth: int, caller: str, doc_id: str) -> Listing:
        self._fail_fast_if_unreachable()
        self._on_read(caller)
        generation, changed_at = await self._generation()
        stored = await self.listings.find_one({"_id": doc_id})
        if stored is not None and stored["generation"] >= generation and stored["depth"] >= limit:
            return Listing(int(stored["generation"]), float(stored["changed_at"]), stored["articles"][:limit])
        # Outdated (a change since, or articles written behind the publisher's back) or missing:
        # the query, whose result is kept for the next reader that misses Redis.
        articles = await self._query_once(doc_id, section, generation, changed_at, max(limit, depth))
        return Listing(generation, changed_at, articles[:limit])

    async def _query_once(
        self, doc_id: str, section: str | None, generation: int, changed_at: float, depth: int
    ) -> list[Any]:
        """Query and keep the newest ``depth`` articles of ``section`` as of ``generation``, once
        for every caller that wants them meanwhile: the home and the box list the same articles,
        and a publish renders both at once. A caller that gives up leaves the query to the rest; it
        runs in the first caller's context, so within that caller's time limit."""

        async def query_and_keep() -> list[dict[str, Any]]:
            articles = await self._query_latest(depth, section)
            await self._keep_listing(doc_id, generation, changed_at, depth, articles)
            return articles

        return await self._queries.do((doc_id, generation, depth), query_and_keep)

    async def _keep_listing(
        self, doc_id: str, generation: int, changed_at: float, depth: int, articles: list[dict[str, Any]]
    ) -> None:
        """Store a listing unless a newer generation is stored (``rendered_page.may_replace``: an
        equal one is replaced, the same generation read later), so a slow reader never replaces a
        newer listing. A section without articles gets no document (a scanner's made-up section
        must not create one); an existing one is emptied."""
        fenced = {"_id": doc_id, "generation": {"$lte": generation}}
        update = {"$set": {"generation": generation, "changed_at": changed_at, "depth": depth, "articles": articles}}
        try:
            await self.listings.update_one(fenced, update, upsert=bool(articles))
        except mongo_errors.DuplicateKeyError:
            pass  # a newer one is there: the upsert lost to it
        except mongo_errors.PyMongoError as exc:
            log.info("listing %s not kept: %r", doc_id, exc)  # the next miss queries again

    async def listing(
        self, deadline: Deadline, limit: int, section: str | None = None, depth: int = 0, apart: bool = False
    ) -> Listing:
        """The ``limit`` newest published articles (of ``section``, when given), without their
        bodies, labelled with the listings' generation they are at least as new as.

        One lookup by ``_id`` while the stored listing is current: the sorted query runs only after
        a change, and its result (``depth`` articles) is stored for every later reader; ``apart``
        from the listing of that section other readers share, when it is much deeper than theirs.
        """
        depth = max(depth, limit)
        doc_id = listing_id(section, depth if apart else 0)
        return await self.guard.run(deadline, self._listing, limit, section, depth, deadline.caller, doc_id)
