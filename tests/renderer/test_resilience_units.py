"""Retries with backoff inside one deadline (tenacity), counted in attempts rather than timed."""

from __future__ import annotations

import pytest

from renderer.breaker import AsyncCircuitBreaker, CircuitOpen
from renderer.resilience import Deadline, DeadlineExceeded, Guard, RetryPolicy


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
