"""This process's own copy of the last good pages: what a reader gets while Redis is down."""

from __future__ import annotations

import time
from collections import OrderedDict

from renderer import contract
from renderer.rendered_page import RenderedPage, may_replace


class LastGood:
    """A bounded in-process copy of the last good pages, for when Redis is down too. No copy older
    than ``max_age`` (a Redis record's whole life) is given out: with Redis and MongoDB both down,
    nothing could tell this process of a takedown, so its copies must not outlive Redis's."""

    def __init__(self, size: int, max_age: float = float("inf")) -> None:
        self._size = size
        self._max_age = max_age
        self._pages: OrderedDict[str, RenderedPage] = OrderedDict()

    def put(self, cache_id: str, page: RenderedPage) -> None:
        """Remember ``page`` unless an older version is offered, dropping the least recently
        stored beyond the bound. A 404 is not kept, but it removes the older 200 it replaces (a
        takedown, a front left without articles)."""
        if self._size <= 0:
            return
        held = self._pages.get(cache_id)
        if not may_replace(page.version, held.version if held is not None else None):
            return
        if page.status != 200:
            self._pages.pop(cache_id, None)
            return
        self._pages[cache_id] = page
        self._pages.move_to_end(cache_id)
        if len(self._pages) > self._size:
            self._pages.popitem(last=False)

    def get(self, cache_id: str, now: float | None = None) -> RenderedPage | None:
        """The remembered page, or None (also once it is older than ``max_age``)."""
        page = self._pages.get(cache_id)
        if page is not None and (time.time() if now is None else now) - page.rendered_at > self._max_age:
            del self._pages[cache_id]
            return None
        return page

    def clear(self) -> None:
        """Forget every page (this process may have missed invalidations)."""
        self._pages.clear()

    def drop(self, cache_id: str) -> None:
        """Forget a page (it was republished or unpublished)."""
        self._pages.pop(cache_id, None)

    def drop_listings(self) -> None:
        """Forget every page that lists articles (the home, section fronts, the box)."""
        for cache_id in [cache_id for cache_id in self._pages if contract.is_listing(cache_id)]:
            del self._pages[cache_id]

    def __len__(self) -> int:
        return len(self._pages)

    def holds_pages(self) -> bool:
        """True when a reader could be served from here: a copy of anything but the "latest
        news" box, which every process reads for itself and no reader asks for alone."""
        return any(cache_id != contract.LATEST_BOX_CACHE_ID for cache_id in self._pages)
