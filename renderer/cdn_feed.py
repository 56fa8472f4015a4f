"""The CDN's reader of the purge log: every renderer process is a consumer in one group (``cdn``),
so each event is purged at the CDN once, by whichever process read it, after every live Varnish
node has applied it (a CDN purged earlier would refetch a node's old copy and keep it).

An event whose CDN purge failed stays pending in the group; any process claims it again once it
has been idle ``retry_after`` (``XAUTOCLAIM``), the dead processes' too. The log is the durable part.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

import redis.exceptions as redis_errors

from healthcheck import describe_error
from renderer.cdn import CdnPurger
from renderer.metrics import Metrics
from renderer.purge import Purge
from renderer.purge_log import CDN_GROUP, LOG_KEY, PurgeEvent, PurgeLog, id_key, id_ms
from renderer.resilience import Deadline

log = logging.getLogger("pagecache.cdn_feed")
BATCH = 20
READ_BLOCK_MS = 1000


class CdnFeed:
    """Purges the CDN from the log."""

    def __init__(
        self,
        purge_log: PurgeLog,
        reader: Any,
        cdn: CdnPurger,
        deadline_seconds: float,
        retry_after: float,
        max_age: float,
        metrics: Metrics,
    ) -> None:
        self.log = purge_log
        self.reader = reader  # a client whose socket timeout outlasts a blocking read
        self.cdn = cdn
        self.deadline_seconds = deadline_seconds
        self.retry_after = retry_after
        self.max_age = max_age
        self.metrics = metrics
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"

    async def _ensure_group(self) -> None:
        try:
            # From the log's end: a CDN purge is only worth sending for changes made from now on
            # (what the CDN holds is older than this group only on a first deploy).
            await self.reader.xgroup_create(LOG_KEY, CDN_GROUP, "$", mkstream=True)
        except redis_errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def handle(self, batch: list[tuple[str, PurgeEvent]]) -> bool:
        """Purge the CDN for a batch of events in one purge (the union of their keys: a plan's
        rate limit counts requests), once every live node has applied the newest; True when done."""
        now = time.time()
        done = [event_id for event_id, event in batch if not event.cdn]
        stale = [(i, e) for i, e in batch if e.cdn and now - id_ms(i) > self.max_age]
        for _, event in stale:
            self.metrics.purges_dropped.labels("too-old").inc()
            log.warning("dropped a CDN purge older than the log keeps: %s", event.purge.describe())
        due = [(i, e) for i, e in batch if e.cdn and (i, e) not in stale]
        if due:
            hard = tuple(sorted({key for _, e in due for key in e.purge.hard}))
            soft = tuple(sorted({key for _, e in due for key in e.purge.soft} - set(hard)))
            purge = Purge(hard, soft, max(e.purge.box_version for _, e in due))
            deadline = Deadline.after(self.deadline_seconds)
            try:
                newest = max((i for i, e in due if not e.cdn_only), key=id_key, default=None)
                if newest is not None:
                    # A node still behind at the deadline does not hold the CDN back: when it applies
                    # the event (later than the publish deadline) it appends a rebound for the CDN.
                    await self.log.wait_applied(deadline, newest, await self.log.last_ack(deadline))
                await self.cdn.purge(deadline, purge)
            except Exception as exc:
                self.metrics.purges.labels(self.cdn.target, "failed").inc()
                log.warning("CDN purge of %s failed (tried again later): %s", purge.describe(), describe_error(exc))
                due = []
            else:
                self.metrics.purges.labels(self.cdn.target, "purged").inc()
        acked = done + [i for i, _ in stale] + [i for i, _ in due]
        if acked:
            await self.reader.xack(LOG_KEY, CDN_GROUP, *acked)
        for event_id, _ in due:
            await self.log.acked(self.cdn.target, event_id)
        return len(acked) == len(batch)

    async def _batch(self) -> list[tuple[str, PurgeEvent]]:
        # Failed ones (ours or a dead process's) first, once they have waited retry_after.
        # Idle longer than any handling can take (a purge waits up to its deadline for the nodes
        # and the rate limit): a process never takes an event another one is still purging.
        min_idle = max(self.retry_after, self.deadline_seconds + 1.0)
        claimed = await self.reader.xautoclaim(
            LOG_KEY, CDN_GROUP, self.consumer, int(min_idle * 1000), "0-0", count=BATCH
        )
        entries = list(claimed[1])
        if not entries:
            answer = await self.reader.xreadgroup(CDN_GROUP, self.consumer, {LOG_KEY: ">"}, BATCH, READ_BLOCK_MS)
            entries = [entry for _, stream_entries in answer or [] for entry in stream_entries]
        return [(_text(i), PurgeEvent.from_fields(values)) for i, values in entries if values]

    async def close(self) -> None:
        """Close the CDN API's connection pool."""
        await self.cdn.close()

    async def run(self) -> None:
        """Read and purge until cancelled."""
        while True:
            try:
                await self._ensure_group()
                while True:
                    batch = await self._batch()
                    if batch:
                        await self.handle(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("CDN feed paused: %s", describe_error(exc))
                await asyncio.sleep(max(0.2, min(self.retry_after, 2.0)))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
