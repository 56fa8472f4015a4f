"""``make_app(services)``: the Tornado application, with every route in one place."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import tornado.httputil
import tornado.web

from healthcheck.tornado_handlers import HealthcheckHandler, LiveHandler
from renderer import contract
from renderer.handlers.api import (
    ArticleApiHandler,
    OpenApiHandler,
    PendingPurgesHandler,
    PurgeApiHandler,
)
from renderer.handlers.metrics import MetricsHandler
from renderer.handlers.pages import (
    ArticleHandler,
    CachePolicy,
    HomeHandler,
    LatestBoxHandler,
    NotFoundHandler,
    SectionHandler,
    SmallFile,
    SmallFileHandler,
)
from renderer.services import Services


class PagecacheApplication(tornado.web.Application):
    """Counts requests in flight, so that shutdown stops accepting and then waits for them; and
    closes client connections older than ``connection_max_age`` after their current request."""

    def __init__(self, *args: Any, connection_max_age: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = 0
        self.drained = asyncio.Event()
        self.drained.set()
        self.connection_max_age = connection_max_age

    def find_handler(self, request: Any, **kwargs: Any) -> Any:
        # Called once per request, when its headers have arrived.
        self.in_flight += 1
        self.drained.clear()
        self._rotate(request)
        return super().find_handler(request, **kwargs)

    def _rotate(self, request: Any) -> None:
        """Varnish (and any proxy) keeps backend connections open for as long as they are busy,
        so renderers that start later would get no share of them: past its age, a connection is
        answered with ``Connection: close`` and the client reconnects, wherever the kernel
        (SO_REUSEPORT), kube-proxy or the director sends it."""
        if self.connection_max_age <= 0:
            return
        connection = request.connection
        stream = getattr(connection, "stream", None)
        if stream is None:
            return
        now = time.monotonic()
        born = getattr(stream, "pagecache_born", None)
        if born is None:
            stream.pagecache_born = now
        elif now - born > self.connection_max_age and hasattr(connection, "_disconnect_on_finish"):
            # Tornado has no public switch for this; it is how it honours a client's own
            # "Connection: close" (the header is added and the socket closed after the response).
            connection._disconnect_on_finish = True

    def log_request(self, handler: tornado.web.RequestHandler) -> None:
        # Called once per request, when its response is finished.
        super().log_request(handler)
        self.in_flight -= 1
        if self.in_flight <= 0:
            self.drained.set()


class NoServerHeader(tornado.web.OutputTransform):
    """Tornado names itself and its version in ``Server`` on every answer, its own errors
    included; no answer of ours names its software."""

    def transform_first_chunk(
        self, status_code: int, headers: tornado.httputil.HTTPHeaders, chunk: bytes, finishing: bool
    ) -> tuple[int, tornado.httputil.HTTPHeaders, bytes]:
        headers.pop("Server", None)
        return status_code, headers, chunk


TEXT = "text/plain; charset=UTF-8"


def make_app(services: Services) -> PagecacheApplication:
    """The renderer's routes; handlers get ``services`` and nothing global."""
    pages = {"services": services, "policy": CachePolicy(services)}
    routes: list[Any] = [
        (r"/", HomeHandler, pages),
        (r"/noticia/(.*)", ArticleHandler, pages),
        (r"/robots\.txt", SmallFileHandler, {**pages, "file": SmallFile.load("robots.txt", TEXT)}),
        (r"/favicon\.ico", SmallFileHandler, {**pages, "file": SmallFile.load("favicon.ico", "image/x-icon")}),
        (r"/healthcheck", HealthcheckHandler, {"health": services.health}),
        (r"/healthcheck/live", LiveHandler),
        (r"/metrics", MetricsHandler, {"services": services}),
        (r"/api/articles/([^/]*)", ArticleApiHandler, {"services": services}),
        (r"/api/purge", PurgeApiHandler, {"services": services}),
        (r"/api/purge/pending", PendingPurgesHandler, {"services": services}),
        (r"/api/openapi\.json", OpenApiHandler, {"services": services}),
        (contract.LATEST_BOX_PATH, LatestBoxHandler, pages),
        # Last: a section is any other slug-shaped first segment.
        (rf"/([a-z0-9-]{{1,{contract.SECTION_MAX_LENGTH}}})(/?)", SectionHandler, pages),
    ]
    return PagecacheApplication(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args=pages,
        transforms=[NoServerHeader],
        xsrf_cookies=False,
        compress_response=False,  # Varnish and the CDN compress; the renderer stays cheap
        log_function=services.access_log,
        connection_max_age=services.settings.connection_max_age,
    )
