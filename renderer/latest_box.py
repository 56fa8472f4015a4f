"""The "latest news" box, put into every article page by the renderer as it answers.

Each process keeps one copy of the box, read through the tiers like any page: again when a publish
is announced (pub/sub) and every ``refresh_seconds`` otherwise (a missed message costs at most
that). Answering waits for the box only when Varnish asks for a newer one than this copy (after
a purge of the box's key, ``contract.HEADER_BOX_MIN``); without a copy the page goes out without
it, never as an error. Every page that shows the box carries its key (``latest``) and names the
box's version (``contract.HEADER_BOX``): a publish that changes the box purges those pages at every
tier, hard when an article left it (docs/architecture.rst, "The latest-news box").
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Awaitable, Callable

from renderer import contract
from renderer.render import LATEST_BOX_SLOT
from renderer.rendered_page import RenderedPage, may_replace
from renderer.resilience import Deadline
from renderer.tiers import Served

log = logging.getLogger("pagecache.box")


class LatestBox:
    """This process's copy of the box (``current``), kept fresh in the background."""

    def __init__(
        self, fetch: Callable[[Deadline], Awaitable[Served]], refresh_seconds: float, deadline_seconds: float
    ) -> None:
        self._fetch = fetch
        self.refresh_seconds = refresh_seconds
        self.deadline_seconds = deadline_seconds
        self.current: RenderedPage | None = None
        self._wake = asyncio.Event()

    async def refresh(self, caller: str = "box") -> None:
        """Read the box now (for ``caller``: its own refresh, else a reader that needs a newer
        box); keep the copy there is when that fails or answers no box."""
        try:
            served = await self._fetch(Deadline.after(self.deadline_seconds, caller))
        except Exception as exc:
            log.info("latest-news box not refreshed: %r", exc)
            return
        held = self.current.version if self.current is not None else None
        if served.page.status == 200 and may_replace(served.page.version, held):
            self.current = served.page

    async def at_least(self, version: int, deadline: Deadline) -> RenderedPage | None:
        """The copy, read again first (within ``deadline``) when it is older than ``version``."""
        if version and (self.current is None or self.current.version < version) and deadline.remaining() > 0:
            try:
                async with asyncio.timeout(deadline.remaining()):
                    await self.refresh(deadline.caller)
            except TimeoutError:
                pass
        return self.current

    def changed(self) -> None:
        """A publish was announced: read the box again soon."""
        self._wake.set()

    async def run(self) -> None:
        """Refresh when told to, or every ``refresh_seconds``, until cancelled."""
        while True:
            await self.refresh()
            try:
                await asyncio.wait_for(self._wake.wait(), self.refresh_seconds)
            except TimeoutError:
                pass
            self._wake.clear()


def shown_box(box: bytes, own: bytes, shows: int) -> bytes:
    """The box as one page shows it: the box holds one article more than it ``shows``; the page
    at URL ``own`` drops its own item, any other page the last one. Cut from the one copy each
    process keeps: no page-by-page variant of the box is rendered or cached anywhere."""
    start = box.find(b'<li><a href="' + own + b'"') if own else -1
    if start < 0:
        if box.count(b"<li>") <= shows:
            return box  # fewer articles than the box shows: all of them
        start = box.rfind(b"<li>")
    end = box.find(b"</li>", start)
    return box if end < 0 else box[:start] + box[end + len(b"</li>") :]


def with_box(page: RenderedPage, box: RenderedPage | None, own: bytes = b"", shows: int = 0) -> RenderedPage:
    """``page`` (at URL ``own``) with ``box`` in its slot, ``shows`` articles of it, never the
    page's own (nothing there without a box), the box's key among its own (a page without a box
    yet gets it when the box comes), and validators that change when either does: the ETag names
    the box's generation, ``Last-Modified`` is the later of the page's and the box's last change
    (not their renders: a re-render of either changes neither, so old validators still match)."""
    head, slot, tail = page.html.partition(LATEST_BOX_SLOT)
    if not slot:
        return page
    keys = f"{page.surrogate_keys} {contract.LATEST_SURROGATE_KEY}".strip()
    if box is None:
        return replace(page, html=head + tail, surrogate_keys=keys)
    return replace(
        page,
        html=head + shown_box(box.html, own, shows) + tail,
        surrogate_keys=keys,
        etag=f'{page.etag[:-1]}.{box.version}"',
        last_modified=max(page.last_modified, box.last_modified),
    )
