"""Purges a Varnish node missed, kept in MongoDB until delivered.

Not in Redis: Redis runs ``allkeys-lru`` without persistence, so memory pressure or a restart would
lose them. MongoDB is the system of record and the publish's commit point: when it can't take the
queue entry, the publish could not have committed either.

One document per node and purge (the same purge queued twice is one entry). A process claims an
entry with a lease (``lease_until``, ``lease``): no two deliver it at once, and one that dies
mid-delivery leaves it to the next after the lease. Every queueing counts in ``wanted``: a
delivery removes the entry only if nobody queued it again meanwhile (that purge is for objects
cached after this delivery's PURGE went out); otherwise the entry is due again at once.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import pymongo

from renderer.resilience import Deadline, Guard

COLLECTION = "purge_queue"


def entry_id(node: str, hard: tuple[str, ...], soft: tuple[str, ...]) -> str:
    """The same purge for the same node is the same entry."""
    return hashlib.sha256(repr((node, hard, soft)).encode()).hexdigest()[:32]


class PurgeStore:
    """The queue's documents: ``{_id, node, hard, soft, queued_at, wanted, attempts, lease_until, lease,
    last_error}``."""

    def __init__(self, client: Any, db_name: str, guard: Guard) -> None:
        # Claims and deliveries read what was just written: the primary, never a lagging secondary.
        self.collection = client[db_name][COLLECTION].with_options(read_preference=pymongo.ReadPreference.PRIMARY)
        self.guard = guard

    async def ensure_indexes(self) -> None:
        """The claim's index (oldest due first)."""
        await self.collection.create_index([("lease_until", pymongo.ASCENDING), ("queued_at", pymongo.ASCENDING)])

    async def _add(self, entries: list[tuple[str, tuple[str, ...], tuple[str, ...]]]) -> None:
        now = time.time()
        await self.collection.bulk_write(
            [
                pymongo.UpdateOne(
                    {"_id": entry_id(node, hard, soft)},
                    {
                        "$setOnInsert": {
                            "node": node,
                            "hard": list(hard),
                            "soft": list(soft),
                            "queued_at": now,
                            "attempts": 0,
                            "lease_until": 0.0,
                            "lease": None,
                        },
                        "$inc": {"wanted": 1},
                    },
                    upsert=True,
                )
                for node, hard, soft in entries
            ],
            ordered=False,
        )

    async def add(self, deadline: Deadline, entries: list[tuple[str, tuple[str, ...], tuple[str, ...]]]) -> None:
        """Queue ``(node, hard keys, soft keys)`` entries (idempotent)."""
        await self.guard.run(deadline, self._add, entries)

    async def _claim(self, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
        claimed = []
        for _ in range(limit):
            now = time.time()
            token = uuid.uuid4().hex
            doc = await self.collection.find_one_and_update(
                {"lease_until": {"$lte": now}},
                {"$set": {"lease_until": now + lease_seconds, "lease": token}, "$inc": {"attempts": 1}},
                sort=[("lease_until", pymongo.ASCENDING), ("queued_at", pymongo.ASCENDING)],
                return_document=pymongo.ReturnDocument.AFTER,
            )
            if doc is None:
                break
            claimed.append(doc)
        return claimed

    async def claim(self, deadline: Deadline, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
        """Up to ``limit`` entries that are due, each leased to this caller for ``lease_seconds``."""
        return await self.guard.run(deadline, self._claim, limit, lease_seconds)

    async def _done(self, entry: dict[str, Any]) -> None:
        ours = {"_id": entry["_id"], "lease": entry["lease"]}
        removed = await self.collection.delete_one({**ours, "wanted": entry.get("wanted")})
        if removed.deleted_count == 0:
            # Queued again during the delivery: due again now, under nobody's lease.
            await self.collection.update_one(ours, {"$set": {"lease_until": 0.0, "lease": None}})

    async def done(self, deadline: Deadline, entry: dict[str, Any]) -> None:
        """Remove a delivered entry (if the lease is still ours and nobody queued it again since
        it was claimed; else it is due again)."""
        await self.guard.run(deadline, self._done, entry)

    async def retry_at(self, deadline: Deadline, entry: dict[str, Any], when: float, error: str) -> None:
        """Keep a failed entry, due again at ``when``."""
        await self.guard.run(
            deadline,
            self.collection.update_one,
            {"_id": entry["_id"], "lease": entry["lease"]},
            {"$set": {"lease_until": when, "last_error": error}},
        )

    async def length(self, deadline: Deadline) -> int:
        """How many entries wait."""
        return int(await self.guard.run(deadline, self.collection.count_documents, {}))

    async def _pending(self, limit: int) -> list[dict[str, Any]]:
        cursor = self.collection.find({}, {"lease": False}).sort("queued_at", pymongo.ASCENDING).limit(limit)
        return [doc async for doc in cursor]

    async def pending(self, deadline: Deadline, limit: int = 1000) -> list[dict[str, Any]]:
        """The oldest ``limit`` entries, for operators."""
        return await self.guard.run(deadline, self._pending, limit)
