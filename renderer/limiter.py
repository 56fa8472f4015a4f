"""An adaptive concurrency limit for MongoDB reads (one per process): overload is shed at once to a
fallback instead of queueing behind a slow database.

The limit follows Netflix concurrency-limits' Gradient2: a short-term latency (the last calls)
against a long-term one (what this database usually does). While the short one stays near the long
one the limit grows by a small queue allowance; when calls slow down the limit shrinks in
proportion, down to ``min_limit``. A sample is the time spent in MongoDB calls alone
(``Deadline.measured``); waiters start only while the calls in flight are under the limit as it
is now (docs/architecture.rst compares the shape with Gradient2's). No maintained Python library
does this for asyncio (checked: ``aiolimiter`` is a rate limiter, ``concurrency-limiter`` a
fixed semaphore, ``adaptive-concurrency`` sizes batches), so it is written here, small.

A circuit breaker is for hard failure (refused, errors); this is for slowness: it never refuses
everything, it lets through what the database is answering in reasonable time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque


class Overloaded(Exception):
    """No slot within the caller's time: the limit is reached and the wait queue is full or slow."""


class AdaptiveLimit:
    """Gradient2-style limit on concurrent calls, with a bounded FIFO queue for callers that have
    nothing else to serve."""

    def __init__(
        self,
        initial: int = 20,
        min_limit: int = 2,
        max_limit: int = 200,
        smoothing: float = 0.2,
        tolerance: float = 2.0,
        long_window: int = 600,
        max_queue: int = 100,
    ) -> None:
        self.limit = float(max(min_limit, min(initial, max_limit)))
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.smoothing = smoothing
        self.tolerance = tolerance
        self.long_window = long_window
        self.max_queue = max_queue
        self.in_flight = 0
        self.short_rtt = 0.0  # seconds, the last few calls
        self.long_rtt = 0.0  # seconds, what this backend usually takes
        self.shed_until = 0.0  # monotonic time until which the process counts as shedding
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def has_room(self) -> bool:
        """True when a call may start now without waiting."""
        return self.in_flight < int(self.limit) and not self._waiters

    def try_acquire(self) -> bool:
        """Take a slot if one is free now (never waits)."""
        if not self.has_room:
            return False
        self.in_flight += 1
        return True

    async def acquire(self, seconds: float) -> None:
        """Take a slot, waiting at most ``seconds`` in FIFO order; ``Overloaded`` otherwise."""
        if self.try_acquire():
            return
        if len(self._waiters) >= self.max_queue or seconds <= 0:
            raise Overloaded(f"limit {int(self.limit)} reached, {len(self._waiters)} waiting")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), seconds)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                self.release(None)  # granted just as we gave up: pass it on
            else:
                waiter.cancel()
            raise Overloaded(f"no slot within {seconds:.3f}s (limit {int(self.limit)})") from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def shed(self, hold: float = 5.0) -> None:
        """Record that a call was turned away (the healthcheck says degraded for ``hold`` s)."""
        self.shed_until = time.monotonic() + hold

    @property
    def shedding(self) -> bool:
        """True while calls were recently turned away."""
        return time.monotonic() < self.shed_until

    def release(self, rtt: float | None) -> None:
        """Give the slot back; ``rtt``: how long the call took (None: it didn't tell, e.g. an
        error or the caller's own deadline), which adjusts the limit."""
        if rtt is not None:
            self._sample(rtt)
        # Waiters are let in while there is room under the limit as it is now: after it shrank,
        # slots given back leave until the calls in flight are under it; after it grew, more
        # than one waiter may start.
        self.in_flight -= 1
        while self._waiters and self.in_flight < int(self.limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self.in_flight += 1

    def _sample(self, rtt: float) -> None:
        if self.long_rtt == 0.0:
            self.short_rtt = self.long_rtt = rtt
            return
        self.short_rtt = rtt if self.short_rtt == 0.0 else 0.5 * self.short_rtt + 0.5 * rtt
        self.long_rtt += (rtt - self.long_rtt) / self.long_window
        if self.long_rtt / self.short_rtt > 2:
            # Calls got much faster (the slow period is over): let the baseline catch up.
            self.long_rtt *= 0.95
        # Growing while the limit is far from used would only grow a number: the app is the limit.
        if self.in_flight < self.limit / 2:
            return
        gradient = max(0.5, min(1.0, self.tolerance * self.long_rtt / self.short_rtt))
        queue = math.sqrt(self.limit)
        wanted = self.limit * gradient + queue
        self.limit = max(
            self.min_limit, min(self.max_limit, (1 - self.smoothing) * self.limit + self.smoothing * wanted)
        )
