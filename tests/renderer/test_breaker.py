"""The async breaker adapter: pybreaker's state machine with a real, awaited half-open trial."""

from __future__ import annotations

import asyncio
import warnings

import pybreaker
import pytest

from renderer.resilience import AsyncCircuitBreaker, CircuitOpen


class Backend:
    """A fake dependency whose health the test sets, counting the calls that reach it."""

    def __init__(self) -> None:
        self.up = False
        self.calls = 0
        self.hold: asyncio.Event | None = None

    async def call(self) -> str:
        self.calls += 1
        if self.hold is not None:
            await self.hold.wait()
        await asyncio.sleep(0)
        if not self.up:
            raise ConnectionError("backend down")
        return "ok"


async def open_breaker(breaker: AsyncCircuitBreaker, backend: Backend, failures: int) -> None:
    for _ in range(failures):
        with pytest.raises(ConnectionError):
            await breaker.call(backend.call)
    assert breaker.state == "open"


async def test_half_open_trial_is_a_real_call_and_reopens_while_backend_is_down() -> None:
    breaker = AsyncCircuitBreaker("test", fail_max=2, reset_timeout=0.05)
    backend = Backend()
    await open_breaker(breaker, backend, 2)

    with pytest.raises(CircuitOpen):
        await breaker.call(backend.call)
    assert backend.calls == 2  # refused without calling the backend

    await asyncio.sleep(0.06)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an un-awaited coroutine would warn here
        with pytest.raises(ConnectionError):
            await breaker.call(backend.call)
    assert backend.calls == 3  # exactly one real trial call
    assert breaker.state == "open"  # the backend is still down: open again

    with pytest.raises(CircuitOpen):
        await breaker.call(backend.call)
    assert backend.calls == 3


async def test_successful_trial_closes_the_breaker() -> None:
    breaker = AsyncCircuitBreaker("test", fail_max=1, reset_timeout=0.05)
    backend = Backend()
    await open_breaker(breaker, backend, 1)
    backend.up = True
    await asyncio.sleep(0.06)
    assert await breaker.call(backend.call) == "ok"
    assert breaker.state == "closed"
    assert breaker.opened_at is None


async def test_only_one_trial_call_runs_at_a_time() -> None:
    breaker = AsyncCircuitBreaker("test", fail_max=1, reset_timeout=0.05)
    backend = Backend()
    await open_breaker(breaker, backend, 1)
    await asyncio.sleep(0.06)
    backend.up = True
    backend.hold = asyncio.Event()
    trial = asyncio.ensure_future(breaker.call(backend.call))
    await asyncio.sleep(0.01)
    assert breaker.state == "half-open"
    with pytest.raises(CircuitOpen):
        await breaker.call(backend.call)
    backend.hold.set()
    assert await trial == "ok"
    assert backend.calls == 2
    assert breaker.state == "closed"


async def test_a_call_in_flight_when_the_breaker_opens_keeps_its_real_outcome() -> None:
    breaker = AsyncCircuitBreaker("test", fail_max=1, reset_timeout=60)
    slow, failing = Backend(), Backend()
    slow.up = True
    slow.hold = asyncio.Event()
    in_flight = asyncio.ensure_future(breaker.call(slow.call))  # admitted while closed
    await asyncio.sleep(0)
    with pytest.raises(ConnectionError):
        await breaker.call(failing.call)  # opens the breaker meanwhile
    assert breaker.state == "open"
    slow.hold.set()
    assert await in_flight == "ok"  # a committed write must not turn into "breaker open"
    assert breaker.state == "open"


async def test_excluded_errors_do_not_open_the_breaker() -> None:
    breaker = AsyncCircuitBreaker("test", fail_max=1, reset_timeout=10, exclude=(KeyError,))

    async def caller_mistake() -> None:
        raise KeyError("duplicate")

    for _ in range(3):
        with pytest.raises(KeyError):
            await breaker.call(caller_mistake)
    assert breaker.state == "closed"


async def test_transitions_are_reported() -> None:
    seen: list[tuple[str, str, str]] = []
    breaker = AsyncCircuitBreaker("redis", fail_max=1, reset_timeout=0.05, on_change=lambda *t: seen.append(t))
    backend = Backend()
    await open_breaker(breaker, backend, 1)
    backend.up = True
    await asyncio.sleep(0.06)
    await breaker.call(backend.call)
    assert seen == [("redis", "closed", "open"), ("redis", "open", "half-open"), ("redis", "half-open", "closed")]


def test_plain_pybreaker_call_async_closes_on_an_unawaited_trial() -> None:
    """Why the adapter exists: upstream's Tornado path "succeeds" a trial it never awaited."""
    from tornado.ioloop import IOLoop

    backend = Backend()
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=0.01)

    async def scenario() -> tuple[str, bool]:
        with pytest.raises((ConnectionError, pybreaker.CircuitBreakerError)):
            await breaker.call_async(backend.call)
        await asyncio.sleep(0.02)
        failed = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "coroutine ... was never awaited"
            try:
                await breaker.call_async(backend.call)
            except ConnectionError:
                failed = True
        return str(breaker.current_state), failed

    state, trial_failed = IOLoop.current().run_sync(scenario)
    if state != "closed":
        pytest.skip(f"pybreaker {pybreaker.__version__} no longer has the bug; the adapter could be simplified")
    # The backend was down for the trial, yet the breaker closed: the trial it judged was never awaited.
    assert trial_failed
