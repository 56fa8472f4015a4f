"""Rendered pages in Redis: ``page:<id>`` (fresh), ``stale:<id>`` (last good), ``lock:page:<id>``."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.lock import Lock
from redis.backoff import NoBackoff
from redis.retry import Retry

from renderer import contract
from renderer.pages import RenderedPage
from renderer.resilience import Deadline, Guard

TRANSIENT_ERRORS = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
)


def is_transient(exc: BaseException) -> bool:
    """Redis errors worth another try (not, say, a WRONGTYPE reply)."""
    return isinstance(exc, TRANSIENT_ERRORS)


def connect(url: str, timeout: float) -> Any:
    """A Redis client that never waits longer than ``timeout`` and never retries by itself.

    The defaults hang for about a minute on a frozen server, and retries belong to one layer only
    (tenacity, in ``Guard``). A ``redis+cluster://`` URL names a Redis Cluster.
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if url.startswith("redis+cluster://"):
        return aioredis.RedisCluster.from_url("redis://" + url[len("redis+cluster://") :], **options)
    return aioredis.Redis.from_url(url, **options)


class RedisPages:
    """The Redis tier. Every method takes the request's deadline and runs under the Redis guard."""

    def __init__(self, client: Any, guard: Guard, page_ttl: int, stale_ttl: int, lock_ttl: float):
        self.client = client
        self.guard = guard
        self.page_ttl = page_ttl
        self.stale_ttl = stale_ttl
        self.lock_ttl = lock_ttl

    async def _get(self, key: str) -> RenderedPage | None:
        value = await self.client.get(key)
        return None if value is None else RenderedPage.from_bytes(value)

    async def fresh(self, deadline: Deadline, cache_id: str) -> RenderedPage | None:
        """The page at ``page:<id>``, or None on a miss."""
        return await self.guard.run(deadline, self._get, contract.page_key(cache_id))

    async def stale(self, deadline: Deadline, cache_id: str) -> RenderedPage | None:
        """The last good page at ``stale:<id>``, or None."""
        return await self.guard.run(deadline, self._get, contract.stale_key(cache_id))

    async def _store(self, cache_id: str, page: RenderedPage, ttl: int) -> None:
        value = page.to_bytes()
        # Not a transaction: page: and stale: may live in different cluster hash slots.
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(contract.page_key(cache_id), value, ex=ttl)
            if page.status == 200:
                pipe.set(contract.stale_key(cache_id), value, ex=self.stale_ttl)
            await pipe.execute()

    async def store(self, deadline: Deadline, cache_id: str, page: RenderedPage, ttl: int | None = None) -> None:
        """Write ``page:<id>`` (``ttl``, default the page TTL) and, for a 200, ``stale:<id>``."""
        await self.guard.run(deadline, self._store, cache_id, page, ttl or self.page_ttl)

    async def _acquire(self, cache_id: str) -> Lock | None:
        lock = self.client.lock(contract.lock_key(cache_id), timeout=self.lock_ttl, blocking=False)
        return lock if await lock.acquire() else None

    async def try_lock(self, deadline: Deadline, cache_id: str) -> Lock | None:
        """Take ``lock:page:<id>`` (SET NX PX) if no other process holds it; None otherwise."""
        return await self.guard.run(deadline, self._acquire, cache_id)

    async def unlock(self, deadline: Deadline, lock: Lock) -> None:
        """Release a lock taken by ``try_lock`` (a lock that already expired is ignored)."""

        async def release() -> None:
            try:
                await lock.release()
            except redis_errors.LockError:
                pass

        await self.guard.run(deadline, release)

    async def ping(self) -> bool:
        """One PING, without the breaker: the healthcheck's direct look at the server."""
        return bool(await self.client.ping())
