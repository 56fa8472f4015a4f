"""Retries with backoff inside one deadline (tenacity), counted in attempts rather than timed."""

from __future__ import annotations

import asyncio
import contextlib
from itertools import pairwise

import pytest

from renderer.resilience import (
    AsyncCircuitBreaker,
    CircuitOpen,
    Deadline,
    DeadlineExceeded,
    Guard,
    HoldOff,
    RetryBudget,
    RetryPolicy,
)


class Flaky:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return "ok"


def guard(attempts: int = 3, initial_wait: float = 0.001, fail_max: int = 100) -> Guard:
    breaker = AsyncCircuitBreaker("test", fail_max=fail_max, reset_timeout=60)
    policy = RetryPolicy(attempts=attempts, initial_wait=initial_wait, max_wait=initial_wait)
    return Guard(breaker, timeout=1.0, policy=policy, is_transient=lambda e: isinstance(e, ConnectionError))


async def test_transient_errors_are_retried_up_to_the_attempt_limit() -> None:
    flaky = Flaky(ConnectionError("reset"))
    with pytest.raises(ConnectionError):
        await guard(attempts=3).run(Deadline.after(5), flaky)
    assert flaky.calls == 3


async def test_other_errors_are_not_retried() -> None:
    flaky = Flaky(ValueError("bad reply"))
    with pytest.raises(ValueError):
        await guard(attempts=3).run(Deadline.after(5), flaky)
    assert flaky.calls == 1


async def test_no_attempt_starts_when_the_deadline_has_passed() -> None:
    flaky = Flaky(None)
    with pytest.raises(DeadlineExceeded):
        await guard().run(Deadline.after(0), flaky)
    assert flaky.calls == 0


async def test_no_retry_whose_backoff_would_cross_the_deadline() -> None:
    flaky = Flaky(ConnectionError("reset"))
    with pytest.raises(ConnectionError):
        await guard(attempts=5, initial_wait=10).run(Deadline.after(1), flaky)
    assert flaky.calls == 1


async def test_an_open_breaker_is_not_retried() -> None:
    g = guard(attempts=3, fail_max=1)
    flaky = Flaky(ConnectionError("reset"))
    with pytest.raises((ConnectionError, CircuitOpen)):
        await g.run(Deadline.after(5), flaky)
    assert flaky.calls == 1
    with pytest.raises(CircuitOpen):
        await g.run(Deadline.after(5), flaky)
    assert flaky.calls == 1


async def test_a_call_that_hangs_is_cut_at_its_timeout() -> None:
    import asyncio

    async def hangs() -> None:
        await asyncio.sleep(60)

    g = guard(attempts=1)
    g.timeout = 0.01
    with pytest.raises(TimeoutError):
        await g.run(Deadline.after(5), hangs)


async def test_a_timeout_cut_short_by_the_deadline_is_not_a_backend_failure() -> None:
    import asyncio

    breaker = AsyncCircuitBreaker("test", fail_max=1, reset_timeout=60, neutral=(DeadlineExceeded,))
    policy = RetryPolicy(attempts=1, initial_wait=0.001, max_wait=0.001)
    slow = Guard(breaker, timeout=1.0, policy=policy, is_transient=lambda e: False)

    async def hangs() -> None:
        await asyncio.sleep(5)

    with pytest.raises(DeadlineExceeded):
        await slow.run(Deadline.after(0.02), hangs)
    assert breaker.state == "closed"
    # A timeout of the backend's own length is a fault: with fail_max=1 it opens the breaker.
    own = Guard(breaker, timeout=0.02, policy=policy, is_transient=lambda e: False)
    with pytest.raises(TimeoutError):
        await own.run(Deadline.after(5), hangs)
    assert breaker.state == "open"


async def test_the_drivers_own_timeout_cut_short_by_the_deadline_is_not_a_backend_failure() -> None:
    # pymongo's timeout (sent to the server as maxTimeMS) raises its own error, not TimeoutError,
    # and often before asyncio's timeout: cut short by the deadline, it says nothing of MongoDB.
    class DriverTimeout(Exception):
        timeout = True

    breaker = AsyncCircuitBreaker("test", fail_max=1, reset_timeout=60, neutral=(DeadlineExceeded,))
    policy = RetryPolicy(attempts=1, initial_wait=0.001, max_wait=0.001)
    cut = Guard(breaker, 1.0, policy, lambda e: False, is_timeout=lambda e: getattr(e, "timeout", False))
    with pytest.raises(DeadlineExceeded):
        await cut.run(Deadline.after(0.5), Flaky(DriverTimeout()))
    assert breaker.state == "closed"
    with pytest.raises(DriverTimeout):  # given its whole time, it is the backend's
        await cut.run(Deadline.after(5), Flaky(DriverTimeout()))
    assert breaker.state == "open"


async def test_a_backend_with_its_own_timeout_is_waited_for_never_cancelled() -> None:
    # pymongo on Python 3.11 cannot survive a cancellation that lands while its own timeout is
    # ending a wait for a pool connection (asyncio.wait_for's inner task is left running and takes
    # the pool's lock for good): every later read of that process hangs. Both timers share one
    # budget, so a stalled loop runs them in the same turn. Seen as a suite hang (4 times, stacks
    # in the issue note). A backend with its own timeout (a scope) stops waiting at the budget
    # and leaves the call to end itself; one without keeps being cancelled.
    cancelled: list[bool] = []
    finished = asyncio.Event()

    async def late_driver() -> str:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        finished.set()
        return "late"

    def guarded(scope: bool) -> Guard:
        breaker = AsyncCircuitBreaker("test", fail_max=100, reset_timeout=60)
        policy = RetryPolicy(attempts=1, initial_wait=0.001, max_wait=0.001)
        if scope:
            return Guard(breaker, 0.01, policy, lambda e: False, scope=lambda seconds: contextlib.nullcontext())
        return Guard(breaker, 0.01, policy, lambda e: False)

    with pytest.raises(TimeoutError):
        await guarded(scope=True).run(Deadline.after(5), late_driver)
    await asyncio.wait_for(finished.wait(), 5)  # it ended by itself, uncancelled
    assert cancelled == []
    with pytest.raises(TimeoutError):
        await guarded(scope=False).run(Deadline.after(5), late_driver)
    assert cancelled == [True]


def test_the_retry_budget_caps_retries_at_a_share_of_first_attempts() -> None:
    budget = RetryBudget(ratio=0.2, window=60, floor=3)
    for _ in range(10):
        budget.called()
    spent = sum(budget.try_spend() for _ in range(20))
    assert spent == 3 + 2  # the floor plus 20 % of ten first attempts
    for _ in range(10):
        budget.called()
    assert budget.try_spend() and budget.try_spend() and not budget.try_spend()


async def test_retries_refused_by_the_budget_are_reported() -> None:
    outcomes: list[bool] = []
    breaker = AsyncCircuitBreaker("test", fail_max=100, reset_timeout=60)
    policy = RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.001)
    g = Guard(
        breaker,
        timeout=1.0,
        policy=policy,
        is_transient=lambda e: isinstance(e, ConnectionError),
        budget=RetryBudget(ratio=0.0, floor=1),
        on_retry=outcomes.append,
    )
    flaky = Flaky(ConnectionError("reset"))
    with pytest.raises(ConnectionError):
        await g.run(Deadline.after(5), flaky)
    with pytest.raises(ConnectionError):
        await g.run(Deadline.after(5), flaky)
    assert flaky.calls == 3  # two first attempts and the one retry the budget allowed
    assert outcomes == [True, False, False]


async def test_an_attempt_that_timed_out_is_not_retried() -> None:
    import asyncio

    calls = 0

    async def slow() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(60)

    g = guard(attempts=3)
    g.timeout = 0.02
    with pytest.raises(TimeoutError):
        await g.run(Deadline.after(5), slow)
    assert calls == 1  # another attempt would have timed out too, and the first may still run


async def test_no_retry_when_the_time_left_cannot_fit_a_typical_call() -> None:
    import asyncio

    g = guard(attempts=3)

    async def typical() -> str:
        await asyncio.sleep(0.2)
        return "ok"

    assert await g.run(Deadline.after(5), typical) == "ok"
    assert g.typical_call() >= 0.2
    flaky = Flaky(ConnectionError("reset"))
    with pytest.raises(ConnectionError):
        await g.run(Deadline.after(0.1), flaky)  # 0.1 s left: a 0.2 s call can't fit
    assert flaky.calls == 1
    with pytest.raises(ConnectionError):
        await g.run(Deadline.after(5), flaky)  # plenty of time: retried as usual
    assert flaky.calls == 1 + 3


async def test_a_backend_that_holds_off_is_called_again_when_it_said_without_spending_attempts() -> None:
    # The CDN's rate limit and its 429s: the wait is the backend's word, not a backoff, and only
    # the Guard loops (it was a second loop around the Guard's in the CDN purger).
    calls: list[float] = []
    loop_time = asyncio.get_running_loop().time

    async def held_then_answers() -> str:
        calls.append(loop_time())
        if len(calls) <= 3:
            raise HoldOff(0.05)
        return "ok"

    assert await guard(attempts=1).run(Deadline.after(5), held_then_answers) == "ok"
    assert len(calls) == 4
    assert all(later - earlier >= 0.05 for earlier, later in pairwise(calls)), calls


async def test_a_hold_off_past_the_deadline_is_raised_at_once() -> None:
    flaky = Flaky(HoldOff(10.0))
    with pytest.raises(HoldOff):
        await guard(attempts=3).run(Deadline.after(1), flaky)
    assert flaky.calls == 1
