"""Rendered pages in Redis: ``page:<id>`` (fresh), ``stale:<id>`` (last good), ``lock:page:<id>``."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import replace
from typing import Any, Callable

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.lock import Lock
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from renderer import contract
from renderer.rendered_page import RenderedPage
from renderer.resilience import Deadline, Guard

log = logging.getLogger("pagecache.redis")

TRANSIENT_ERRORS = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    # During a Sentinel failover: the old primary, now a replica, refuses writes until we reconnect.
    redis_errors.ReadOnlyError,
)


def is_transient(exc: BaseException) -> bool:
    """Redis errors worth another try (not, say, a WRONGTYPE reply)."""
    return isinstance(exc, TRANSIENT_ERRORS)


def sentinel_master(url: str, **options: Any) -> aioredis.Redis:
    """A client of the master that Sentinel names: ``redis+sentinel://host:port,host:port/service[/db]``.

    Sentinel's client asks the sentinels where the master is when it connects, and again after a
    connection to it fails: a failover costs the calls in flight, then the new master is used.
    """
    rest = url[len("redis+sentinel://") :]
    hosts, _, path = rest.partition("/")
    service, _, db = path.partition("/")
    if not hosts or not service:
        raise ValueError(f"a Sentinel URL is redis+sentinel://host:port[,host:port...]/service[/db]: {url!r}")
    sentinels = [(host.rsplit(":", 1)[0], int(host.rsplit(":", 1)[1])) for host in hosts.split(",")]
    timeout = options.get("socket_timeout")
    kwargs = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    sentinel = Sentinel(sentinels, sentinel_kwargs=kwargs)  # type: ignore[no-untyped-call]
    master: aioredis.Redis = sentinel.master_for(service, db=int(db or 0), **options)
    return master


def connect(url: str, timeout: float) -> Any:
    """A Redis client that never waits longer than ``timeout`` and never retries by itself.

    The defaults hang for about a minute on a frozen server, and retries belong to one layer only
    (tenacity, in ``Guard``). A ``redis+cluster://`` URL names a Redis Cluster, a
    ``redis+sentinel://`` one a primary with replicas that Sentinel fails over.
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if url.startswith("redis+cluster://"):
        return aioredis.RedisCluster.from_url("redis://" + url[len("redis+cluster://") :], **options)
    if url.startswith("redis+sentinel://"):
        return sentinel_master(url, **options)
    return aioredis.Redis.from_url(url, **options)


def connect_pubsub(url: str, timeout: float) -> aioredis.Redis:
    """A client for subscribing: connects within ``timeout`` but may sit idle on a subscription.

    For a Redis Cluster any one node will do: PUBLISH reaches every node's subscribers.
    """
    options: dict[str, Any] = {"socket_connect_timeout": timeout, "socket_timeout": 30, "retry": Retry(NoBackoff(), 0)}
    if url.startswith("redis+cluster://"):
        url = "redis://" + url[len("redis+cluster://") :]
    if url.startswith("redis+sentinel://"):
        return sentinel_master(url, **options)
    return aioredis.Redis.from_url(url, **options)


# A background refresh replaces page:<id> only if it still holds the copy the refresh started
# from (same ETag and render time), or nothing: a publish's page or an unpublish's tombstone that
# landed meanwhile is never overwritten by an older read. One key, so it runs on a cluster too.
_REPLACE_IF_UNCHANGED = """
local current = redis.call('GET', KEYS[1])
if current then
  local newline = string.find(current, '\\n', 1, true)
  if not newline then return 0 end
  local ok, meta = pcall(cjson.decode, string.sub(current, 1, newline - 1))
  if not ok or meta.e ~= ARGV[1] or math.abs((tonumber(meta.r) or 0) - tonumber(ARGV[2])) > 0.000001 then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
return 1
"""


class RedisPages:
    """The Redis tier. Every method takes the request's deadline and runs under the Redis guard.

    A 200 page is fresh for the page TTL (less up to ``ttl_jitter`` of it, so pages warmed together
    don't expire together) and then stays ``revalidate_window`` seconds more: answered at once while
    the tiers refresh it in the background (``RenderedPage.fresh_until`` says which part it is in).
    """

    def __init__(
        self,
        client: Any,
        guard: Guard,
        page_ttl: int,
        stale_ttl: int,
        lock_ttl: float,
        on_undecodable: Callable[[], None] = lambda: None,
        revalidate_window: int = 0,
        ttl_jitter: float = 0.0,
    ):
        self.client = client
        self.guard = guard
        self.page_ttl = page_ttl
        self.stale_ttl = stale_ttl
        self.lock_ttl = lock_ttl
        self.revalidate_window = revalidate_window
        self.ttl_jitter = ttl_jitter
        self._on_undecodable = on_undecodable
        self._replace_if_unchanged = client.register_script(_REPLACE_IF_UNCHANGED)

    def _stamped(self, page: RenderedPage, ttl: int | None) -> tuple[RenderedPage, int]:
        """``page`` with its freshness, and the key's TTL: ``ttl`` exactly when given (404s,
        tombstones), else the jittered page TTL plus the revalidation window."""
        if ttl is not None or page.status != 200:
            return replace(page, fresh_until=0.0), ttl or self.page_ttl
        fresh = self.page_ttl * (1 - random.uniform(0, self.ttl_jitter))
        return replace(page, fresh_until=time.time() + fresh), max(1, round(fresh + self.revalidate_window))

    async def _page_at(self, deadline: Deadline, key: str) -> RenderedPage | None:
        # Decoded outside the guard: a bad value is this value's problem, not a Redis fault.
        value = await self.guard.run(deadline, self.client.get, key)
        if value is None:
            return None
        try:
            return RenderedPage.from_bytes(value)
        except ValueError as exc:
            # Corrupt, or written by an older release during a rolling deploy: a miss. Deleting it
            # lets the read path's write-back (SET NX) put a good copy in its place.
            self._on_undecodable()
            log.warning("undecodable value at %s, treated as a miss: %s", key, exc)
            await self.guard.run(deadline, self.client.delete, key)
            return None

    async def fresh(self, deadline: Deadline, cache_id: str) -> RenderedPage | None:
        """The page at ``page:<id>``, or None on a miss."""
        return await self._page_at(deadline, contract.page_key(cache_id))

    async def stale(self, deadline: Deadline, cache_id: str) -> RenderedPage | None:
        """The last good page at ``stale:<id>``, or None."""
        return await self._page_at(deadline, contract.stale_key(cache_id))

    async def _store(self, cache_id: str, page: RenderedPage, ttl: int | None) -> None:
        page, ttl = self._stamped(page, ttl)
        value = page.to_bytes()
        # Not a transaction: page: and stale: may live in different cluster hash slots.
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(contract.page_key(cache_id), value, ex=ttl)
            if page.status == 200:
                pipe.set(contract.stale_key(cache_id), value, ex=self.stale_ttl)
            await pipe.execute()

    async def store(self, deadline: Deadline, cache_id: str, page: RenderedPage, ttl: int | None = None) -> None:
        """Write ``page:<id>`` (``ttl``, default the page TTL) and, for a 200, ``stale:<id>`` (publishing)."""
        await self.guard.run(deadline, self._store, cache_id, page, ttl)

    async def _write_back(self, cache_id: str, page: RenderedPage, ttl: int | None) -> bool:
        page, ttl = self._stamped(page, ttl)
        value = page.to_bytes()
        if not await self.client.set(contract.page_key(cache_id), value, ex=ttl, nx=True):
            return False
        if page.status == 200:
            await self.client.set(contract.stale_key(cache_id), value, ex=self.stale_ttl)
        return True

    async def write_back(self, deadline: Deadline, cache_id: str, page: RenderedPage, ttl: int | None = None) -> bool:
        """The read path's write: only where ``page:<id>`` is absent, so a reader whose MongoDB read
        predates a publish never overwrites the published page. False when something was there."""
        return await self.guard.run(deadline, self._write_back, cache_id, page, ttl)

    async def _refresh(self, cache_id: str, seen: RenderedPage, page: RenderedPage, ttl: int | None) -> bool:
        page, ttl = self._stamped(page, ttl)
        value = page.to_bytes()
        args = [seen.etag, repr(seen.rendered_at), value, ttl]
        if not await self._replace_if_unchanged(keys=[contract.page_key(cache_id)], args=args):
            return False
        if page.status == 200:
            await self.client.set(contract.stale_key(cache_id), value, ex=self.stale_ttl)
        return True

    async def refresh(
        self, deadline: Deadline, cache_id: str, seen: RenderedPage, page: RenderedPage, ttl: int | None = None
    ) -> bool:
        """A background refresh's write: replaces ``seen`` (the copy in its revalidation window)
        with ``page`` unless something newer was written meanwhile. False when superseded."""
        return await self.guard.run(deadline, self._refresh, cache_id, seen, page, ttl)

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

    async def _tombstone(self, cache_id: str, page: RenderedPage) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(contract.page_key(cache_id), page.to_bytes(), ex=self.page_ttl)
            pipe.delete(contract.stale_key(cache_id))
            await pipe.execute()

    async def tombstone(self, deadline: Deadline, cache_id: str, page: RenderedPage) -> None:
        """Put ``page`` (a 404: an unpublished article, a front left without articles) at
        ``page:<id>`` and delete ``stale:<id>``.

        Deleting ``page:`` instead would let a reader whose MongoDB read predates the unpublish win
        the write-back (SET NX) and put the article back; the 404 in place makes that write fail.
        """
        await self.guard.run(deadline, self._tombstone, cache_id, page)

    async def delete_fresh(self, deadline: Deadline, cache_id: str) -> None:
        """Delete ``page:<id>`` only: the next reader re-renders it, ``stale:<id>`` still covers failures."""
        await self.guard.run(deadline, self.client.delete, contract.page_key(cache_id))

    async def announce(self, deadline: Deadline, slug: str) -> None:
        """Tell every renderer process that ``slug`` changed (pub/sub), so they drop in-process copies."""
        await self.guard.run(deadline, self.client.publish, contract.INVALIDATION_CHANNEL, slug)

    async def ping(self) -> bool:
        """One PING, without the breaker: the healthcheck's direct look at the server."""
        return bool(await self.client.ping())
