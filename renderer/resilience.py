"""Deadlines, timeouts and retries shared by every backend call (docs/architecture.rst, "The
deadline is a budget with a reserve").

A call runs as: retry (tenacity, exponential backoff with jitter, only transient errors, never
past the deadline) around breaker (one per backend) around timeout (the smaller of the backend's
own timeout and what is left of the request's deadline).

The breaker: an asyncio circuit breaker on top of pybreaker's state machine.

pybreaker's ``call_async`` (its Tornado path) has a bug: once the reset timeout has elapsed, the
open state calls the coroutine function without awaiting it, so the half-open trial "succeeds"
and closes the breaker while the backend is still down. This adapter awaits the real call itself,
moves the breaker to half-open itself (public ``half_open()``, open time tracked by a listener),
lets exactly one trial through at a time, and then replays the outcome into pybreaker's
synchronous ``call()`` so pybreaker still does all the counting and transitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, ContextManager, Iterable, TypeVar

import pybreaker
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_before_delay,
    wait_exponential_jitter,
)

T = TypeVar("T")
log = logging.getLogger("pagecache.breaker")

CircuitOpen = pybreaker.CircuitBreakerError


class _Transitions(pybreaker.CircuitBreakerListener):
    """Records when the breaker opened (monotonic and wall clock) and logs every transition."""

    def __init__(self, on_change: Callable[[str, str, str], None] | None) -> None:
        self.opened_monotonic = 0.0
        self.opened_wall = 0.0
        self._on_change = on_change

    def state_change(self, cb: pybreaker.CircuitBreaker, old: Any, new: Any) -> None:
        if new.name == pybreaker.STATE_OPEN:
            self.opened_monotonic = time.monotonic()
            self.opened_wall = time.time()
        old_name = old.name if old is not None else "none"
        log.warning(
            "breaker %s: %s -> %s",
            cb.name,
            old_name,
            new.name,
            extra={"breaker": cb.name, "from_state": old_name, "to_state": new.name},
        )
        if self._on_change is not None:
            self._on_change(str(cb.name), old_name, new.name)


def _replay(outcome: Any) -> Any:
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


class AsyncCircuitBreaker:
    """One breaker per backend. ``await breaker.call(fn, *args)`` runs ``fn`` under its rules."""

    def __init__(
        self,
        name: str,
        fail_max: int,
        reset_timeout: float,
        exclude: Iterable[type[BaseException]] = (),
        on_change: Callable[[str, str, str], None] | None = None,
        neutral: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._transitions = _Transitions(on_change)
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            exclude=list(exclude),
            listeners=[self._transitions],
            name=name,
            # Callers want the backend's own error on the call that trips the breaker.
            throw_new_error_on_trip=False,
        )
        self._trial_in_flight = False
        # Outcomes that say nothing about the backend (the request's own deadline ran out): passed
        # through without counting as a failure or as a success.
        self._neutral = neutral

    @property
    def name(self) -> str:
        """The backend this breaker guards."""
        return str(self._breaker.name)

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        return str(self._breaker.current_state)

    @property
    def opened_at(self) -> float | None:
        """Wall-clock time the breaker last opened, while it is not closed."""
        if self.state == pybreaker.STATE_CLOSED:
            return None
        return self._transitions.opened_wall

    def _admit(self) -> bool:
        """Decide whether a call may run now; True when it is the half-open trial."""
        state = self.state
        if state == pybreaker.STATE_CLOSED:
            return False
        if self._trial_in_flight:
            raise CircuitOpen(f"{self.name} breaker {state}: trial call in flight")
        if state == pybreaker.STATE_OPEN:
            waited = time.monotonic() - self._transitions.opened_monotonic
            if waited < self._breaker.reset_timeout:
                raise CircuitOpen(f"{self.name} breaker open")
            self._breaker.half_open()
        return True

    async def call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await ``func(*args)`` if the breaker admits it, and record the outcome.

        Raises ``CircuitOpen`` at once, without calling ``func``, while the breaker is open.
        """
        trial = self._admit()
        self._trial_in_flight = trial
        try:
            try:
                outcome: Any = await func(*args)
            except self._neutral:
                raise
            except Exception as exc:  # recorded by pybreaker below, then re-raised
                outcome = exc
            if not trial and self.state == pybreaker.STATE_OPEN:
                # Other calls opened the breaker while this one was in flight: pybreaker's open
                # state would refuse the replay and lose a real outcome (say, a committed write).
                return _replay(outcome)  # type: ignore[no-any-return]
            return self._breaker.call(_replay, outcome)  # type: ignore[no-any-return]
        finally:
            if trial:
                self._trial_in_flight = False


class DeadlineExceeded(TimeoutError):
    """The request's deadline (not the backend) ended this call: no time was left for it, or its
    timeout was cut short by the deadline. Never counted against the backend's breaker."""


@dataclass(frozen=True)
class Deadline:
    """The monotonic time by which a request must have its answer, passed to every backend call
    the request makes, with whom those calls serve (``caller``: ``reader``, ``refresh``, ``box``,
    ``editor``; a label of the MongoDB read count) and, when ``measured``, where the duration of
    each guarded attempt goes (what the MongoDB concurrency limit learns from)."""

    expires_at: float
    caller: str = "reader"
    attempts: list[float] | None = field(default=None, compare=False)

    @classmethod
    def after(cls, seconds: float, caller: str = "reader") -> Deadline:
        """A deadline ``seconds`` from now."""
        return cls(time.monotonic() + seconds, caller)

    def measured(self) -> Deadline:
        """This deadline, recording the duration of every guarded attempt made under it in ``attempts``."""
        return replace(self, attempts=[])

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires_at - time.monotonic())

    def reserving(self, seconds: float) -> Deadline:
        """An earlier deadline that leaves ``seconds`` of this one for what comes after (the
        stale fallback's slice: docs/architecture.rst, "The deadline is a budget with a reserve")."""
        return replace(self, expires_at=self.expires_at - seconds)


class HoldOff(Exception):
    """The backend asked to be called again in ``wait`` seconds (a rate limit, a 429). ``Guard``
    waits that long and calls again, as often as the deadline allows, without spending an attempt
    or the retry budget; when the wait would end past the deadline, it raises this."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"held off for {wait:.3f}s")
        self.wait = wait


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


def _no_scope(seconds: float) -> ContextManager[Any]:
    return contextlib.nullcontext()


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
        scope: Callable[[float], ContextManager[Any]] = _no_scope,
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
        # (pymongo.timeout → maxTimeMS), so an abandoned query stops there too. A backend given a
        # scope ends its own calls, and is never cancelled from outside: pymongo on Python 3.11
        # cannot survive a cancellation that lands while its own timeout ends a wait for a pool
        # connection (asyncio.wait_for's inner task is left to take the pool's lock for good, and
        # every later read of the process hangs). Both timers share the budget, so a stalled
        # loop runs them in one turn. Past the budget the Guard stops waiting; the call ends itself.
        self._scope = scope
        self._own_timeout = scope is not _no_scope
        self._recent: deque[float] = deque(maxlen=64)  # durations of recent successful calls
        self._backoff = wait_exponential_jitter(
            # tenacity's default jitter is a whole second: far more than a request's deadline allows.
            multiplier=policy.initial_wait,
            jitter=policy.initial_wait,
            max=policy.max_wait,
        )

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
                        call = func(*args)
                        # A backend with its own timeout is waited for, not cancelled: see _scope.
                        result = await (asyncio.shield(call) if self._own_timeout else call)
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
                spent = time.perf_counter() - started
                self._observe(spent)
                if deadline.attempts is not None:
                    deadline.attempts.append(spent)

        return await self.breaker.call(timed)

    async def run(self, deadline: Deadline, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``func(*args)`` against the backend within ``deadline``; raise its last error."""
        self.budget.called()
        # Most calls succeed at once: the retry machinery is built only after a first failure,
        # which it is handed as its first attempt's outcome, so it decides exactly as if it had
        # run that attempt itself (py-spy: building them for every call was 5 % of a cold render).
        try:
            return await self._attempt(deadline, func, args)
        except Exception as exc:
            first = exc
        return await self._retry(deadline, func, args, first)

    async def _retry(
        self, deadline: Deadline, func: Callable[..., Awaitable[T]], args: tuple[Any, ...], first: Exception
    ) -> T:
        held = 0  # attempts the backend held off: they wait as told and spend no attempt

        def should_retry(exc: BaseException) -> bool:
            nonlocal held
            if isinstance(exc, HoldOff):
                held += 1
                return True
            return self._should_retry(exc, deadline)

        def wait(state: RetryCallState) -> float:
            failed = state.outcome.exception() if state.outcome is not None else None
            return failed.wait if isinstance(failed, HoldOff) else self._backoff(state)

        def stop(state: RetryCallState) -> bool:
            return state.attempt_number - held >= self.policy.attempts or out_of_time(state)

        # Counted from now (tenacity's start): no sleep may end past the deadline.
        out_of_time = stop_before_delay(max(deadline.remaining(), 0.0))
        retrying = AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception(should_retry),
            reraise=True,
        )
        replay: Exception | None = first
        async for attempt in retrying:
            with attempt:
                if replay is not None:
                    failed, replay = replay, None
                    raise failed
                return await self._attempt(deadline, func, args)
        raise AssertionError("unreachable: tenacity reraises the last error")
