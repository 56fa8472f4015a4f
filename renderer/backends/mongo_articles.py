"""Articles in MongoDB, the source of truth, through pymongo's async client."""

from __future__ import annotations

from typing import Any, Callable

import pymongo
import pymongo.errors as mongo_errors
from pymongo import AsyncMongoClient

from renderer.resilience import Deadline, Guard

TRANSIENT_ERRORS = (mongo_errors.ConnectionFailure, mongo_errors.ExecutionTimeout)
COLLECTION = "articles"
_PROJECTION = {"_id": False}


def is_transient(exc: BaseException) -> bool:
    """MongoDB errors worth another try (network, server selection, timeouts)."""
    return isinstance(exc, TRANSIENT_ERRORS)


def connect(url: str, timeout: float) -> AsyncMongoClient[dict[str, Any]]:
    """A client whose every wait is bounded by ``timeout``; retries belong to ``Guard`` alone."""
    millis = max(1, int(timeout * 1000))
    return AsyncMongoClient(
        url,
        serverSelectionTimeoutMS=millis,
        connectTimeoutMS=millis,
        socketTimeoutMS=millis,
        retryReads=False,
        retryWrites=False,
        tz_aware=True,
        appname="pagecache",
    )


class MongoArticles:
    """The MongoDB tier: reads for the page path, writes for publishing and sample data."""

    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        db_name: str,
        guard: Guard,
        on_read: Callable[[], None] = lambda: None,
    ) -> None:
        self.client = client
        self.collection = client[db_name][COLLECTION]
        self.guard = guard
        self._on_read = on_read  # counts every read sent to MongoDB

    async def ensure_indexes(self) -> None:
        """A unique index on the slug, and one for the home page's newest-first listing."""
        await self.collection.create_index("slug", unique=True)
        await self.collection.create_index([("published_at", pymongo.DESCENDING)])

    async def _find(self, slug: str) -> dict[str, Any] | None:
        self._on_read()
        return await self.collection.find_one({"slug": slug, "published": True}, _PROJECTION)

    async def published(self, deadline: Deadline, slug: str) -> dict[str, Any] | None:
        """The published article ``slug``, or None if unknown or unpublished."""
        return await self.guard.run(deadline, self._find, slug)

    async def _latest(self, limit: int) -> list[dict[str, Any]]:
        self._on_read()
        cursor = self.collection.find({"published": True}, _PROJECTION)
        return await cursor.sort("published_at", pymongo.DESCENDING).limit(limit).to_list(limit)

    async def latest(self, deadline: Deadline, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` newest published articles."""
        return await self.guard.run(deadline, self._latest, limit)

    async def ping(self) -> bool:
        """One ``ping`` command, without the breaker: the healthcheck's direct look."""
        await self.client.admin.command("ping")
        return True
