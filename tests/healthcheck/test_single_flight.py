"""One helper shares one call per key among its callers (the renderer's lookups, refreshes,
listing queries and renders, the healthcheck's runs)."""

from __future__ import annotations

import asyncio
import time

import pytest

from healthcheck import SingleFlight


class Counted:
    def __init__(self) -> None:
        self.calls = 0
        self.gate = asyncio.Event()

    async def __call__(self) -> int:
        self.calls += 1
        await self.gate.wait()
        return self.calls


async def test_callers_of_one_key_meanwhile_share_one_call() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    call = Counted()
    waiting = [asyncio.ensure_future(flight.do("k", call)) for _ in range(5)]
    await asyncio.sleep(0)
    call.gate.set()
    assert await asyncio.gather(*waiting) == [1] * 5 and call.calls == 1
    assert "k" not in flight
    assert await flight.do("k", call) == 2  # done: the next caller calls again


async def test_a_caller_that_gives_up_leaves_the_call_to_the_others() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    call = Counted()
    first = asyncio.ensure_future(flight.do("k", call))
    second = asyncio.ensure_future(flight.do("k", call))
    await asyncio.sleep(0)
    first.cancel()
    call.gate.set()
    assert await second == 1 and call.calls == 1


async def test_a_call_begun_before_since_is_not_shared() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    call = Counted()
    early = asyncio.ensure_future(flight.do("k", call))
    await asyncio.sleep(0)
    later = asyncio.ensure_future(flight.do("k", call, since=time.monotonic()))
    await asyncio.sleep(0)
    call.gate.set()
    assert sorted(await asyncio.gather(early, later)) == [2, 2] and call.calls == 2


async def test_run_here_shares_and_says_so_and_passes_errors_on() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    call = Counted()
    results = asyncio.gather(*(flight.run_here("k", call) for _ in range(3)))
    await asyncio.sleep(0)
    call.gate.set()
    assert sorted(await results) == [(1, False), (1, True), (1, True)]

    async def fails() -> int:
        await asyncio.sleep(0)
        raise ValueError("no")

    outcomes = await asyncio.gather(*(flight.run_here("e", fails) for _ in range(2)), return_exceptions=True)
    assert [type(o) for o in outcomes] == [ValueError, ValueError] and "e" not in flight


@pytest.mark.parametrize("key", [None, ("a", 1)])
async def test_any_hashable_key(key: object) -> None:
    flight: SingleFlight[object, int] = SingleFlight()
    call = Counted()
    call.gate.set()
    assert await flight.do(key, call) == 1


async def test_kept_results_are_shared_after_the_call_until_since_asks_for_a_newer_one() -> None:
    flight: SingleFlight[str, int] = SingleFlight(keep_results=True)
    call = Counted()
    call.gate.set()
    changed = time.monotonic()
    assert await flight.do("k", call, since=changed) == 1
    assert await flight.do("k", call, since=changed) == 1 and call.calls == 1  # begun after: shared
    assert await flight.do("k", call, since=time.monotonic()) == 2  # a change since: a new call
