"""An adaptive concurrency limit for MongoDB reads (one per process): overload is shed at once to a
fallback instead of queueing behind a slow database. Not a rate limit (``renderer.rate_limit``
counts requests per second): this counts calls running at once.

The limit's size comes from the Gradient2 formula (``renderer.gradient2``), fed with the time
each read spent in MongoDB calls alone (``Deadline.measured``); this module holds the slots and
the bounded FIFO queue that enforce it. Waiters start only while the calls in flight are under the
limit as it is now. No maintained Python library does this for asyncio (checked: ``aiolimiter`` is
a rate limiter, ``concurrency-limiter`` a fixed semaphore, ``adaptive-concurrency`` sizes
batches), so it is written here, small.

A circuit breaker is for hard failure (refused, errors); this is for slowness: it never refuses
everything, it lets through what the database is answering in reasonable time.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from renderer.gradient2 import Gradient2


class Overloaded(Exception):
    """No slot within the caller's time: the limit is reached and the wait queue is full or slow."""


class AdaptiveLimit:
    """Gradient2-style limit on concurrent calls, with a bounded FIFO queue for callers that have
    nothing else to serve."""

    def __init__(self, initial: int = 20, min_limit: int = 2, max_limit: int = 200, max_queue: int = 100) -> None:
        self.formula = Gradient2(limit=initial, min_limit=min_limit, max_limit=max_limit)
        self.max_queue = max_queue
        self.in_flight = 0
        self.shed_until = 0.0  # monotonic time until which the process counts as shedding
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> float:
        """How many calls may run at once now."""
        return self.formula.limit

    @property
    def short_rtt(self) -> float:
        """Seconds, the last few calls."""
        return self.formula.short_rtt

    @property
    def long_rtt(self) -> float:
        """Seconds, what this backend usually takes."""
        return self.formula.long_rtt

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
            self.formula.update(rtt, self.in_flight)
        # Waiters are let in while there is room under the limit as it is now: after it shrank,
        # slots given back leave until the calls in flight are under it; after it grew, more
        # than one waiter may start.
        self.in_flight -= 1
        while self._waiters and self.in_flight < int(self.limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self.in_flight += 1
