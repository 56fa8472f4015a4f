"""Articles in MongoDB, the source of truth, through pymongo's async client (the listings that
show them: ``mongo_listings``)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Callable

import pymongo
import pymongo.errors as mongo_errors
from pymongo import AsyncMongoClient, ReadPreference
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.server_type import SERVER_TYPE

from renderer import contract
from renderer.articles import article_fields
from renderer.resilience import Deadline, Guard

TRANSIENT_ERRORS = (mongo_errors.ConnectionFailure, mongo_errors.ExecutionTimeout)
_PROJECTION = {"_id": False}

log = logging.getLogger("pagecache.mongodb")


class VersionConflict(Exception):
    """The article's version is not the one the writer expected (optimistic concurrency)."""

    def __init__(self, current: int | None) -> None:
        super().__init__(f"current version is {current}" if current else "article does not exist")
        self.current = current


class Unreachable(mongo_errors.AutoReconnect):
    """Every known MongoDB server failed its last check (refused, reset): failing now beats
    waiting out server selection, which pymongo does for ``serverSelectionTimeoutMS`` even when the
    server refuses connections at once."""


# How often pymongo's monitor re-checks each server: how soon a server that came back is used again.
HEARTBEAT_MS = 1000


def fail_fast_if_unreachable(client: AsyncMongoClient[dict[str, Any]]) -> None:
    """Raise ``Unreachable`` when the driver already knows that no server can be reached."""
    servers = list(client.topology_description.server_descriptions().values())
    if servers and all(s.server_type == SERVER_TYPE.Unknown and s.error is not None for s in servers):
        raise Unreachable(f"no MongoDB server reachable: {servers[0].error}")


@dataclass(frozen=True)
class Saved:
    """What a save committed: the stored document (the current one), whether it created the
    article, the version it replaced (None when created, or when it fell out of the recent writes;
    found again by a retry, it holds only the section), and, when a later save is current, the
    version this one made."""

    doc: dict[str, Any]
    created: bool
    previous: dict[str, Any] | None
    committed: int | None = None

    @property
    def version(self) -> int:
        """The version this save made."""
        return self.committed if self.committed is not None else int(self.doc["version"])


# Every write that makes a version pushes {"id": write id, "section": the section it set, or None
# for a takedown} onto the document's ``writes``, the last RECENT_WRITES kept: a retried write
# finds there whether it committed (a later write may have replaced the document since), which
# version it made (one entry per version) and the section the article was in before it.
RECENT_WRITES = 16


def recent_write(write_id: str, section: str | None) -> dict[str, Any]:
    """The ``$push`` that records a write on its document."""
    return {"writes": {"$each": [{"id": write_id, "section": section}], "$slice": -RECENT_WRITES}}


def committed_save(current: dict[str, Any] | None, write_id: str) -> Saved | None:
    """What an earlier attempt of the write ``write_id`` committed, if it did (its reply lost)."""
    if current is None:
        return None
    writes = current.get("writes") or []
    ids = [entry["id"] for entry in writes]
    if write_id not in ids:
        if current.get("write_id") == write_id:  # written before ``writes`` was kept
            return Saved(current, current["version"] == 1, None)
        return None
    at = len(ids) - 1 - ids[::-1].index(write_id)
    version = current["version"] - (len(ids) - 1 - at)
    before = next((entry["section"] for entry in reversed(writes[:at]) if entry.get("section")), None)
    return Saved(current, version == 1, {"section": before} if before else None, version)


# Fields of an article a save may leave out (published_at aside: an update keeps the first one).
OPTIONAL_FIELDS = tuple(
    name for name, (required, _, _) in article_fields().items() if not required and name != "published_at"
)


def is_transient(exc: BaseException) -> bool:
    """MongoDB errors worth another try (network, server selection, timeouts)."""
    return isinstance(exc, TRANSIENT_ERRORS)


def is_timeout(exc: BaseException) -> bool:
    """An attempt that ran out of its time: ours, the driver's, or the server's (maxTimeMS)."""
    return isinstance(exc, TimeoutError) or (isinstance(exc, mongo_errors.PyMongoError) and exc.timeout)


def connect(url: str, timeout: float, longest_call: float) -> AsyncMongoClient[dict[str, Any]]:
    """A client that connects within ``timeout`` and never waits on a socket past ``longest_call``.

    Each call's own, shorter bound is its ``Guard``'s timeout; retries belong to ``Guard`` alone.
    """
    millis = max(1, int(timeout * 1000))
    return AsyncMongoClient(
        url,
        serverSelectionTimeoutMS=millis,
        connectTimeoutMS=millis,
        socketTimeoutMS=max(millis, int(longest_call * 1000)),
        heartbeatFrequencyMS=HEARTBEAT_MS,
        retryReads=False,
        retryWrites=False,
        tz_aware=True,
        appname="pagecache",
    )


# An unconditional takedown tries its atomic update again this often when saves keep republishing
# the article between its update and its look at what is stored.
UNPUBLISH_TRIES = 3


class MongoBackend:
    """What every MongoDB backend of a process holds: the client, the database, its guard, the
    read counter, and whether it fails fast.

    ``primary``: the write path's instance. Every read goes to the primary, and no call fails fast
    on a server the driver last saw failing: after a dropped connection (a write whose reply was
    lost, say) the driver re-checks the server at once, and the retry must reach it to find what
    committed. Readers fail fast: they have a stale copy to serve instead.
    """

    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        db_name: str,
        guard: Guard,
        on_read: Callable[[str], None] = lambda caller: None,
        primary: bool = False,
    ) -> None:
        self.client = client
        self.db = client[db_name]
        self.guard = guard
        self.primary = primary
        self._on_read = on_read  # counts every read sent to MongoDB, by the deadline's caller

    def _fail_fast_if_unreachable(self) -> None:
        if not self.primary:  # readers fail fast
            fail_fast_if_unreachable(self.client)


class MongoArticles(MongoBackend):
    """The MongoDB tier: reads for the page path, writes for publishing and sample data."""

    @cached_property
    def collection(self) -> AsyncCollection[dict[str, Any]]:
        """The articles: page reads follow MONGODB_URL's read preference; the write path's, the primary."""
        collection = self.db[contract.ARTICLES_COLLECTION]
        return collection.with_options(read_preference=ReadPreference.PRIMARY) if self.primary else collection

    async def ensure_indexes(self) -> None:
        """A unique index on the slug, and the newest-first listings' (home, box, section fronts)."""
        await self.collection.create_index("slug", unique=True)
        await self.collection.create_index([("published_at", pymongo.DESCENDING)])
        await self.collection.create_index([("section", pymongo.ASCENDING), ("published_at", pymongo.DESCENDING)])

    async def _find(self, slug: str, caller: str) -> dict[str, Any] | None:
        self._fail_fast_if_unreachable()
        self._on_read(caller)
        # By _id alone: the slug is the primary key, and FerretDB pushes down only such lookups.
        return await self.collection.find_one({"_id": slug}, _PROJECTION)

    async def article(self, deadline: Deadline, slug: str) -> dict[str, Any] | None:
        """Article ``slug`` (``published`` false when taken down), or None if unknown."""
        return await self.guard.run(deadline, self._find, slug, deadline.caller)

    async def ping(self) -> bool:
        """One ``ping`` command, without the breaker: the healthcheck's direct look."""
        await self.client.admin.command("ping")
        return True

    async def _save(self, slug: str, fields: dict[str, Any], expected: int | None, write_id: str) -> Saved:
        self._fail_fast_if_unreachable()
        current = await self.collection.find_one({"_id": slug}, _PROJECTION)
        earlier = committed_save(current, write_id)
        if earlier is not None:
            # An earlier attempt of this same save committed, though its reply never arrived
            # (and a later save may have landed on top: it is not applied again, nor a conflict).
            return earlier
        if expected is None:
            return await self._overwrite(slug, fields, write_id)
        # With If-Match: a compare-and-swap on the version the editor saw.
        if current is None or current["version"] != expected:
            raise VersionConflict(current["version"] if current else None)
        now = datetime.now(UTC)
        doc = {
            **fields,
            "slug": slug,
            "published_at": fields.get("published_at") or current.get("published_at") or now,
            "updated_at": now,
            "version": expected + 1,
            "published": True,
            "write_id": write_id,
            "writes": [*(current.get("writes") or []), {"id": write_id, "section": fields["section"]}][-RECENT_WRITES:],
        }
        result = await self.collection.replace_one({"_id": slug, "version": expected}, {"_id": slug, **doc})
        if result.matched_count == 1:
            return Saved(doc, False, current)
        ours = committed_save(await self.collection.find_one({"_id": slug}, _PROJECTION), write_id)
        if ours is not None:
            return ours
        raise VersionConflict(None)

    async def _overwrite(self, slug: str, fields: dict[str, Any], write_id: str) -> Saved:
        """Without If-Match the last writer wins: one atomic update that takes the next version
        whatever it is, so racing writers each get their own (none is refused or retried)."""
        now = datetime.now(UTC)
        changes = {**fields, "slug": slug, "updated_at": now, "published": True, "write_id": write_id}
        update: dict[str, Any] = {
            "$set": changes,
            "$inc": {"version": 1},
            "$push": recent_write(write_id, fields["section"]),
        }
        # A save replaces the article: an optional field it leaves out is gone.
        dropped = [name for name in OPTIONAL_FIELDS if name not in fields]
        if dropped:
            update["$unset"] = {name: "" for name in dropped}
        if "published_at" not in fields:
            update["$setOnInsert"] = {"published_at": now}  # an update keeps its first publication time
        # No projection: FerretDB's findAndModify refuses one; _id is dropped below instead.
        previous = await self.collection.find_one_and_update(
            {"_id": slug}, update, upsert=True, return_document=pymongo.ReturnDocument.BEFORE
        )
        if previous is not None:
            previous.pop("_id", None)
        doc = {key: value for key, value in (previous or {}).items() if key not in (*dropped, "writes")}
        doc.update(changes, version=(previous or {}).get("version", 0) + 1)
        doc.setdefault("published_at", now)
        return Saved(doc, previous is None, previous)

    async def save(self, deadline: Deadline, slug: str, fields: dict[str, Any], expected_version: int | None) -> Saved:
        """Create or replace article ``slug`` as the next version: the commit point of a publish.

        ``VersionConflict`` when ``expected_version`` is given and is not the current one, or
        another writer got there first; without it the last writer wins.
        """
        # One id for every attempt, so a retry recognises an attempt that committed unseen.
        return await self.guard.run(deadline, self._save, slug, fields, expected_version, uuid.uuid4().hex)

    async def _unpublish(self, slug: str, expected: int | None, write_id: str) -> dict[str, Any] | None:
        self._fail_fast_if_unreachable()
        # Not if an earlier attempt of this takedown committed (a save may have republished since).
        # ($nor, not $ne or $elemMatch on the array: the FerretDB stand-in gets those wrong.)
        match: dict[str, Any] = {"_id": slug, "published": True, "$nor": [{"writes.id": write_id}]}
        if expected is not None:
            match["version"] = expected  # If-Match: only the version the editor saw
        update = {
            "$set": {"published": False, "updated_at": datetime.now(UTC), "write_id": write_id},
            "$inc": {"version": 1},
            "$push": recent_write(write_id, None),
        }
        # One atomic update that takes the next version whatever it is: a takedown without If-Match
        # never loses to a save that lands between reading the version and writing the next one.
        # A save may republish the article between a miss here and the look below: take it down
        # again (a few times at most; each try is one atomic update).
        for _ in range(UNPUBLISH_TRIES):
            done = await self.collection.find_one_and_update(
                match, update, return_document=pymongo.ReturnDocument.AFTER
            )
            if done is not None:
                done.pop("_id", None)
                return done
            current = await self.collection.find_one({"_id": slug}, _PROJECTION)
            if current is None:
                return None
            earlier = committed_save(current, write_id)
            if earlier is not None and earlier.version != current["version"]:
                # This takedown committed (its reply lost) and a save republished it since: the
                # answer is the takedown's version; it is not taken down a second time.
                return {**current, "version": earlier.version, "published": False}
            if earlier is not None or not current.get("published"):
                # An earlier attempt of this same unpublish committed (its reply lost), or another
                # takedown did: what committed is the answer, never a 412 or a second version.
                return current
            if expected is not None:
                raise VersionConflict(current["version"])
        raise VersionConflict(None)

    async def unpublish(self, deadline: Deadline, slug: str, expected_version: int | None) -> dict[str, Any] | None:
        """Mark article ``slug`` unpublished (a new version); None if there is no such article."""
        return await self.guard.run(deadline, self._unpublish, slug, expected_version, uuid.uuid4().hex)
