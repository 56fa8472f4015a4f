"""The adaptive concurrency limit, as pure logic: it shrinks when calls slow down, grows back when
they recover, and queues fairly with a bound."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from renderer.concurrency_limit import AdaptiveLimit, Overloaded


def run_calls(limit: AdaptiveLimit, rtt: float, count: int) -> None:
    """``count`` calls of ``rtt`` seconds each, with the limit fully used."""
    for _ in range(count):
        taken = 0
        while limit.try_acquire():
            taken += 1
        for _ in range(taken):
            limit.release(rtt)


def test_the_limit_shrinks_when_calls_slow_down_and_grows_back() -> None:
    limit = AdaptiveLimit(initial=20, min_limit=2, max_limit=200)
    run_calls(limit, 0.010, 50)
    steady = limit.limit
    assert steady >= 20
    run_calls(limit, 0.200, 3)  # twenty times slower: a database at ~5 % capacity
    assert limit.limit < steady / 4
    assert limit.limit >= 2
    run_calls(limit, 0.010, 80)
    assert limit.limit > steady / 2


def test_waiters_get_slots_in_order_and_the_queue_is_bounded() -> None:
    async def scenario() -> list[int]:
        limit = AdaptiveLimit(initial=1, min_limit=1, max_queue=2)
        assert limit.try_acquire()
        order: list[int] = []

        async def waiter(n: int) -> None:
            await limit.acquire(5.0)
            order.append(n)
            limit.release(None)

        tasks = [asyncio.ensure_future(waiter(n)) for n in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await limit.acquire(5.0)  # the queue (2) is full
        limit.release(None)
        await asyncio.gather(*tasks)
        assert limit.in_flight == 0
        return order

    assert asyncio.run(scenario()) == [0, 1]


def test_a_waiter_gives_up_at_its_deadline() -> None:
    async def scenario() -> None:
        limit = AdaptiveLimit(initial=1, min_limit=1)
        assert limit.try_acquire()
        with pytest.raises(Overloaded):
            await limit.acquire(0.05)
        limit.release(None)
        assert limit.in_flight == 0 and limit.try_acquire()

    asyncio.run(scenario())


def test_while_callers_queue_no_call_starts_over_the_limit_and_the_limit_follows_a_latency_step() -> None:
    # A hundred callers at once on a backend whose latency steps from 2 ms to 40 ms and back: when
    # the limit shrinks, the slots that calls give back must not go to the queue until the calls
    # in flight are under it (before: each release handed its slot on, so concurrency stayed put).
    async def scenario() -> tuple[list[tuple[int, int]], float, float, float]:
        limit = AdaptiveLimit(initial=20, min_limit=2, max_limit=60, max_queue=100)
        latency = 0.002
        over: list[tuple[int, int]] = []
        release = limit.release

        def checked_release(rtt: float | None) -> None:
            # A release lets waiters in only while there is room under the limit as it is now.
            before = limit.in_flight
            release(rtt)
            if limit.in_flight > max(before - 1, int(limit.limit)):
                over.append((limit.in_flight, int(limit.limit)))

        limit.release = checked_release  # type: ignore[method-assign]

        async def caller() -> None:
            await limit.acquire(30.0)
            await asyncio.sleep(latency)
            limit.release(latency)  # the backend's latency, whatever the event loop's delays

        async def phase(seconds: float) -> float:
            end = asyncio.get_running_loop().time() + seconds
            while asyncio.get_running_loop().time() < end:
                await asyncio.gather(*(caller() for _ in range(100)))
            return limit.limit

        fast = await phase(0.5)
        latency = 0.040
        slow = await phase(1.5)
        latency = 0.002
        recovered = await phase(1.5)
        return over, fast, slow, recovered

    over, fast, slow, recovered = asyncio.run(scenario())
    assert over == [], over[:10]
    assert slow < fast / 2, (fast, slow)
    assert recovered > 2 * slow, (slow, recovered)


def test_the_limit_learns_from_time_spent_in_mongodb_only() -> None:
    # A read that got its slot with no budget left ends at once in DeadlineExceeded: that says
    # nothing of the database, and its near-zero time must not make the limit grow. A read's
    # sample is its time in MongoDB calls, not the template rendering or retry backoff around them.
    from types import SimpleNamespace

    from renderer.resilience import Deadline, DeadlineExceeded
    from renderer.tiers import Tiers

    limit = AdaptiveLimit(initial=10, min_limit=2, max_limit=100)
    for _ in range(20):  # a database answering in 100 ms, the limit in use
        while limit.try_acquire():
            pass
        while limit.in_flight:
            limit.release(0.100)
    tiers: Any = SimpleNamespace(limit=limit, metrics=SimpleNamespace(mongodb_limit_changed=lambda limit: None))

    async def cut_by_the_deadline(deadline: Deadline) -> None:
        raise DeadlineExceeded("mongodb: deadline reached after 0.001s")

    async def slow_to_render(deadline: Deadline) -> str:
        assert deadline.attempts is not None
        deadline.attempts.append(0.100)  # what the guard records of its MongoDB attempt
        await asyncio.sleep(0.3)  # rendering, backoff: not the database
        return "page"

    async def scenario() -> None:
        for _ in range(30):
            assert limit.try_acquire()
            with pytest.raises(DeadlineExceeded):
                await Tiers._load_in_slot(tiers, cut_by_the_deadline, Deadline.after(1))
        assert limit.try_acquire()
        await Tiers._load_in_slot(tiers, slow_to_render, Deadline.after(1))

    before = (limit.limit, limit.short_rtt)
    asyncio.run(scenario())
    assert (limit.limit, limit.short_rtt) == pytest.approx(before, rel=0.05)
