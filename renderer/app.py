"""``make_app(services)``: the Tornado application, with every route in one place."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

import tornado.httputil
import tornado.web

from healthcheck.tornado_handlers import HealthcheckHandler, LiveHandler
from renderer import contract, logs
from renderer.handlers.api import (
    ArticleApiHandler,
    OpenApiHandler,
    PendingPurgesHandler,
    PurgeApiHandler,
)
from renderer.handlers.metrics import MetricsHandler
from renderer.handlers.pages import (
    STATIC_DIR,
    ArticleHandler,
    CachePolicy,
    FeedHandler,
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
        # Ids for requests that come without one (Varnish always sends one): this process's
        # random prefix and a counter, a fifth of uuid4's cost on the hit path (scripts/bench).
        self._id_prefix = os.urandom(4).hex() + "-"
        self._ids = itertools.count(1)

    def find_handler(self, request: Any, **kwargs: Any) -> Any:
        # Called once per request, when its headers have arrived (and before its handler's task
        # is made, which copies the request id's context).
        self.in_flight += 1
        self.drained.clear()
        self._rotate(request)
        # The request's id: Varnish's X-Request-Id, or one of our own. Every log line of the
        # request carries it, and the answer echoes it (AnswerHeaders).
        request.request_id = request.headers.get("X-Request-Id") or f"{self._id_prefix}{next(self._ids):x}"
        logs.request_id.set(request.request_id)
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


class AnswerHeaders(tornado.web.OutputTransform):
    """On every answer, Tornado's own errors included: the request's id echoed in
    ``X-Request-Id``, and no ``Server`` (Tornado names itself and its version there; no answer of
    ours names its software)."""

    def __init__(self, request: tornado.httputil.HTTPServerRequest) -> None:
        self._request_id = getattr(request, "request_id", "")

    def transform_first_chunk(
        self, status_code: int, headers: tornado.httputil.HTTPHeaders, chunk: bytes, finishing: bool
    ) -> tuple[int, tornado.httputil.HTTPHeaders, bytes]:
        headers.pop("Server", None)
        if self._request_id:
            headers["X-Request-Id"] = self._request_id
        return status_code, headers, chunk


class AccessLog:
    """One JSON line per request, written in batches straight to stderr.

    Through ``logging`` and its JSON formatter each line cost about a fifth of the Redis-hit
    path's throughput (scripts/bench); here a line is one ``json.dumps`` and the writes are
    batched: flushed at least every ``interval`` seconds, or at ``batch`` lines.
    """

    def __init__(self, interval: float = 0.2, batch: int = 512) -> None:
        self.enabled = logging.getLogger("pagecache.access").isEnabledFor(logging.INFO)
        self._lines: list[str] = []
        self._interval = interval
        self._batch = batch
        self._flush_at = 0.0
        self._pid = os.getpid()

    def __call__(self, handler: tornado.web.RequestHandler) -> None:
        """Tornado's ``log_function``."""
        if not self.enabled:
            return
        request = handler.request
        now = time.time()
        line = {
            "time": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
            "level": "INFO",
            "logger": "pagecache.access",
            "pid": self._pid,
            "message": "request",
            "request_id": getattr(request, "request_id", "-"),
            "method": request.method,
            "path": request.path,
            "status": handler.get_status(),
            "duration_ms": round(request.request_time() * 1000, 2),
            "tier": handler._headers.get(contract.HEADER_TIER, ""),
            "cache_status": handler._headers.get(contract.HEADER_CACHE_STATUS, ""),
        }
        self._lines.append(json.dumps(line, ensure_ascii=False))
        if len(self._lines) >= self._batch or now >= self._flush_at:
            self.flush()
            self._flush_at = now + self._interval

    async def run(self) -> None:
        """Flush every ``interval`` seconds, so a quiet process still writes its last lines."""
        while True:
            await asyncio.sleep(self._interval)
            self.flush()

    def flush(self) -> None:
        """Write what is buffered (also called at shutdown)."""
        if self._lines:
            data = ("\n".join(self._lines) + "\n").encode()
            self._lines.clear()
            os.write(sys.stderr.fileno(), data)


TEXT = "text/plain; charset=UTF-8"


def robots_txt(site_url: str) -> SmallFile:
    """``renderer/static/robots.txt`` with the sitemaps named (absolute URLs, as the format asks)."""
    base = SmallFile.load("robots.txt", TEXT).body.decode()
    site = site_url.rstrip("/")
    named = f"\nSitemap: {site}{contract.SITEMAP_PATH}\nSitemap: {site}{contract.NEWS_SITEMAP_PATH}\n"
    return SmallFile.of(base.rstrip("\n").encode() + named.encode(), TEXT)


def site_images() -> list[tuple[str, SmallFile]]:
    """``renderer/static/img/*.jpg``: the site's own images (the sample articles' lead images), by path."""
    return [
        (f"/static/img/{path.name}", SmallFile.load(f"img/{path.name}", "image/jpeg"))
        for path in sorted((STATIC_DIR / "img").glob("*.jpg"))
    ]


def make_app(services: Services, access_log: AccessLog | None = None) -> PagecacheApplication:
    """The renderer's routes; handlers get ``services`` and nothing global. ``access_log``: where
    each request's line goes (None: nowhere)."""
    pages = {"services": services, "policy": CachePolicy(services)}

    def feed(cache_id: str | None, content_type: str) -> dict[str, Any]:
        return {**pages, "cache_id": cache_id, "content_type": content_type}

    routes: list[Any] = [
        (r"/", HomeHandler, pages),
        (r"/noticia/(.*)", ArticleHandler, pages),
        (r"/robots\.txt", SmallFileHandler, {**pages, "file": robots_txt(services.settings.site_url)}),
        (r"/rss\.xml", FeedHandler, feed(contract.HOME_FEED_CACHE_ID, contract.FEED_CONTENT_TYPE)),
        (
            rf"/([a-z0-9-]{{1,{contract.SECTION_MAX_LENGTH}}})/rss\.xml",
            FeedHandler,
            feed(None, contract.FEED_CONTENT_TYPE),
        ),
        (r"/sitemap-news\.xml", FeedHandler, feed(contract.NEWS_SITEMAP_CACHE_ID, contract.SITEMAP_CONTENT_TYPE)),
        (r"/sitemap\.xml", FeedHandler, feed(contract.SITEMAP_CACHE_ID, contract.SITEMAP_CONTENT_TYPE)),
        (r"/favicon\.ico", SmallFileHandler, {**pages, "file": SmallFile.load("favicon.ico", "image/x-icon")}),
        *((re.escape(path), SmallFileHandler, {**pages, "file": image}) for path, image in site_images()),
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
        transforms=[AnswerHeaders],
        xsrf_cookies=False,
        compress_response=False,  # Varnish and the CDN compress; the renderer stays cheap
        log_function=access_log or (lambda handler: None),
        connection_max_age=services.settings.connection_max_age,
    )
