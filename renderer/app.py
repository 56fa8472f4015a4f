"""``make_app(services)``: the Tornado application, with every route in one place."""

from __future__ import annotations

from typing import Any

import tornado.web

from healthcheck.tornado_handlers import HealthcheckHandler, LiveHandler
from renderer import logs
from renderer.handlers.api import (
    ArticleApiHandler,
    OpenApiHandler,
    PendingPurgesHandler,
    PurgeApiHandler,
)
from renderer.handlers.metrics import MetricsHandler
from renderer.handlers.pages import ArticleHandler, CachePolicy, HomeHandler, NotFoundHandler
from renderer.services import Services


def make_app(services: Services) -> tornado.web.Application:
    """The renderer's routes; handlers get ``services`` and nothing global."""
    pages = {"services": services, "policy": CachePolicy(services)}
    routes: list[Any] = [
        (r"/", HomeHandler, pages),
        (r"/noticia/(.*)", ArticleHandler, pages),
        (r"/healthcheck", HealthcheckHandler, {"health": services.health}),
        (r"/healthcheck/live", LiveHandler),
        (r"/metrics", MetricsHandler, {"services": services}),
        (r"/api/articles/([^/]*)", ArticleApiHandler, {"services": services}),
        (r"/api/purge", PurgeApiHandler, {"services": services}),
        (r"/api/purge/pending", PendingPurgesHandler, {"services": services}),
        (r"/api/openapi.json", OpenApiHandler),
    ]
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args=pages,
        xsrf_cookies=False,
        compress_response=False,  # Varnish and the CDN compress; the renderer stays cheap
        log_function=logs.log_request,
    )
