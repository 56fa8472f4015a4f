"""``Allow`` on every 405 (RFC 9110 §15.5.6), and HEAD wherever GET is (RFC 9110 §9.3.2)."""

from __future__ import annotations

from typing import Any

import tornado.web


def allowed_methods(handler_class: type[tornado.web.RequestHandler]) -> str:
    """The methods ``handler_class`` implements, as an ``Allow`` value."""
    base = tornado.web.RequestHandler
    methods = [
        method
        for method in handler_class.SUPPORTED_METHODS
        if method != "HEAD" and getattr(handler_class, method.lower()) is not getattr(base, method.lower())
    ]
    if "GET" in methods:
        methods.insert(methods.index("GET") + 1, "HEAD")
    return ", ".join(methods)


class AllowOn405(tornado.web.RequestHandler):
    """A handler base class: HEAD answers as GET does (Tornado sends the headers, not the body),
    and a 405 names what is allowed."""

    async def head(self, *args: Any, **kwargs: Any) -> None:
        if type(self).get is tornado.web.RequestHandler.get:
            raise tornado.web.HTTPError(405)
        result = self.get(*args, **kwargs)  # type: ignore[func-returns-value]
        if result is not None:
            await result

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # send_error clears the headers, then sets the status, then writes: this is the moment
        # (and only errors pay for it, not every answer).
        if status_code == 405:
            self.set_header("Allow", allowed_methods(type(self)))
        self.write_error_body(status_code, **kwargs)

    def write_error_body(self, status_code: int, **kwargs: Any) -> None:
        """The error's body (Tornado's HTML page unless a handler says otherwise)."""
        super().write_error(status_code, **kwargs)
