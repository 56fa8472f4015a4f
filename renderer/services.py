"""The one object handed to handlers: every client, breaker and tier of one renderer process,
wired from settings. Wiring only: what each part does lives in its own module."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable
from zoneinfo import ZoneInfo

import pymongo
import pymongo.errors as mongo_errors

from healthcheck import HealthCheck
from renderer import cdn, contract, invalidation, tokens
from renderer.articles import ANY_PUBLIC_IMAGE, ArticleRules
from renderer.backends import mongo_articles, mongo_listings, redis_pages
from renderer.cdn_feed import CdnFeed
from renderer.concurrency_limit import AdaptiveLimit
from renderer.feeds import FeedRenderer
from renderer.health_checks import renderer_checks
from renderer.last_good import LastGood
from renderer.latest_box import LatestBox
from renderer.listings import Listings
from renderer.metrics import Metrics
from renderer.publish import Publisher
from renderer.purge_log import PurgeLog
from renderer.render import PageRenderer
from renderer.resilience import AsyncCircuitBreaker, DeadlineExceeded, Guard, RetryBudget, RetryPolicy
from renderer.sections import Sections
from renderer.settings import Settings
from renderer.tiers import Tiers

log = logging.getLogger("pagecache.services")

# Not a sign a backend is unwell: the caller's business (a duplicate slug, a version conflict).
_EDITORS_FAULTS = (mongo_errors.DuplicateKeyError, mongo_articles.VersionConflict)


@dataclass
class Services:
    """Everything a renderer process holds open. Build it after forking (clients are per process)."""

    settings: Settings
    metrics: Metrics
    redis: redis_pages.RedisPages
    mongo: mongo_articles.MongoArticles
    renderer: PageRenderer
    tiers: Tiers
    health: HealthCheck
    purge_log: PurgeLog
    cdn_feed: CdnFeed | None
    publisher: Publisher
    latest_box: LatestBox
    copies: invalidation.InProcessCopies
    article_rules: ArticleRules = ANY_PUBLIC_IMAGE
    editor_tokens: tuple[str, ...] = ()
    background: list[asyncio.Task[None]] = field(default_factory=list)
    _pubsub: Any = None

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Clients, breakers and guards from ``settings``; nothing is contacted yet."""
        metrics = Metrics()
        policy = RetryPolicy(settings.retry_attempts, settings.retry_initial_wait, settings.retry_max_wait)
        breakers: dict[str, AsyncCircuitBreaker] = {}  # by name

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
            breakers[name] = made
            return made

        def guard(
            backend: str,
            breaker: AsyncCircuitBreaker,
            timeout: float,
            is_transient: Callable[[BaseException], bool],
            retries: RetryPolicy = policy,
            **how: Any,
        ) -> Guard:
            """Timeout, ``breaker`` and retries for ``backend`` (its label in the metrics); ``how``:
            the Guard's ``is_timeout`` and ``scope`` when the backend has its own."""
            return Guard(
                breaker,
                timeout,
                retries,
                is_transient,
                observe=metrics.backend_latency.labels(backend).observe,
                budget=RetryBudget(settings.retry_budget_ratio),
                on_retry=metrics.retried(backend),
                **how,
            )

        sections = Sections.parse(settings.site_sections)
        renderer = PageRenderer(
            settings.site_name,
            settings.site_url,
            on_left_out=metrics.articles_left_out.inc,
            sections=sections,
            timezone=ZoneInfo(settings.site_timezone),
        )
        redis = redis_pages.RedisPages(
            redis_pages.connect(settings.redis_url, settings.redis_timeout),
            guard(
                "redis",
                breaker("redis"),
                settings.redis_timeout,
                redis_pages.is_transient,
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

        def mongo_guard(name: str, timeout: float, neutral: tuple[type[BaseException], ...]) -> Guard:
            made = breaker(name, _EDITORS_FAULTS, neutral=neutral)
            return guard(
                name,
                made,
                timeout,
                mongo_articles.is_transient,
                is_timeout=mongo_articles.is_timeout,
                scope=pymongo.timeout,
            )

        # Slowness is the adaptive limit's business, not the readers' breaker's: a read that times
        # out neither counts nor resets it; refused connections and errors open it.
        readers_guard = mongo_guard("mongodb", settings.mongodb_timeout, (TimeoutError,))
        # The write path has its own breaker and patience: a burst of slow publishes must never
        # open the readers' breaker and push readers onto stale pages.
        editors_guard = mongo_guard("mongodb-writes", settings.mongodb_write_timeout, (DeadlineExceeded,))
        db, on_read = settings.mongodb_db, metrics.mongodb_read
        mongo = mongo_articles.MongoArticles(mongo_client, db, readers_guard, on_read=on_read)
        # Writes, and the reads that decide a write (the version check, duplicate-key recovery),
        # go to the primary whatever MONGODB_URL's readPreference: a lagging secondary would give
        # false 412s. Page reads follow the configured preference.
        mongo_for_editors = mongo_articles.MongoArticles(mongo_client, db, editors_guard, on_read=on_read, primary=True)
        sizes = (settings.home_size, settings.section_size, settings.latest_box_size)
        feeds = FeedRenderer(renderer)
        listings = Listings(
            renderer, feeds, mongo_listings.MongoListings(mongo_client, db, readers_guard, on_read), *sizes
        )
        listings_for_editors = Listings(
            renderer,
            feeds,
            mongo_listings.MongoListings(mongo_client, db, editors_guard, on_read, primary=True),
            *sizes,
        )
        last_good = LastGood(settings.last_good_size, settings.stale_ttl)
        limit = AdaptiveLimit(max_limit=settings.mongodb_max_concurrency, max_queue=settings.mongodb_wait_queue)
        tiers = Tiers(
            redis,
            mongo,
            renderer,
            metrics,
            listings=listings,
            last_good=last_good,
            limit=limit,
            lock_wait=settings.lock_wait,
            retry_after=max(1, round(settings.breaker_reset_timeout)),
            stale_reserve=settings.stale_reserve,
            refresh_deadline=settings.request_deadline,
            memory_ttl=settings.page_ttl,
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
        cdn_purger, cdn_feed = None, None
        api = cdn.make_api(settings.cdn_purger, settings)
        if api is not None:
            # Being held back by the plan's rate limit is not a failure of the CDN: its breaker does not count it.
            cdn_guard = guard(
                "cdn",
                breaker(f"cdn {api.name}", neutral=(DeadlineExceeded, cdn.Throttled)),
                settings.cdn_purge_timeout,
                cdn.is_transient,
                retries=RetryPolicy(settings.purge_attempts, 0.05, 0.5),
            )
            rate_limit = cdn.purge_rate_limit(api, settings, redis.client)
            cdn_purger = cdn.CdnPurger(api, cdn_guard, rate_limit, settings.cdn_purge_timeout)
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
            renderer_checks(settings, redis, mongo, limit, last_good, purge_log, breakers),
            settings.health_cache_seconds,
        )
        publisher = Publisher(
            mongo_for_editors,
            redis,
            renderer,
            listings_for_editors,
            last_good,
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
        copies = invalidation.InProcessCopies(
            last_good, tiers.distrust_memory, latest_box.changed, metrics.invalidation_gaps.inc
        )
        return cls(
            settings,
            metrics,
            redis,
            mongo,
            renderer,
            tiers,
            health,
            purge_log,
            cdn_feed,
            publisher,
            latest_box,
            copies,
            article_rules=ArticleRules(frozenset(settings.image_hosts), sections),
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
            asyncio.create_task(invalidation.listen(self._pubsub, self.copies.published, self.copies.missed)),
            asyncio.create_task(self.latest_box.run()),
        ]

    async def close(self) -> None:
        """Stop background work and close the connection pools."""
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        await self.publisher.close()
        if self.cdn_feed is not None:
            await self.cdn_feed.close()
        await self.purge_log.reader.aclose()
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self.redis.client.aclose()
        await self.mongo.client.close()
