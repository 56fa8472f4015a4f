"""Rendered pages in Redis: one version-fenced record per page at ``page:<id>``, and ``lock:page:<id>``."""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from renderer import contract
from renderer.rendered_page import RenderedPage
from renderer.resilience import Deadline, DeadlineExceeded, Guard

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


def is_timeout(exc: BaseException) -> bool:
    """An attempt that ran out of its time (ours, or the client's socket timeout)."""
    return isinstance(exc, (TimeoutError, redis_errors.TimeoutError))


def sentinel_master(url: str, **options: Any) -> aioredis.Redis:
    """A client of the master that Sentinel names: ``redis+sentinel://host:port,host:port/service[/db]``.

    Sentinel's client asks the sentinels where the master is when it connects, and again after a
    connection to it fails: a failover costs the calls in flight, then the new master is used.
    It asks them in turn, the one that last answered first, so one whose host is down must fail
    fast: every sentinel gets a share of the connect timeout and no retries, and all of them
    together fit in one call's time. (Slower, a call's own timeout cancels the asking before a
    live sentinel answers, the dead one stays first, and every later call times out the same way.)
    """
    rest = url[len("redis+sentinel://") :]
    hosts, _, path = rest.partition("/")
    service, _, db = path.partition("/")
    if not hosts or not service:
        raise ValueError(f"a Sentinel URL is redis+sentinel://host:port[,host:port...]/service[/db]: {url!r}")
    sentinels = [(host.rsplit(":", 1)[0], int(host.rsplit(":", 1)[1])) for host in hosts.split(",")]
    share = options["socket_connect_timeout"] / (len(sentinels) + 1)
    kwargs = {"socket_timeout": share, "socket_connect_timeout": share, "retry": Retry(NoBackoff(), 0)}
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


# The only way a page enters Redis: set-if-not-older (``rendered_page.may_replace``, kept
# server-side), in one round trip. A record of version n is
# never replaced by one of a lower version, whoever writes it (a publish, a takedown, a reader's
# write-back, a background refresh) and in whatever order they arrive; an equal version replaces
# it (the same content, fresher). A value that can't be decoded (corrupt, or an older release's)
# counts as absent. One key, so it runs on a cluster too.
_SET_IF_NOT_OLDER = """
local current = redis.call('GET', KEYS[1])
if current then
  local newline = string.find(current, '\\n', 1, true)
  if newline then
    local ok, meta = pcall(cjson.decode, string.sub(current, 1, newline - 1))
    local version = ok and type(meta) == 'table' and tonumber(meta['VERSION_KEY'])
    if version and version > tonumber(ARGV[1]) then
      return 0
    end
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
""".replace("VERSION_KEY", contract.RECORD_KEYS["version"])


# Releases the fetch lock only if it is still the holder's (it may have expired and been taken by
# another process meanwhile).
_RELEASE_IF_HELD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass
class FetchLock:
    """A fetch lock this process took: its key, the token that proves it is ours, and whether it
    was given back (by the write it guarded, in the same round trip, or by ``unlock``)."""

    key: str
    token: str
    released: bool = False


# A write whose only purpose is to be replicated after the caller's (``replicated``).
REPLICATION_PROBE_KEY = "pagecache:replication-probe"
# One WAIT's share of the deadline: short enough for one Redis call's timeout.
REPLICA_WAIT_SLICE_MS = 100


class RedisPages:
    """The Redis tier: one record per page at ``page:<id>``. Every method takes the request's
    deadline and runs under the Redis guard.

    A 200 page is fresh for the page TTL (less up to ``ttl_jitter`` of it, so pages warmed together
    don't expire together), then answered while it is refreshed for ``revalidate_window`` more,
    then kept as the page's last good copy until ``stale_ttl`` from its write (LRU may evict it
    sooner). A 404 is fresh for its own TTL (``NOT_FOUND_TTL``), and so is its record, but for a
    takedown's (an article's 404 with a version), kept for the page TTL: long enough to fence off
    any reader whose MongoDB read began before the takedown. A 404's record holds no body (every
    404 is the one not-found page, ``not_found_body``): a flood of made-up URLs costs Redis a few
    hundred bytes a URL for a few seconds, and never evicts real pages' records.
    """

    def __init__(
        self,
        client: Any,
        guard: Guard,
        page_ttl: int,
        stale_ttl: int,
        lock_ttl: float,
        not_found_ttl: int,
        on_undecodable: Callable[[], None] = lambda: None,
        revalidate_window: int = 0,
        ttl_jitter: float = 0.0,
        not_found_body: bytes = b"",
        has_replicas: bool = False,
    ):
        self.client = client
        self.guard = guard
        self.page_ttl = page_ttl
        self.stale_ttl = stale_ttl
        self.lock_ttl = lock_ttl
        self.not_found_ttl = not_found_ttl
        self.revalidate_window = revalidate_window
        self.ttl_jitter = ttl_jitter
        self.not_found_body = not_found_body
        self.has_replicas = has_replicas
        self._on_undecodable = on_undecodable

    def stamped(self, page: RenderedPage, now: float, takedown: bool = False) -> tuple[RenderedPage, int]:
        """``page`` with its freshness and revalidation window from ``now``, and the record's TTL
        (``takedown``: a 404 that fences off older versions of a page that existed)."""
        if page.status != 200:
            fresh_until = now + self.not_found_ttl
            ttl = max(self.page_ttl, self.not_found_ttl) if takedown else self.not_found_ttl
            return replace(page, fresh_until=fresh_until, serve_until=fresh_until), ttl
        fresh_until = now + self.page_ttl * (1 - random.uniform(0, self.ttl_jitter))
        serve_until = fresh_until + self.revalidate_window
        return replace(page, fresh_until=fresh_until, serve_until=serve_until), max(
            self.stale_ttl, round(serve_until - now)
        )

    async def _get(self, deadline: Deadline, key: str) -> RenderedPage | None:
        # Decoded outside the guard: a bad value is this value's problem, not a Redis fault.
        return self._decoded(key, await self.guard.run(deadline, self.client.get, key))

    def _decoded(self, key: str, value: bytes | None) -> RenderedPage | None:
        if value is None:
            return None
        try:
            page = RenderedPage.from_bytes(value)
        except ValueError as exc:
            # Corrupt, or written by an older release during a rolling deploy: a miss, overwritten
            # by the next write (the fence counts it as absent).
            self._on_undecodable()
            log.warning("undecodable value at %s, treated as a miss: %s", key, exc)
            return None
        return replace(page, html=self.not_found_body) if page.status == 404 and not page.html else page

    async def get(self, deadline: Deadline, cache_id: str) -> RenderedPage | None:
        """The record of page ``cache_id`` whatever its freshness, or None."""
        return await self._get(deadline, contract.page_key(cache_id))

    def _store_args(self, cache_id: str, page: RenderedPage, now: float) -> tuple[tuple[Any, ...], RenderedPage]:
        takedown = page.version > 0 and not contract.is_listing(cache_id)
        stamped, ttl = self.stamped(page, now, takedown)
        record = replace(stamped, html=b"") if stamped.status == 404 else stamped
        return (_SET_IF_NOT_OLDER, 1, contract.page_key(cache_id), stamped.version, record.to_bytes(), ttl), stamped

    async def _put_all(
        self, pages: dict[str, RenderedPage], lock: FetchLock | None
    ) -> dict[str, tuple[bool, RenderedPage]]:
        now = time.time()
        stores = {cache_id: self._store_args(cache_id, page, now) for cache_id, page in pages.items()}
        if lock is None and len(stores) == 1:
            [(cache_id, (store, stamped))] = stores.items()
            return {cache_id: (bool(await self.client.eval(*store)), stamped)}
        # EVAL, not the registered scripts' EVALSHA: redis-py asks SCRIPT EXISTS before every
        # pipeline that runs a registered script, a round trip more (Redis caches the script by
        # its hash either way).
        async with self.client.pipeline(transaction=False) as pipe:
            for store, _ in stores.values():
                pipe.eval(*store)
            if lock is not None:
                pipe.eval(_RELEASE_IF_HELD, 1, lock.key, lock.token)
            replies = await pipe.execute()
        if lock is not None:
            lock.released = True
        # (the lock's reply, when there is one, comes last and is left out)
        return {
            cache_id: (bool(reply), stamped)
            for (cache_id, (_, stamped)), reply in zip(stores.items(), replies, strict=False)
        }

    async def put(
        self, deadline: Deadline, cache_id: str, page: RenderedPage, release: FetchLock | None = None
    ) -> tuple[bool, RenderedPage]:
        """Store ``page`` unless Redis holds a newer version: (stored, the page as stamped). With
        ``release``, the fetch lock that guarded the read is given back in the same round trip."""
        return (await self.guard.run(deadline, self._put_all, {cache_id: page}, release))[cache_id]

    async def put_all(self, deadline: Deadline, pages: dict[str, RenderedPage]) -> dict[str, tuple[bool, RenderedPage]]:
        """``put`` for several pages in one round trip (each write fenced on its own)."""
        return await self.guard.run(deadline, self._put_all, pages, None)

    def _new_lock(self, cache_id: str) -> tuple[FetchLock, dict[str, Any]]:
        lock = FetchLock(contract.lock_key(cache_id), os.urandom(8).hex())
        return lock, {"nx": True, "px": max(1, int(self.lock_ttl * 1000))}

    async def _acquire(self, cache_id: str) -> FetchLock | None:
        lock, flags = self._new_lock(cache_id)
        return lock if await self.client.set(lock.key, lock.token, **flags) else None

    async def _acquire_and_get(self, cache_id: str) -> tuple[FetchLock | None, bytes | None]:
        lock, flags = self._new_lock(cache_id)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(lock.key, lock.token, **flags)
            pipe.get(contract.page_key(cache_id))
            taken, value = await pipe.execute()
        return (lock if taken else None), value

    async def try_lock(self, deadline: Deadline, cache_id: str) -> FetchLock | None:
        """Take ``lock:page:<id>`` (SET NX PX) if no other process holds it; None otherwise."""
        return await self.guard.run(deadline, self._acquire, cache_id)

    async def try_lock_and_get(self, deadline: Deadline, cache_id: str) -> tuple[FetchLock | None, RenderedPage | None]:
        """``try_lock`` and the page's record read again, in one round trip: (the lock or None,
        the record or None). The record is read after the lock is taken, so a holder that wrote
        the page and let go just before is seen."""
        lock, value = await self.guard.run(deadline, self._acquire_and_get, cache_id)
        return lock, self._decoded(contract.page_key(cache_id), value)

    async def unlock(self, deadline: Deadline, lock: FetchLock) -> None:
        """Give back a lock taken by ``try_lock`` unless it was already (one that expired, or that
        another process holds now, is left alone)."""
        if not lock.released:
            await self.guard.run(deadline, self.client.eval, _RELEASE_IF_HELD, 1, lock.key, lock.token)
            lock.released = True

    async def announce(self, deadline: Deadline, slug: str) -> None:
        """Tell every renderer process that ``slug`` changed (pub/sub), so they drop in-process copies."""
        await self.guard.run(deadline, self.client.publish, contract.INVALIDATION_CHANNEL, slug)

    async def _nothing_to_wait_for(self) -> bool:
        if isinstance(self.client, aioredis.RedisCluster):
            return True  # WAIT is per shard: not checked on a Cluster
        # A primary without replicas (behind Sentinel there must be one: never "nothing").
        return not self.has_replicas and not (await self.client.execute_command("ROLE"))[2]

    async def _replica_has_it(self, wait_ms: int) -> int:
        # WAIT counts the replicas that hold this connection's writes so far; the probe makes
        # this connection's latest write later than the caller's, which it follows in the
        # replication stream.
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(REPLICATION_PROBE_KEY, time.time(), px=60_000)
            pipe.execute_command("WAIT", 1, wait_ms)
            return int((await pipe.execute())[1])

    async def replicated(self, deadline: Deadline) -> bool | None:
        """Whether a replica holds every write made so far (waited for up to ``deadline``, in
        slices that fit one Redis call); None when there is no replica to wait for."""
        if await self.guard.run(deadline, self._nothing_to_wait_for):
            return None
        while True:
            try:
                if await self.guard.run(deadline, self._replica_has_it, REPLICA_WAIT_SLICE_MS) > 0:
                    return True
            except DeadlineExceeded:
                return False  # the last slice did not fit what was left: no replica in time
            if deadline.remaining() < 2 * REPLICA_WAIT_SLICE_MS / 1000:
                return False

    async def ping(self) -> bool:
        """One PING, without the breaker: the healthcheck's direct look at the server."""
        return bool(await self.client.ping())
