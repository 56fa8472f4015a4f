"""What the renderer's ``/healthcheck`` checks, and what each check's failure means for readers
(docs/architecture.rst, "The healthcheck contract")."""

from __future__ import annotations

import time
from typing import Any, Mapping

from healthcheck import Check
from renderer.backends.mongo_articles import MongoArticles
from renderer.backends.redis_pages import RedisPages
from renderer.concurrency_limit import AdaptiveLimit
from renderer.last_good import LastGood
from renderer.purge_log import CDN_GROUP, PurgeLog
from renderer.resilience import AsyncCircuitBreaker, Deadline
from renderer.settings import Settings


def renderer_checks(
    settings: Settings,
    redis: RedisPages,
    mongo: MongoArticles,
    limit: AdaptiveLimit,
    last_good: LastGood,
    purge_log: PurgeLog,
    breakers: Mapping[str, AsyncCircuitBreaker],
) -> list[Check]:
    """The renderer's checks: its two backends (each with the state of its breaker in
    ``breakers``, by backend), MongoDB's load, and the purge log's readers."""

    async def redis_ok() -> tuple[bool, str]:
        await redis.ping()
        return True, "redis ok"

    async def mongo_ok() -> tuple[bool, str]:
        await mongo.ping()
        return True, "mongodb ok"

    async def mongo_not_overloaded() -> tuple[bool, str]:
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
        return passed.get("redis", False) or last_good.holds_pages()

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
            breaker=state_of(breakers["redis"]),
        ),
        Check(
            "mongodb connection",
            "mongodb",
            mongo_ok,
            timeout,
            critical="mongodb" in settings.health_critical,
            fallback=stale_copies_servable,
            breaker=state_of(breakers["mongodb"]),
        ),
        # Not critical: shedding means degraded (pages still served), never out of the balancer.
        Check("mongodb load", "mongodb", mongo_not_overloaded, timeout),
        # Not critical either: pages are served; copies at an edge or the CDN may be out of date.
        Check("purge log", "purge-log", nodes_caught_up, timeout),
    ]
