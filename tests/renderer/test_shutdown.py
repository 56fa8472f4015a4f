"""SIGTERM during a burst: the renderer stops accepting, finishes every request in flight, exits."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import aiohttp

from devstack import servers
from devstack.servers import REPO, port_open
from renderer.server import CLOSE_TIMEOUT
from renderer.settings import Settings
from tests.conftest import EDITOR_TOKEN, StackClients
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


def test_one_process_exits_after_its_drain_while_a_name_lookup_hangs(tmp_path: Path) -> None:
    # Kubernetes' default at one CPU: one process, no supervisor, backends named by DNS. With the
    # cluster's DNS silent, Redis's reconnects wait in the default executor's threads for an answer
    # (glibc tries for minutes). Once its drain is done the process must end, not wait for them
    # (before: asyncio.run's teardown joined those threads, and the pod was killed instead).
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text("nameserver 127.0.0.1\noptions timeout:30 attempts:5\n")
    asked = tmp_path / "names-asked"
    asked.touch()
    log_path = tmp_path / "renderer.log"
    # In namespaces of its own: its loopback, port 53 and resolv.conf are nobody else's.
    env = {
        **os.environ,
        "PORT": str(servers.free_port()),
        "PROCESSES": "1",
        "REDIS_URL": "redis://redis.pagecache.test:6379/0",
        "MONGODB_URL": "mongodb://127.0.0.1:9/",  # refused: only Redis's name is looked up
        "EDITOR_TOKENS": EDITOR_TOKEN,
    }
    argv = ["unshare", "--mount", "--net", "--", sys.executable, "-m", "tests.silent_dns", str(resolv_conf), str(asked)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [*argv, "--", sys.executable, "-m", "renderer"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )
    try:
        wait_until(lambda: "redis.pagecache.test" in asked.read_text(), timeout=30)
        os.kill(proc.pid, signal.SIGTERM)
        # The drain's own bound (renderer.server.serve): nothing is in flight, so only the pools'
        # goodbye may take time.
        settings = Settings.from_env({})
        longest = max(settings.request_deadline, settings.publish_deadline)
        bound = longest + 1 + 1 + settings.publish_deadline + CLOSE_TIMEOUT
        try:
            code = proc.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            code = None
        log_text = log_path.read_text(errors="replace")
        assert code == 0, log_text[-4000:]
        assert "Traceback" not in log_text, log_text[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
