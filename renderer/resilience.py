"""Deadlines, timeouts and retries shared by every backend call (docs/architecture.rst, "The
deadline is a budget with a reserve").

A call runs as: retry (tenacity, exponential backoff with jitter, only transient errors, never
past the deadline) around breaker (one per backend) around timeout (the smaller of the backend's
own timeout and what is left of the request's deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, ContextManager, TypeVar

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from renderer.breaker import AsyncCircuitBreaker, CircuitOpen

T = TypeVar("T")


class DeadlineExceeded(TimeoutError):
    """The request's deadline (not the backend) ended this call: no time was left for it, or its
    timeout was cut short by the deadline. Never counted against the backend's breaker."""


@dataclass(frozen=True)
class Deadline:
    """The monotonic time by which a request must have its answer."""

    expires_at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now."""
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires_at - time.monotonic())

    def reserving(self, seconds: float) -> Deadline:
        """An earlier deadline that leaves ``seconds`` of this one for what comes after (the
        stale fallback's slice: docs/architecture.rst, "The deadline is a budget with a reserve")."""
        return Deadline(self.expires_at - seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a backend call is retried."""

    attempts: int
    initial_wait: float
    max_wait: float


class RetryBudget:
    """Retries may be at most ``ratio`` of the first attempts over the last ``window`` seconds (plus
    ``floor`` per window, so a quiet backend can still retry): under overload retries stop
    multiplying the load (the gRPC/Envoy retry-budget idea).

    Counted in one-second buckets, so recording a call (every backend call does) is O(1) and the
    memory is bounded whatever the traffic."""

    def __init__(self, ratio: float, window: int = 10, floor: int = 3) -> None:
        self.ratio = ratio
        self.floor = floor
        # [second, first attempts, retries] per slot; a slot is reused when its second has passed.
        self._buckets = [[-1, 0, 0] for _ in range(window)]

    def _bucket(self, second: int) -> list[int]:
        bucket = self._buckets[second % len(self._buckets)]
        if bucket[0] != second:
            bucket[:] = [second, 0, 0]
        return bucket

    def called(self) -> None:
        """Record a first attempt."""
        self._bucket(int(time.monotonic()))[1] += 1

    def try_spend(self) -> bool:
        """True (and recorded) when one more retry fits in the budget."""
        now = int(time.monotonic())
        live = [b for b in self._buckets if b[0] > now - len(self._buckets)]
        if sum(b[2] for b in live) >= self.floor + self.ratio * sum(b[1] for b in live):
            return False
        self._bucket(now)[2] += 1
        return True


class Guard:
    """Timeout + breaker + retry for one backend. ``await guard.run(deadline, fn, *args)``."""

    def __init__(
        self,
        breaker: AsyncCircuitBreaker,
        timeout: float,
        policy: RetryPolicy,
        is_transient: Callable[[BaseException], bool],
        observe: Callable[[float], None] = lambda seconds: None,
        budget: RetryBudget | None = None,
        on_retry: Callable[[bool], None] = lambda allowed: None,
        is_timeout: Callable[[BaseException], bool] = lambda exc: isinstance(exc, TimeoutError),
        scope: Callable[[float], ContextManager[Any]] = lambda seconds: contextlib.nullcontext(),
    ) -> None:
        self.breaker = breaker
        self.timeout = timeout
        self.policy = policy
        self.budget = budget or RetryBudget(ratio=0.2)
        self._is_transient = is_transient
        self._observe = observe  # the duration of every attempt that reached the backend
        self._on_retry = on_retry  # True: a retry was spent; False: the budget refused one
        self._is_timeout = is_timeout  # the backend's own timeouts count as timeouts too
        # Around each attempt, given its time: MongoDB's sends that time to the server
        # (pymongo.timeout → maxTimeMS), so an abandoned query stops there too.
        self._scope = scope
        self._recent: deque[float] = deque(maxlen=64)  # durations of recent successful calls

    def typical_call(self) -> float:
        """The median duration of recent successful calls (0 before any)."""
        return statistics.median(self._recent) if self._recent else 0.0

    def _should_retry(self, exc: BaseException, deadline: Deadline) -> bool:
        if isinstance(exc, (CircuitOpen, DeadlineExceeded)):
            return False
        if self._is_timeout(exc):
            # The attempt used its whole time: another one would too, and the first would still
            # be running on the server. Hopeless retries are what turned slowness into a queue.
            return False
        if not self._is_transient(exc) or deadline.remaining() < self.typical_call():
            return False  # not worth another try, or no time left for a typical one
        allowed = self.budget.try_spend()
        self._on_retry(allowed)
        return allowed

    async def _attempt(self, deadline: Deadline, func: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
        budget = min(self.timeout, deadline.remaining())
        if budget <= 0:
            raise DeadlineExceeded(f"no time left for {self.breaker.name}")

        async def timed() -> T:
            started = time.perf_counter()
            try:
                with self._scope(budget):
                    async with asyncio.timeout(budget):
                        result = await func(*args)
                self._recent.append(time.perf_counter() - started)
                return result
            except Exception as exc:
                # Ours or the driver's (pymongo raises its own, often first), a timeout cut short by
                # the request's deadline says the request ran out of time, not the backend: not the
                # breaker's business.
                if budget < self.timeout and self._is_timeout(exc):
                    raise DeadlineExceeded(f"{self.breaker.name}: deadline reached after {budget:.3f}s") from exc
                raise
            finally:
                self._observe(time.perf_counter() - started)

        return await self.breaker.call(timed)

    async def run(self, deadline: Deadline, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``func(*args)`` against the backend within ``deadline``; raise its last error."""
        self.budget.called()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.policy.attempts) | stop_before_delay(max(deadline.remaining(), 0.0)),
            # tenacity's default jitter is a whole second: far more than a request's deadline allows.
            wait=wait_exponential_jitter(
                multiplier=self.policy.initial_wait, jitter=self.policy.initial_wait, max=self.policy.max_wait
            ),
            retry=retry_if_exception(lambda exc: self._should_retry(exc, deadline)),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(deadline, func, args)
        raise AssertionError("unreachable: tenacity reraises the last error")
