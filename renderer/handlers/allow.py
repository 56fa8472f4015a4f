"""``Allow`` on every 405 (RFC 9110 §15.5.6): the methods the handler's class implements."""

from __future__ import annotations

import tornado.web


def allowed_methods(handler_class: type[tornado.web.RequestHandler]) -> str:
    """The methods ``handler_class`` implements, as an ``Allow`` value."""
    base = tornado.web.RequestHandler
    methods = [
        method
        for method in handler_class.SUPPORTED_METHODS
        if getattr(handler_class, method.lower()) is not getattr(base, method.lower())
    ]
    return ", ".join(methods)


class AllowOn405(tornado.web.RequestHandler):
    """Mixed into a handler base class: a 405 answer names what is allowed."""

    def set_status(self, status_code: int, reason: str | None = None) -> None:
        super().set_status(status_code, reason)
        # send_error clears the headers, then sets the status, then writes: this is the moment.
        if status_code == 405:
            self.set_header("Allow", allowed_methods(type(self)))
