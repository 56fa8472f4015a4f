"""A rendered page as the tiers store it: HTML plus the metadata its HTTP headers need.

Stored in Redis as one record per page, ``<json metadata>\\n<html>`` (its keys:
``contract.RECORD_KEYS``), so a Redis hit is one GET and the HTML bytes are written to the client
without being decoded. The record names the version
it was rendered from and how long it is fresh; past that it is the page's last good copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

from tornado.httputil import format_timestamp

from renderer.contract import RECORD_KEYS

# The record's keys, looked up once (a Redis hit decodes a record).
_STATUS, _ETAG, _LAST_MODIFIED, _SURROGATE_KEYS, _RENDERED_AT, _VERSION, _FRESH_UNTIL, _SERVE_UNTIL = (
    RECORD_KEYS[name]
    for name in (
        "status",
        "etag",
        "last_modified",
        "surrogate_keys",
        "rendered_at",
        "version",
        "fresh_until",
        "serve_until",
    )
)


def may_replace(offered: int, held: int | None) -> bool:
    """The one fence every cache obeys: a copy of version ``offered`` may replace one of version
    ``held`` (None: nothing held) unless it is older. An equal version replaces: the same content,
    fresher. Its server-side twins say the same: Redis's set-if-not-older script
    (``backends/redis_pages.py``) and the stored listings' update filter (``generation $lte``,
    ``backends/mongo_articles.py``)."""
    return held is None or offered >= held


@dataclass(frozen=True)
class RenderedPage:
    """A page ready to send: ``status`` is 200 or 404 (negative cache)."""

    status: int
    html: bytes
    etag: str
    last_modified: float  # epoch seconds
    surrogate_keys: str  # space-separated xkeys
    rendered_at: float = 0.0  # epoch seconds; the age of a stale copy is measured from it
    # What it was rendered from: an article's MongoDB ``version`` (0: no such article), or a
    # listing's generation. No tier replaces a copy with one of a lower version.
    version: int = 0
    # Epoch seconds: fresh until ``fresh_until``; then answered while it is refreshed in the
    # background until ``serve_until`` (the revalidation window); then only the last good copy,
    # served when MongoDB fails. 0 for both: not stamped by Redis yet (fresh).
    fresh_until: float = 0.0
    serve_until: float = 0.0

    def __post_init__(self) -> None:
        # Never modified later than it was rendered (RFC 9110 §8.8.2.1): an article dated ahead
        # would date its pages ahead, and no If-Modified-Since could ever match them.
        if self.rendered_at and self.last_modified > self.rendered_at:
            object.__setattr__(self, "last_modified", self.rendered_at)

    def is_fresh(self, now: float) -> bool:
        """False once the page is past its freshness."""
        return not self.fresh_until or now < self.fresh_until

    def is_servable(self, now: float) -> bool:
        """True while the page may be answered without asking MongoDB first (fresh or revalidating)."""
        return not self.serve_until or now < self.serve_until

    @cached_property
    def last_modified_header(self) -> str:
        """``Last-Modified``, formatted once per page rather than once per request."""
        return format_timestamp(self.last_modified)

    def to_bytes(self) -> bytes:
        """The record stored at ``page:<id>``."""
        meta = {key: getattr(self, field) for field, key in RECORD_KEYS.items()}
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
                int(meta[_STATUS]),
                html,
                str(meta[_ETAG]),
                float(meta[_LAST_MODIFIED]),
                str(meta[_SURROGATE_KEYS]),
                float(meta[_RENDERED_AT]),
                int(meta[_VERSION]),
                float(meta[_FRESH_UNTIL]),
                float(meta[_SERVE_UNTIL]),
            )
        except (ValueError, KeyError, TypeError) as exc:  # corrupt, or an older page format
            raise ValueError(f"not a rendered page: {exc!r}") from exc
