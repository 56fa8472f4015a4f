"""A rendered page as the tiers store it: HTML plus the metadata its HTTP headers need.

Stored in Redis as one value, ``<json metadata>\\n<html>``, so a Redis hit is one GET and the
HTML bytes are written to the client without being decoded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

from tornado.httputil import format_timestamp


@dataclass(frozen=True)
class RenderedPage:
    """A page ready to send: ``status`` is 200 or 404 (negative cache)."""

    status: int
    html: bytes
    etag: str
    last_modified: float  # epoch seconds
    surrogate_keys: str  # space-separated xkeys
    rendered_at: float = 0.0  # epoch seconds; the age of a stale copy is measured from it
    # Epoch seconds after which the copy in Redis is past its freshness and is answered while it
    # is refreshed in the background (the revalidation window); 0: fresh for as long as it exists.
    fresh_until: float = 0.0

    def is_fresh(self, now: float) -> bool:
        """False once the page is in its revalidation window."""
        return not self.fresh_until or now < self.fresh_until

    @cached_property
    def last_modified_header(self) -> str:
        """``Last-Modified``, formatted once per page rather than once per request."""
        return format_timestamp(self.last_modified)

    def to_bytes(self) -> bytes:
        """The value stored at ``page:<id>`` and ``stale:<id>``."""
        meta = {
            "s": self.status,
            "e": self.etag,
            "m": self.last_modified,
            "k": self.surrogate_keys,
            "r": self.rendered_at,
            "f": self.fresh_until,
        }
        return json.dumps(meta, separators=(",", ":")).encode() + b"\n" + self.html

    @classmethod
    def from_bytes(cls, value: bytes) -> RenderedPage:
        """Parse a value written by ``to_bytes``; ValueError if it is not one."""
        head, sep, html = value.partition(b"\n")
        if not sep:
            raise ValueError("not a rendered page")
        try:
            meta = json.loads(head)
            return cls(
                int(meta["s"]),
                html,
                str(meta["e"]),
                float(meta["m"]),
                str(meta["k"]),
                float(meta["r"]),
                float(meta.get("f", 0.0)),
            )
        except (ValueError, KeyError, TypeError) as exc:  # corrupt, or an older page format
            raise ValueError(f"not a rendered page: {exc!r}") from exc
