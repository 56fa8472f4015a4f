"""SIGTERM during a burst: the renderer stops accepting, finishes every request in flight, exits."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from typing import Callable

import aiohttp

from devstack.servers import port_open
from tests.conftest import StackClients
from tests.helpers import unique_slug


def test_sigterm_lets_every_in_flight_request_complete(make_stack: Callable[..., StackClients]) -> None:
    # Redis frozen makes every request slow (a 1 s Redis timeout, then MongoDB): many in flight.
    s = make_stack(
        varnish=False,
        PROCESSES="2",
        REDIS_TIMEOUT="1.0",
        RETRY_ATTEMPTS="1",
        REQUEST_DEADLINE="6",
        BREAKER_FAIL_MAX="1000",
    )
    slugs = [unique_slug("drenagem") for _ in range(40)]
    for slug in slugs:
        s.add_article(slug)
    renderer = s.server("renderer")

    async def burst() -> list[int]:
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def one(slug: str) -> int:
                async with session.get(f"{s.renderer}/noticia/{slug}.ghtml") as resp:
                    await resp.read()
                    return resp.status

            tasks = [asyncio.ensure_future(one(slug)) for slug in slugs]
            await asyncio.sleep(0.5)  # all accepted and waiting on the frozen Redis
            os.kill(renderer.pid, signal.SIGTERM)
            return list(await asyncio.gather(*tasks, return_exceptions=True))

    s.server("redis").freeze()
    try:
        outcomes = asyncio.run(burst())
    finally:
        s.server("redis").thaw()
    assert outcomes == [200] * len(slugs)  # none cut off
    try:
        code = renderer.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        code = None
    assert code == 0, renderer.log_tail(60)
    deadline = time.monotonic() + 5
    while port_open(renderer.port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not port_open(renderer.port)
