"""Request rate limits for a vendor's API: a token bucket in this process, and one shared through
Redis by every renderer that uses the same Redis (a plan's limit is the account's, not a pod's),
which falls back to the local bucket while Redis can't answer."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from redis.exceptions import RedisError

log = logging.getLogger("pagecache.rate_limit")


class RateLimit(Protocol):
    """``rate`` requests per second in bursts of up to ``burst``; a 429 holds every request back."""

    async def try_take(self) -> float:
        """Take a token if one is there (0.0), else the seconds until one is (none taken)."""

    async def hold_off(self, seconds: float) -> float:
        """Send nothing for ``seconds`` (a 429's ``Retry-After``); the seconds until a token is there."""


class TokenBucket:
    """A rate limit kept by this process alone: ``rate`` requests per second in bursts of up to
    ``burst`` (Cloudflare's own model). A 429 empties it until its ``Retry-After`` has passed."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._at = time.monotonic()
        self._not_before = 0.0

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def wait(self) -> float:
        """Seconds until a token is there (0: now), without taking it."""
        now = time.monotonic()
        self._refill(now)
        held = max(0.0, self._not_before - now)
        missing = max(0.0, 1.0 - self._tokens)
        return max(held, missing / self.rate if self.rate > 0 else float("inf"))

    def take(self) -> float:
        """Take a token if one is there (0.0), else the seconds until one is (none taken)."""
        wait = self.wait()
        if wait <= 0:
            self._tokens -= 1.0
        return wait

    def hold(self, seconds: float) -> float:
        """Send nothing for ``seconds``; the seconds until a token is there."""
        self._not_before = max(self._not_before, time.monotonic() + seconds)
        self._tokens = 0.0
        return self.wait()


# GCRA (the generic cell rate algorithm): one hash per limit, by Redis's own clock, so every
# renderer agrees. ``tat`` is when the bucket would be full again ("theoretical arrival time" of
# the next request at the steady rate); a request is allowed while tat + interval lies within
# burst × interval of now. ``hold`` is the end of a 429's Retry-After.
# KEYS[1]: the limit; ARGV: rate per second, burst, seconds to hold off (0: take a token).
# Returns the seconds to wait, "0" when a token was taken.
_TAKE_OR_HOLD = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local interval = 1 / tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local hold_for = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tat', 'hold')
local tat = math.max(tonumber(state[1]) or 0, now)
local hold = tonumber(state[2]) or 0
if hold_for > 0 then
    hold = math.max(hold, now + hold_for)
    tat = math.max(tat, now + burst * interval)
elseif hold > now then
    return tostring(hold - now)
else
    local wait = tat + interval - now - burst * interval
    if wait > 0 then
        return tostring(wait)
    end
    tat = tat + interval
end
redis.call('HSET', KEYS[1], 'tat', tostring(tat), 'hold', tostring(hold))
redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(tat, hold) - now) * 1000) + 1000)
if hold_for > 0 then
    return tostring(math.max(hold - now, tat + interval - now - burst * interval))
end
return '0'
"""


class SharedRateLimit:
    """``rate`` requests per second in bursts of up to ``burst`` for every renderer that uses
    ``client``'s Redis (its key ``key``), and a 429's hold-off for all of them. While Redis can't
    answer, ``fallback`` (this process's share) decides."""

    def __init__(self, client: Any, key: str, rate: float, burst: int, fallback: TokenBucket) -> None:
        self.key = key
        self.rate = rate
        self.burst = max(1, burst)
        self.fallback = fallback
        self._script = client.register_script(_TAKE_OR_HOLD)

    async def _call(self, hold_for: float) -> float:
        return float(await self._script(keys=[self.key], args=[self.rate, self.burst, hold_for]))

    async def try_take(self) -> float:
        """Take a token of the shared limit (0.0), else the seconds until one is there."""
        try:
            return await self._call(0)
        except (RedisError, OSError) as exc:  # the client's own timeout bounds the call
            log.info("rate limit %s from this process alone: %r", self.key, exc)
            return self.fallback.take()

    async def hold_off(self, seconds: float) -> float:
        """Hold every renderer back for ``seconds`` (this process too, should Redis fail meanwhile)."""
        held = self.fallback.hold(seconds)
        try:
            return await self._call(max(seconds, 0.001))
        except (RedisError, OSError) as exc:
            log.info("hold-off of %s for this process alone: %r", self.key, exc)
            return held
