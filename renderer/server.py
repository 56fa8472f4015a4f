"""``main()``: read settings, configure logging, bind, fork N processes, serve until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from typing import NoReturn

from prometheus_client import multiprocess
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from renderer import logs, metrics
from renderer.app import AccessLog, make_app
from renderer.services import Services
from renderer.settings import Settings

log = logging.getLogger("pagecache.server")

CLOSE_TIMEOUT = 3.0


async def serve(settings: Settings, sockets: list[socket.socket]) -> None:
    """Serve on ``sockets`` until SIGTERM/SIGINT, then drain in-flight requests and close pools."""
    services = Services.build(settings)
    await services.start()
    access_log = AccessLog()
    flusher = asyncio.create_task(access_log.run())
    app = make_app(services, access_log)
    # The editors' API streams bodies and sets its own cap (413 with a JSON reason); the default
    # applies to every other route, which takes no body at all. No xheaders: nothing reads the
    # client's address or scheme (links come from SITE_URL, the access log names no address), and
    # Tornado's X-Forwarded-For check (a getaddrinfo per request) was 4 % of a Redis hit.
    server = HTTPServer(
        app,
        max_body_size=64 * 1024,
        idle_connection_timeout=settings.http_idle_timeout,
        body_timeout=settings.http_body_timeout,
    )
    server.add_sockets(sockets)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    log.warning("renderer pid %d serving on port %d", os.getpid(), settings.port)
    await stopping.wait()
    server.stop()  # no new connections; requests in flight carry on
    # Every request ends within its deadline (a publish within PUBLISH_DEADLINE); closing
    # connections before that would cut some off.
    longest = max(settings.request_deadline, settings.publish_deadline)
    try:
        await asyncio.wait_for(app.drained.wait(), timeout=longest + 1)
    except TimeoutError:
        log.warning("%d requests still in flight at shutdown", app.in_flight)
    try:
        await asyncio.wait_for(server.close_all_connections(), timeout=1)
    except TimeoutError:
        log.warning("connections still open at shutdown")
    # A pool that hangs on close (a monitor mid-check, a half-read socket) must not keep the
    # process alive: the requests are done, so bound the goodbye.
    # Closing finishes a pending second invalidation of recent publishes: one publish deadline.
    close_timeout = settings.publish_deadline + CLOSE_TIMEOUT
    flusher.cancel()
    access_log.flush()
    try:
        await asyncio.wait_for(services.close(), timeout=close_timeout)
    except TimeoutError:
        log.warning("connection pools not closed after %.0f s; exiting anyway", close_timeout)


def _serve_then_exit(settings: Settings, sockets: list[socket.socket]) -> NoReturn:
    """Serve until SIGTERM, drain, and end the process with ``os._exit``: asyncio.run's own
    teardown (cancel every task, join the default executor's threads) could wait on a stuck
    thread after the drain is done."""
    code = 0
    try:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve(settings, sockets))
    except BaseException:
        log.exception("renderer %d failed", os.getpid())
        code = 1
    finally:
        os._exit(code)


def _fork_worker(settings: Settings, sockets: list[socket.socket]) -> int:
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        _serve_then_exit(settings, sockets)
    return pid


def supervise(count: int, settings: Settings, sockets: list[socket.socket]) -> None:
    """Run ``count`` workers on the shared sockets; replace any that dies until SIGTERM/SIGINT,
    then forward the signal and wait for every worker's graceful drain."""
    restarts = metrics.worker_restarts_counter()
    workers = {_fork_worker(settings, sockets) for _ in range(count)}
    stopping = False
    recent: list[float] = []

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while workers:
        pid, status = os.wait()  # a signal handler runs in between; the wait then resumes (PEP 475)
        if pid not in workers:
            continue
        workers.discard(pid)
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
        if stopping:
            continue
        reason = (
            f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.waitstatus_to_exitcode(status)}"
        )
        restarts.labels(reason).inc()
        now = time.monotonic()
        recent = [t for t in recent if t > now - 10] + [now]
        if len(recent) > 2 * count:
            time.sleep(1)  # a crash loop: don't spin, but keep trying
        # Held off while forking: a SIGTERM between the fork and the add would miss the new worker;
        # one that came since the check above (or in the pause) was forwarded already: no fork.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            if stopping:
                continue
            replacement = _fork_worker(settings, sockets)
            workers.add(replacement)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        log.error(
            "renderer worker %d died (%s); replaced by %d",
            pid,
            reason,
            replacement,
            extra={"dead_pid": pid, "new_pid": replacement, "reason": reason},
        )


def main() -> None:
    """Entry point of ``python -m renderer`` and the ``pagecache-renderer`` script."""
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    sockets = bind_sockets(settings.port, address=settings.address, reuse_port=True)
    count = settings.process_count()
    if count == 1:
        _serve_then_exit(settings, sockets)  # the Kubernetes default at one CPU
    given = metrics.multiprocess_dir()
    directory = given or tempfile.mkdtemp(prefix="pagecache-metrics-")
    for stale in os.listdir(directory):  # counters of a previous run must not add up
        os.unlink(os.path.join(directory, stale))
    metrics.enable_multiprocess(directory)
    try:
        supervise(count, settings, sockets)
    finally:
        if given is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
