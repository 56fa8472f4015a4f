"""SIGTERM during a burst: the renderer stops accepting, finishes every request in flight, exits."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from typing import Callable

import aiohttp

from devstack import servers
from devstack.servers import port_open
from tests.conftest import StackClients
from tests.helpers import unique_slug, wait_until


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


def test_a_sigterm_during_a_crash_loop_stops_every_worker(make_stack: Callable[..., StackClients]) -> None:
    # Workers dying faster than the supervisor should replace them: it pauses a second before the
    # next fork. A SIGTERM in that pause must reach the replacement too (before: it was forked
    # after the signal was forwarded, never got it, and the supervisor waited on it for ever).
    s = make_stack(varnish=False, PROCESSES="2")
    renderer = s.server("renderer")
    for _ in range(5):  # more than twice the workers within ten seconds: a crash loop
        workers = servers.child_pids(renderer.pid)
        assert workers, renderer.log_tail(30)
        os.kill(min(workers), signal.SIGKILL)
        wait_until(lambda workers=workers: servers.child_pids(renderer.pid) != workers, timeout=10)
    os.kill(min(servers.child_pids(renderer.pid)), signal.SIGKILL)  # the pause begins
    time.sleep(0.3)
    os.kill(renderer.pid, signal.SIGTERM)
    try:
        code = renderer.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        code = None
    assert code == 0, renderer.log_tail(30)
