"""The purge rate limit that renderers share through Redis (GCRA by Redis's clock), against a
real Redis: two limits on one key stand for two renderer processes, or two pods."""

from __future__ import annotations

import asyncio

from renderer.backends import redis_pages
from renderer.rate_limit import SharedRateLimit, TokenBucket
from tests.conftest import StackClients
from tests.helpers import unique_slug


def test_two_renderers_share_one_burst_one_rate_and_a_429s_hold_off(stack: StackClients) -> None:
    key = unique_slug("taxa")

    async def scenario() -> tuple[list[float], float, float, float]:
        clients = [redis_pages.connect(stack.stack.env["REDIS_URL"], 1.0) for _ in range(2)]
        first, second = (SharedRateLimit(c, key, rate=10.0, burst=3, fallback=TokenBucket(10.0, 3)) for c in clients)
        try:
            burst = [await limit.try_take() for limit in (first, second, first, second)]
            await asyncio.sleep(burst[-1])
            after_wait = await second.try_take()
            held = await first.hold_off(5)
            return burst, after_wait, held, await second.try_take()
        finally:
            for client in clients:
                await client.aclose()

    burst, after_wait, held, other = asyncio.run(scenario())
    # Three between them, then one every 100 ms for both together.
    assert burst[:3] == [0.0, 0.0, 0.0] and 0.05 < burst[3] <= 0.1, burst
    assert after_wait == 0.0
    # A 429 that one of them got holds the other back too.
    assert 4.9 < held <= 5.0 and 4.8 < other <= 5.0, (held, other)


def three_takes_then_a_hold_off(
    redis_url: str, rate: float, burst: int, fallback: TokenBucket, hold: float
) -> tuple[list[float], float]:
    """What a shared limit on ``redis_url`` (a key of its own) answers three takes in a row, then a
    429's hold-off of ``hold`` seconds."""

    async def scenario() -> tuple[list[float], float]:
        client = redis_pages.connect(redis_url, 0.5)
        limit = SharedRateLimit(client, unique_slug("taxa"), rate, burst, fallback)
        try:
            return [await limit.try_take() for _ in range(3)], await limit.hold_off(hold)
        finally:
            await client.aclose()

    return asyncio.run(scenario())


def test_without_redis_each_process_keeps_to_its_own_share() -> None:
    # Redis refused: the fallback (this process's share: bursts of 2, 5/s) decides.
    taken, held = three_takes_then_a_hold_off("redis://127.0.0.1:9/0", 10.0, 4, TokenBucket(5.0, 2), hold=2)
    assert taken[:2] == [0.0, 0.0] and 0.1 < taken[2] <= 0.2, taken
    assert 1.9 < held <= 2.0
