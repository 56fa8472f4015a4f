"""The read path: Redis -> coalesce -> MongoDB -> render -> write back -> stale
(docs/architecture.rst, "The request path").

Every page request ends here and gets a ``Served`` (a page and where it came from) or
``Unavailable`` (nothing fresh, nothing stale: the handler answers 503 at once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace

from healthcheck import SingleFlight
from renderer import contract
from renderer.backends.mongo_articles import MongoArticles
from renderer.backends.redis_pages import FetchLock, RedisPages
from renderer.concurrency_limit import AdaptiveLimit, Overloaded
from renderer.last_good import LastGood
from renderer.listings import Listings, Loader
from renderer.metrics import Metrics
from renderer.render import PageRenderer, RenderFailed, render_or_fail
from renderer.rendered_page import RenderedPage
from renderer.resilience import CircuitOpen, Deadline, DeadlineExceeded

log = logging.getLogger("pagecache.tiers")


# How often a process that lost the fetch election looks for the winner's write.
_WAIT_FIRST_POLL = 0.005
_WAIT_MAX_POLL = 0.05


@dataclass(frozen=True)
class Served:
    """A page to send, the tier that produced it and its ``Cache-Status`` member; ``revalidating``
    when it is past its freshness and being refreshed (its headers must not claim more)."""

    page: RenderedPage
    tier: str
    cache_status: str
    revalidating: bool = False


class Unavailable(Exception):
    """No fresh page and no stale copy: answer 503 with ``Retry-After``."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _failure_reason(exc: BaseException) -> str:
    """Which of four words a failure is in ``Cache-Status`` and the error metric's label (a bounded
    set: the words an operator reads are ``healthcheck.describe_error``'s)."""
    if isinstance(exc, CircuitOpen):
        return "breaker-open"
    if isinstance(exc, Overloaded):
        return "overloaded"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "error"


class Tiers:
    """Redis, MongoDB and the renderer wired as the read path of one process."""

    def __init__(
        self,
        redis: RedisPages,
        mongo: MongoArticles,
        renderer: PageRenderer,
        metrics: Metrics,
        *,
        listings: Listings,
        last_good: LastGood,
        limit: AdaptiveLimit,
        lock_wait: float,
        retry_after: int,
        stale_reserve: float,
        refresh_deadline: float,
        memory_ttl: float,
    ) -> None:
        self.redis = redis
        self.mongo = mongo
        self.renderer = renderer
        self.metrics = metrics
        self.lock_wait = lock_wait
        self.retry_after = retry_after
        self.listings = listings
        self.stale_reserve = stale_reserve
        self.refresh_deadline = refresh_deadline
        self.memory_ttl = memory_ttl  # how old an in-process copy may be to stand in for Redis
        # MongoDB reads of this process: at most what MongoDB answers in reasonable time.
        self.limit = limit
        self.last_good = last_good
        self._drop_memory_when_redis_answers = False
        self._lookups: SingleFlight[str, Served] = SingleFlight()
        self._refreshes: SingleFlight[str, None] = SingleFlight()

    def distrust_memory(self, at_once: bool) -> None:
        """Drop every in-process copy (this process may have missed invalidations): ``at_once``,
        or when Redis next answers a read, which makes them unneeded."""
        if at_once:
            self.last_good.clear()
        self._drop_memory_when_redis_answers = not at_once

    async def article(self, deadline: Deadline, slug: str) -> Served:
        """The page of article ``slug`` (already validated)."""

        async def load(d: Deadline) -> RenderedPage:
            doc = await self.mongo.article(d, slug)
            if doc is None:
                return render_or_fail(self.renderer.not_found, slug)
            if not doc.get("published"):  # taken down: a 404 of the takedown's version
                return render_or_fail(self.renderer.not_found, slug, version=int(doc["version"]))
            return render_or_fail(self.renderer.article, doc)

        return await self._serve(deadline, slug, load)

    async def listing(self, deadline: Deadline, cache_id: str) -> Served:
        """The home, a section front (its section already validated; a 404 when it has no
        articles) or the "latest news" box that the renderer puts into article pages."""
        return await self._serve(deadline, cache_id, self.listings.loader(cache_id))

    def _redis_failed(self, exc: BaseException) -> None:
        self.metrics.backend_errors.labels("redis", _failure_reason(exc)).inc()
        log.debug("redis skipped: %r", exc)

    async def _serve(self, deadline: Deadline, cache_id: str, load: Loader) -> Served:
        """One lookup per page per process at a time; concurrent requests share its result."""
        served, shared = await self._lookups.run_here(cache_id, lambda: self._lookup(deadline, cache_id, load))
        if not shared:
            return served
        self.metrics.coalesced.labels("process").inc()
        return replace(served, cache_status=f"{served.cache_status}; detail=coalesced")

    async def _lookup(self, deadline: Deadline, cache_id: str, load: Loader) -> Served:
        try:
            record = await self.redis.get(deadline, cache_id)
        except Exception as exc:
            # Redis down or its breaker open (a Sentinel failover, say): this process's own copy
            # while it is as young as a Redis copy may be; else the page comes from MongoDB. Without
            # this, every request of the outage would be a MongoDB read.
            self._redis_failed(exc)
            own = self.last_good.get(cache_id)
            if own is not None and time.time() - own.rendered_at < self.memory_ttl:
                return Served(own, contract.TIER_MEMORY, "redis; fwd=miss; detail=redis-unavailable-memory-copy")
            return await self._render_fresh(deadline, cache_id, load, None, redis_usable=False)
        if self._drop_memory_when_redis_answers:
            self.distrust_memory(at_once=True)
        if record is not None:
            self.last_good.put(cache_id, record)
            now = time.time()
            if record.is_fresh(now):
                return Served(record, contract.TIER_REDIS, "redis; hit")
            if record.is_servable(now):
                self._refresh_later(cache_id, load)
                self.metrics.revalidating_hits.inc()
                return Served(record, contract.TIER_REDIS, "redis; hit; detail=revalidating", revalidating=True)
        # A miss, or a record past its revalidation window: kept as the last good copy.
        return await self._fetch_once(deadline, cache_id, load, record)

    def _refresh_later(self, cache_id: str, load: Loader) -> None:
        """Refresh ``cache_id`` in the background, once per page in this process; never awaited by
        the request that noticed it."""
        self._refreshes.start(cache_id, lambda: self._refresh(cache_id, load))

    async def _refresh(self, cache_id: str, load: Loader) -> None:
        """One refresh across processes (the fetch lock): read MongoDB within the refresh's own
        deadline, then store what it read unless a newer version was stored meanwhile."""
        deadline = Deadline.after(self.refresh_deadline, "refresh")
        outcome = "failed"
        lock = None
        try:
            lock = await self.redis.try_lock(deadline, cache_id)
            if lock is None:
                outcome = "skipped-lock-held"
                return
            if not self.limit.try_acquire():
                outcome = "skipped-overloaded"  # readers come first; the page stays in place
                return
            page = await self._load_in_slot(load, deadline)
            stored, stamped = await self.redis.put(deadline, cache_id, page, release=lock)
            outcome = "refreshed" if stored else "superseded"
            if stored:
                self.last_good.put(cache_id, stamped)
        except CircuitOpen:
            outcome = "skipped-breaker-open"
        except Exception as exc:
            # The page stays in place until its window ends; the reader who noticed never knew.
            log.info("background refresh of %s failed: %r", cache_id, exc)
        finally:
            self.metrics.refreshes.labels(outcome).inc()
            if lock is not None:
                await self._unlock(deadline, lock)

    async def _fetch_once(
        self, deadline: Deadline, cache_id: str, load: Loader, last_good: RenderedPage | None
    ) -> Served:
        """Fetch a cold page once across processes: the lock's holder reads MongoDB
        (``last_good``: the expired record, served if that fails)."""
        lock = None
        redis_usable = True
        page = None
        try:
            # With the record read again in the same round trip: the previous holder may have
            # written the page just before we won.
            lock, record = await self.redis.try_lock_and_get(deadline, cache_id)
            last_good = record or last_good
            if record is not None and record.is_servable(time.time()):
                page = record
            elif lock is None:
                page = await self._wait_for_winner(deadline, cache_id)
        except Exception as exc:
            self._redis_failed(exc)
            redis_usable = False
        else:
            if page is not None:
                if lock is not None:
                    await self._unlock(deadline, lock)
                else:
                    self.metrics.coalesced.labels("cluster").inc()
                self.last_good.put(cache_id, page)
                return Served(page, contract.TIER_REDIS, "redis; hit")
        try:
            return await self._render_fresh(deadline, cache_id, load, last_good, redis_usable, lock)
        finally:
            if lock is not None:
                await self._unlock(deadline, lock)

    async def _wait_for_winner(self, deadline: Deadline, cache_id: str) -> RenderedPage | None:
        """Poll ``page:<id>`` until the lock holder writes it, for a bounded time."""
        give_up = time.monotonic() + min(self.lock_wait, deadline.remaining() / 2)
        pause = _WAIT_FIRST_POLL
        while time.monotonic() + pause < give_up:
            await asyncio.sleep(pause)
            page = await self.redis.get(deadline, cache_id)
            if page is not None and page.is_servable(time.time()):
                return page
            pause = min(pause * 2, _WAIT_MAX_POLL)
        return None

    async def _unlock(self, deadline: Deadline, lock: FetchLock) -> None:
        try:
            await self.redis.unlock(deadline, lock)
        except Exception as exc:  # the lock expires on its own
            self._redis_failed(exc)

    async def _slot(self, deadline: Deadline, cache_id: str, last_good: RenderedPage | None) -> Served | None:
        """A MongoDB slot for this read (None), or, over the limit, the page's stale copy at once.
        A page with no copy waits its turn in the bounded queue within its MongoDB budget."""
        if self.limit.try_acquire():
            return None
        self.limit.shed()
        overloaded = Overloaded(f"{self.limit.in_flight} MongoDB reads in flight, limit {int(self.limit.limit)}")
        try:
            served = self._stale(cache_id, overloaded, last_good, quiet=True)
        except Unavailable:
            pass
        else:
            self.metrics.shed.labels("stale").inc()
            return served
        try:
            await self.limit.acquire(deadline.reserving(self.stale_reserve).remaining())
        except Overloaded as exc:
            self.metrics.shed.labels("unavailable").inc()
            raise Unavailable("mongodb-overloaded", self.retry_after) from exc
        self.metrics.shed.labels("queued").inc()
        return None

    async def _load_in_slot(self, load: Loader, deadline: Deadline) -> RenderedPage:
        """Run ``load`` in the MongoDB slot the caller holds, then give the slot back with how long
        its MongoDB calls took (a timeout of theirs too: slowness is what the limit adapts to;
        a read cut short by the request's own deadline says nothing of the database)."""
        learnt = False  # errors are the breaker's business, not the limit's
        measured = deadline.measured()
        try:
            page = await load(measured)
            learnt = True
            return page
        except TimeoutError as exc:
            learnt = not isinstance(exc, DeadlineExceeded)
            raise
        finally:
            spent = measured.attempts
            self.limit.release(sum(spent) if learnt and spent else None)
            self.metrics.mongodb_limit_changed(self.limit)

    async def _render_fresh(
        self,
        deadline: Deadline,
        cache_id: str,
        load: Loader,
        last_good: RenderedPage | None,
        redis_usable: bool,
        lock: FetchLock | None = None,
    ) -> Served:
        """Read, render and store ``cache_id``; the fetch ``lock`` (when held) is given back by the
        write, in its round trip."""
        shed = await self._slot(deadline, cache_id, last_good)
        if shed is not None:
            return shed
        started = time.perf_counter()
        try:
            # MongoDB may not spend the stale fallback's slice of the deadline.
            page = await self._load_in_slot(load, deadline.reserving(self.stale_reserve))
        except RenderFailed as exc:
            self.metrics.render_errors.inc()
            log.error("rendering %s failed: %s", cache_id, exc, exc_info=exc.__cause__)
            return self._stale(cache_id, exc, last_good)
        except Exception as exc:
            self.metrics.backend_errors.labels("mongodb", _failure_reason(exc)).inc()
            return self._stale(cache_id, exc, last_good)
        self.metrics.render_seconds.observe(time.perf_counter() - started)
        if redis_usable:
            try:
                stored, _ = await self.redis.put(deadline, cache_id, page, release=lock)
                if not stored:
                    # A publish stored a newer version while we read MongoDB: serve that one.
                    newer = await self.redis.get(deadline, cache_id)
                    if newer is not None:
                        self.last_good.put(cache_id, newer)
                        return Served(newer, contract.TIER_REDIS, "redis; hit; detail=newer-write")
            except Exception as exc:
                self._redis_failed(exc)
        self.last_good.put(cache_id, page)
        return Served(page, contract.TIER_MONGO, "redis; fwd=miss; stored")

    def _stale(
        self, cache_id: str, cause: BaseException, last_good: RenderedPage | None, quiet: bool = False
    ) -> Served:
        """Stale-on-failure: the last good copy (the page's record in Redis, else this process's
        own), or ``Unavailable`` (``quiet``: not worth a log line, the caller has another way)."""
        failed = "render-error" if isinstance(cause, RenderFailed) else f"mongodb-{_failure_reason(cause)}"
        reason = f"stale-{failed}"
        page = last_good or self.last_good.get(cache_id)
        if page is None:
            if not quiet:
                log.warning("no stale copy of %s: %s (%r)", cache_id, reason, cause)
            raise Unavailable(reason, self.retry_after) from cause
        self.metrics.stale_page_served(reason, max(0.0, time.time() - page.rendered_at))
        return Served(page, contract.TIER_STALE, f"redis; hit; detail={reason}")
