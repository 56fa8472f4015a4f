"""``main()``: read settings, configure logging, bind, fork N processes, serve until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import tempfile

from prometheus_client import multiprocess
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from renderer import logs, metrics
from renderer.app import make_app
from renderer.services import Services
from renderer.settings import Settings

log = logging.getLogger("pagecache.server")


async def serve(settings: Settings, sockets: list[socket.socket]) -> None:
    """Serve on ``sockets`` until SIGTERM/SIGINT, then drain in-flight requests and close pools."""
    services = Services.build(settings)
    await services.start()
    # Bodies up to twice the publish limit reach the handler, which answers 413 with a reason.
    app = make_app(services)
    server = HTTPServer(app, xheaders=True, max_body_size=settings.publish_max_bytes * 2)
    server.add_sockets(sockets)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    log.warning("renderer pid %d serving on port %d", os.getpid(), settings.port)
    await stopping.wait()
    server.stop()  # no new connections; requests in flight carry on
    # Every request ends within its deadline; closing connections before that would cut some off.
    try:
        await asyncio.wait_for(app.drained.wait(), timeout=settings.request_deadline + 1)
    except TimeoutError:
        log.warning("%d requests still in flight at shutdown", app.in_flight)
    try:
        await asyncio.wait_for(server.close_all_connections(), timeout=1)
    except TimeoutError:
        log.warning("connections still open at shutdown")
    await services.close()


def _run_children(count: int, settings: Settings, sockets: list[socket.socket]) -> None:
    children = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            asyncio.run(serve(settings, sockets))
            os._exit(0)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        os.waitpid(child, 0)
        multiprocess.mark_process_dead(child)  # type: ignore[no-untyped-call]


def main() -> None:
    """Entry point of ``python -m renderer`` and the ``pagecache-renderer`` script."""
    logs.configure()
    settings = Settings.from_env()
    sockets = bind_sockets(settings.port, address=settings.address, reuse_port=True)
    count = settings.processes or os.cpu_count() or 1
    if count == 1:
        asyncio.run(serve(settings, sockets))
        return
    given = metrics.multiprocess_dir()
    directory = given or tempfile.mkdtemp(prefix="pagecache-metrics-")
    for stale in os.listdir(directory):  # counters of a previous run must not add up
        os.unlink(os.path.join(directory, stale))
    metrics.enable_multiprocess(directory)
    try:
        _run_children(count, settings, sockets)
    finally:
        if given is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
