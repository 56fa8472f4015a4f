"""The one object handed to handlers: backends, breakers, tiers, healthcheck, metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Mapping

import pymongo
import pymongo.errors as mongo_errors

from healthcheck import Check, HealthCheck
from renderer import cdn, contract, invalidation, logs, tokens
from renderer.backends import mongo_articles, redis_pages
from renderer.breaker import AsyncCircuitBreaker
from renderer.cdn_feed import CdnFeed
from renderer.latest_box import LatestBox
from renderer.limiter import AdaptiveLimit, spent_in_mongodb
from renderer.metrics import Metrics
from renderer.publish import Publisher
from renderer.purge_log import CDN_GROUP, PurgeLog
from renderer.rate_limit import SharedRateLimit, TokenBucket
from renderer.render import PageRenderer
from renderer.resilience import Deadline, DeadlineExceeded, Guard, RetryBudget, RetryPolicy
from renderer.settings import Settings
from renderer.tiers import Listings, Tiers

log = logging.getLogger("pagecache.services")


@dataclass
class Services:
    """Everything a renderer process holds open. Build it after forking (clients are per process)."""

    settings: Settings
    metrics: Metrics
    redis_breaker: AsyncCircuitBreaker
    mongo_breaker: AsyncCircuitBreaker
    redis: redis_pages.RedisPages
    mongo: mongo_articles.MongoArticles
    renderer: PageRenderer
    tiers: Tiers
    health: HealthCheck
    purge_log: PurgeLog
    cdn_feed: CdnFeed | None
    publisher: Publisher
    latest_box: LatestBox
    access_log: logs.AccessLog = field(default_factory=logs.AccessLog)
    editor_tokens: tuple[str, ...] = ()
    background: list[asyncio.Task[None]] = field(default_factory=list)
    _pubsub: Any = None

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Clients, breakers and guards from ``settings``; nothing is contacted yet."""
        metrics = Metrics()
        policy = RetryPolicy(settings.retry_attempts, settings.retry_initial_wait, settings.retry_max_wait)

        def breaker(
            name: str,
            exclude: tuple[type[BaseException], ...] = (),
            neutral: tuple[type[BaseException], ...] = (DeadlineExceeded,),
        ) -> AsyncCircuitBreaker:
            made = AsyncCircuitBreaker(
                name,
                fail_max=settings.breaker_fail_max,
                reset_timeout=settings.breaker_reset_timeout,
                exclude=exclude,
                on_change=metrics.breaker_changed,
                neutral=neutral,
            )
            metrics.breaker_state.labels(name).set(0)
            return made

        redis_breaker = breaker("redis")
        # A duplicate slug or a version conflict is the caller's business, not a sign MongoDB is unwell.
        # Slowness is the adaptive limit's business (tiers.limit), not the breaker's: a read that
        # times out neither counts nor resets; refused connections and errors open it.
        mongo_breaker = breaker(
            "mongodb", (mongo_errors.DuplicateKeyError, mongo_articles.VersionConflict), neutral=(TimeoutError,)
        )
        renderer = PageRenderer(settings.site_name, settings.site_url, on_left_out=metrics.articles_left_out.inc)
        redis = redis_pages.RedisPages(
            redis_pages.connect(settings.redis_url, settings.redis_timeout),
            Guard(
                redis_breaker,
                settings.redis_timeout,
                policy,
                redis_pages.is_transient,
                metrics.backend_latency.labels("redis").observe,
                RetryBudget(settings.retry_budget_ratio),
                metrics.retried("redis"),
                is_timeout=redis_pages.is_timeout,
            ),
            page_ttl=settings.page_ttl,
            stale_ttl=settings.stale_ttl,
            lock_ttl=settings.lock_ttl,
            not_found_ttl=settings.not_found_ttl,
            on_undecodable=metrics.undecodable.inc,
            revalidate_window=settings.revalidate_window,
            ttl_jitter=settings.ttl_jitter,
            not_found_body=renderer.generic_not_found.html,
            # Behind Sentinel there are replicas by design, connected at this moment or not.
            has_replicas=settings.redis_url.startswith("redis+sentinel://"),
        )
        mongo_client = mongo_articles.connect(
            settings.mongodb_url,
            settings.mongodb_timeout,
            max(settings.mongodb_timeout, settings.mongodb_write_timeout),
        )
        mongo = mongo_articles.MongoArticles(
            mongo_client,
            settings.mongodb_db,
            Guard(
                mongo_breaker,
                settings.mongodb_timeout,
                policy,
                mongo_articles.is_transient,
                partial(_observe_mongodb, metrics.backend_latency.labels("mongodb")),
                RetryBudget(settings.retry_budget_ratio),
                metrics.retried("mongodb"),
                is_timeout=mongo_articles.is_timeout,
                scope=pymongo.timeout,
            ),
            on_read=metrics.mongodb_read,
        )
        # The write path has its own breaker and patience: a burst of slow publishes must never
        # open the readers' breaker and push readers onto stale pages.
        editors_guard = Guard(
            breaker("mongodb-writes", (mongo_errors.DuplicateKeyError, mongo_articles.VersionConflict)),
            settings.mongodb_write_timeout,
            policy,
            mongo_articles.is_transient,
            metrics.backend_latency.labels("mongodb-writes").observe,
            RetryBudget(settings.retry_budget_ratio),
            metrics.retried("mongodb-writes"),
            is_timeout=mongo_articles.is_timeout,
            scope=pymongo.timeout,
        )
        # Writes, and the reads that decide a write (the version check, duplicate-key recovery),
        # go to the primary whatever MONGODB_URL's readPreference: a lagging secondary would give
        # false 412s. Page reads follow the configured preference.
        mongo_for_editors = mongo_articles.MongoArticles(
            mongo_client, settings.mongodb_db, editors_guard, on_read=metrics.mongodb_read, primary=True
        )
        tiers = Tiers(
            redis,
            mongo,
            renderer,
            metrics,
            lock_wait=settings.lock_wait,
            last_good_size=settings.last_good_size,
            retry_after=max(1, round(settings.breaker_reset_timeout)),
            listings=Listings(renderer, settings.home_size, settings.section_size, settings.latest_box_size),
            stale_reserve=settings.stale_reserve,
            refresh_deadline=settings.request_deadline,
            memory_ttl=settings.page_ttl,
            last_good_max_age=settings.stale_ttl,
            limit=AdaptiveLimit(max_limit=settings.mongodb_max_concurrency, max_queue=settings.mongodb_wait_queue),
        )
        # Blocking reads of the purge log wait up to a second: a client whose socket outlasts them.
        log_reader = redis_pages.connect(settings.redis_url, settings.redis_timeout + 1.5)
        purge_log = PurgeLog(
            redis.client,
            redis.guard,
            retention=settings.purge_max_age,
            dead_after=settings.purge_node_dead_after,
            reader=log_reader,
            timeout=settings.redis_timeout,
        )
        cdn_purger = _cdn_purger(settings, breaker, metrics, redis.client)
        cdn_feed = None
        if cdn_purger is not None:
            cdn_feed = CdnFeed(
                purge_log,
                log_reader,
                cdn_purger,
                settings.publish_deadline,
                settings.purge_retry_interval,
                settings.purge_max_age,
                metrics,
            )
        health = HealthCheck(
            _checks(settings, redis, mongo, tiers, redis_breaker, mongo_breaker, purge_log),
            settings.health_cache_seconds,
        )
        publisher = Publisher(
            mongo_for_editors,
            redis,
            renderer,
            tiers,
            purge_log,
            cdn_purger.target if cdn_purger is not None else None,
            settings.publish_deadline,
            settle_seconds=settings.request_deadline,
        )
        latest_box = LatestBox(
            partial(tiers.listing, cache_id=contract.LATEST_BOX_CACHE_ID),
            settings.latest_box_refresh,
            settings.request_deadline,
        )
        return cls(
            settings,
            metrics,
            redis_breaker,
            mongo_breaker,
            redis,
            mongo,
            renderer,
            tiers,
            health,
            purge_log,
            cdn_feed,
            publisher,
            latest_box,
            editor_tokens=tokens.usable_tokens(settings.editor_tokens),
        )

    async def start(self) -> None:
        """Create MongoDB indexes, then start the CDN's reader of the purge log and the invalidation listener.

        A MongoDB that is down now must not keep the renderer from starting.
        """
        try:
            await self.mongo.ensure_indexes()
        except Exception as exc:
            log.warning("could not ensure MongoDB indexes: %s", exc)
        self._pubsub = redis_pages.connect_pubsub(self.settings.redis_url, self.settings.redis_timeout)
        self.background = [
            *([asyncio.create_task(self.cdn_feed.run())] if self.cdn_feed is not None else []),
            asyncio.create_task(self.access_log.run()),
            asyncio.create_task(invalidation.listen(self._pubsub, self._forget, self._forget_all)),
            asyncio.create_task(self.latest_box.run()),
        ]

    def _forget(self, slug: str) -> None:
        # Any listing may show the article: its section's front, the home, the box.
        self.tiers.last_good.drop(slug)
        self.tiers.last_good.drop_listings()
        self.latest_box.changed()

    def _forget_all(self, deaf: bool) -> None:
        # Invalidations may have been missed: no in-process copy can be trusted any more. Deaf, at
        # once; back after an outage, once Redis answers a read (until then they are what
        # readers get, as during the outage itself: say, while a Sentinel failover completes).
        log.warning("invalidations may have been missed: in-process copies dropped%s", "" if deaf else " soon")
        self.metrics.invalidation_gaps.inc()
        self.tiers.distrust_memory(at_once=deaf)
        self.latest_box.changed()

    async def close(self) -> None:
        """Stop background work and close the connection pools."""
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        await self.publisher.close()
        self.access_log.flush()
        if self.cdn_feed is not None:
            await self.cdn_feed.close()
        await self.purge_log.reader.aclose()
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self.redis.client.aclose()
        await self.mongo.client.close()


def _checks(
    settings: Settings,
    redis: redis_pages.RedisPages,
    mongo: mongo_articles.MongoArticles,
    tiers: Tiers,
    redis_breaker: AsyncCircuitBreaker,
    mongo_breaker: AsyncCircuitBreaker,
    purge_log: PurgeLog,
) -> list[Check]:
    async def redis_ok() -> tuple[bool, str]:
        await redis.ping()
        return True, "redis ok"

    async def mongo_ok() -> tuple[bool, str]:
        await mongo.ping()
        return True, "mongodb ok"

    async def mongo_not_overloaded() -> tuple[bool, str]:
        limit = tiers.limit
        state = f"{limit.in_flight} reads in flight, limit {int(limit.limit)}"
        if limit.shedding:
            return False, f"shedding MongoDB reads to stale copies: {state}"
        return True, state

    async def nodes_caught_up() -> tuple[bool, str]:
        states = await purge_log.nodes(Deadline.after(timeout))
        now = time.time()
        live = {name: state for name, state in states.items() if state.live(now, purge_log.dead_after)}
        behind = sorted(f"{name} ({state.lag_events} events)" for name, state in live.items() if state.lag_events)
        if behind:
            return False, f"Varnish nodes behind the purge log: {', '.join(behind)}"
        cdn_waiting = await purge_log.unapplied(Deadline.after(timeout), CDN_GROUP)
        if cdn_waiting:
            return False, f"{cdn_waiting} purges in the log not yet taken by the CDN"
        return True, f"{len(live)} Varnish nodes caught up with the purge log"

    def stale_copies_servable(passed: Mapping[str, bool]) -> bool:
        return passed.get("redis", False) or tiers.last_good.holds_pages()

    def state_of(breaker: AsyncCircuitBreaker) -> Any:
        return lambda: (breaker.state, breaker.opened_at)

    timeout = settings.health_check_timeout
    return [
        Check(
            "redis connection",
            "redis",
            redis_ok,
            timeout,
            critical="redis" in settings.health_critical,
            breaker=state_of(redis_breaker),
        ),
        Check(
            "mongodb connection",
            "mongodb",
            mongo_ok,
            timeout,
            critical="mongodb" in settings.health_critical,
            fallback=stale_copies_servable,
            breaker=state_of(mongo_breaker),
        ),
        # Not critical: shedding means degraded (pages still served), never out of the balancer.
        Check("mongodb load", "mongodb", mongo_not_overloaded, timeout),
        # Not critical either: pages are served; copies at an edge or the CDN may be out of date.
        Check("purge log", "purge-log", nodes_caught_up, timeout),
    ]


def _cdn_purger(settings: Settings, breaker: Any, metrics: Metrics, redis_client: Any) -> cdn.CdnPurger | None:
    """The CDN's purger ``CDN_PURGER`` names (None for ``none``): its own breaker, retries and the
    plan's rate limit. Being held back by the rate limit is not a failure of the CDN: its breaker
    does not count it."""
    api = cdn.make_api(settings.cdn_purger, settings)
    if api is None:
        return None
    guard = Guard(
        breaker(f"cdn {api.name}", neutral=(DeadlineExceeded, cdn.Throttled)),
        settings.cdn_purge_timeout,
        RetryPolicy(settings.purge_attempts, 0.05, 0.5),
        cdn.is_transient,
        metrics.backend_latency.labels("cdn").observe,
        RetryBudget(settings.retry_budget_ratio),
        metrics.retried("cdn"),
    )
    # Only Cloudflare publishes a purge rate limit per plan; Fastly's purges are not rate limited
    # (a 429 would still hold them back for its Retry-After).
    rate, burst = (1000.0, 1000)
    if api.name == "cloudflare":
        rate, burst = settings.cloudflare_purge_rate, settings.cloudflare_purge_burst
    # The plan's limit is the account's: every renderer that shares this Redis keeps to it
    # together. While Redis can't answer, each process keeps to its share of one instance's.
    share = settings.process_count()
    fallback = TokenBucket(rate / share, max(1, burst // share))
    limit = SharedRateLimit(redis_client, f"cdn-purge-rate:{api.name}", rate, burst, fallback)
    return cdn.CdnPurger(api, guard, limit, settings.cdn_purge_timeout)


def _observe_mongodb(latency: Any, seconds: float) -> None:
    """A MongoDB read attempt's duration: to the metric, and to the concurrency limit's sample."""
    latency.observe(seconds)
    spent_in_mongodb(seconds)
