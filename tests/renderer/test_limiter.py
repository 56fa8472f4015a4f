"""The adaptive concurrency limit, as pure logic: it shrinks when calls slow down, grows back when
they recover, and queues fairly with a bound."""

from __future__ import annotations

import asyncio

import pytest

from renderer.limiter import AdaptiveLimit, Overloaded


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
