"""Invalidation on every Varnish node at once, and a durable queue for nodes that miss it (DESIGN §4)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential_jitter

from healthcheck import describe_error
from renderer.backends.redis_pages import RedisPages
from renderer.metrics import Metrics
from renderer.resilience import Deadline

log = logging.getLogger("pagecache.purge")

PURGED = "purged"


@dataclass(frozen=True)
class Purge:
    """Surrogate keys to purge on a node, in one PURGE request: ``hard`` ones are gone at once,
    ``soft`` ones keep their old copy for the one refetch that replaces it (no herd)."""

    hard: tuple[str, ...] = ()
    soft: tuple[str, ...] = ()

    def headers(self) -> dict[str, str]:
        """The xkey headers the VCL's admin listener reads."""
        headers = {}
        if self.hard:
            headers["xkey-purge"] = " ".join(self.hard)
        if self.soft:
            headers["xkey-softpurge"] = " ".join(self.soft)
        return headers

    def describe(self) -> str:
        """For logs."""
        return " ".join([*(f"{key} (hard)" for key in self.hard), *self.soft])

    @classmethod
    def from_entry(cls, item: dict[str, Any]) -> Purge:
        """The purge in a queue entry (``queue_entry``; entries of the older keys/soft form too)."""
        if "keys" in item:
            keys = tuple(item["keys"].split())
            return cls(soft=keys) if item["soft"] else cls(hard=keys)
        return cls(tuple(item["hard"]), tuple(item["soft"]))


class NodeRefused(Exception):
    """A Varnish node answered the purge with something other than 200."""


class VarnishPurger:
    """Sends xkey purges to every node in ``VARNISH_URLS`` concurrently, with retries."""

    def __init__(self, nodes: tuple[str, ...], timeout: float, attempts: int, metrics: Metrics) -> None:
        self.nodes = tuple(node.rstrip("/") for node in nodes)
        self.timeout = timeout
        self.attempts = attempts
        self.metrics = metrics
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()

    async def _send(self, node: str, purge: Purge, request_id: str | None) -> None:
        headers = purge.headers()
        if request_id:
            headers["X-Request-Id"] = request_id
        async with self._client().request("PURGE", node + "/", headers=headers) as resp:
            await resp.read()
            if resp.status != 200:
                raise NodeRefused(f"HTTP {resp.status}")

    async def purge_node(self, node: str, purge: Purge, request_id: str | None = None) -> str:
        """``"purged"``, or what went wrong after every attempt."""
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential_jitter(multiplier=0.05, jitter=0.05, max=0.5),
                reraise=True,
            ):
                with attempt:
                    await self._send(node, purge, request_id)
        except Exception as exc:
            result = describe_error(exc)
            self.metrics.purges.labels(node, "failed").inc()
            log.warning("purge of %s on %s failed: %s", purge.describe(), node, result)
            return result
        self.metrics.purges.labels(node, PURGED).inc()
        return PURGED

    async def purge(self, purge: Purge, request_id: str | None = None) -> dict[str, str]:
        """Purge on every node at once; node -> ``"purged"`` or its error."""
        results = await asyncio.gather(*(self.purge_node(n, purge, request_id) for n in self.nodes))
        return dict(zip(self.nodes, results, strict=True))


def queue_entry(node: str, purge: Purge) -> str:
    """The queued form of a purge that a node missed."""
    return json.dumps({"node": node, "hard": purge.hard, "soft": purge.soft, "queued_at": time.time()})


class PurgeQueue:
    """Retries queued purges until each node has taken its own; nothing is dropped on failure."""

    def __init__(self, redis: RedisPages, purger: VarnishPurger, interval: float, metrics: Metrics) -> None:
        self.redis = redis
        self.purger = purger
        self.interval = interval
        self.metrics = metrics

    async def record(self, deadline: Deadline, missed: dict[str, str], purge: Purge) -> str:
        """Queue the nodes in ``missed``; the step's outcome in words."""
        try:
            await self.redis.enqueue_purges(deadline, [queue_entry(node, purge) for node in missed])
        except Exception as exc:
            log.error("could not queue purges for %s: %r", sorted(missed), exc)
            return f"not queued ({describe_error(exc)})"
        return "queued"

    async def retry_pending(self) -> int:
        """One pass over the queue; how many queued purges were delivered."""
        deadline = Deadline.after(max(self.interval, 1.0) * 5)
        length = await self.redis.purge_queue_length(deadline)
        self.metrics.purge_queue.set(length)
        # One cheap LLEN per pass while nothing waits; one process at a time retries.
        if length == 0 or not await self.redis.claim_purge_queue(deadline, self.interval):
            return 0
        entries = await self.redis.pending_purges(deadline)
        delivered = 0

        async def deliver(entry: str) -> None:
            nonlocal delivered
            item: dict[str, Any] = json.loads(entry)
            if await self.purger.purge_node(item["node"], Purge.from_entry(item)) == PURGED:
                await self.redis.purge_done(deadline, entry)
                delivered += 1

        await asyncio.gather(*(deliver(entry) for entry in entries))
        self.metrics.purge_queue.set(await self.redis.purge_queue_length(deadline))
        return delivered

    async def run(self) -> None:
        """Retry the queue every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.retry_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("purge queue pass failed: %r", exc)
