"""The pages that list articles (the home, the section fronts, the "latest news" box): how each is
rendered from MongoDB's stored listings."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Awaitable, Callable

from renderer import contract
from renderer.backends.mongo_listings import MongoListings
from renderer.render import PageRenderer, render_or_fail
from renderer.rendered_page import RenderedPage
from renderer.resilience import Deadline

Loader = Callable[[Deadline], Awaitable[RenderedPage]]
"""How a page is read and rendered, within a deadline (the read path's step on a Redis miss)."""


@dataclass(frozen=True)
class Listings:
    """The pages that list the newest articles: the home, the section fronts, the "latest news" box."""

    renderer: PageRenderer
    source: MongoListings
    home_size: int
    section_size: int
    box_size: int

    @property
    def depth(self) -> int:
        """How many articles a stored listing keeps: enough for any listing of its section."""
        return max(self.home_size, self.section_size, self.box_size)

    def loader(self, cache_id: str) -> Loader:
        """How listing ``cache_id`` is rendered from the newest articles, labelled with the
        listings' generation they are at least as new as: a copy labelled with an older generation
        never replaces one the publisher stored."""
        section = contract.section_of(cache_id)
        render: Callable[[Any], RenderedPage]
        if cache_id == contract.HOME_CACHE_ID:
            render, size = self.renderer.home, self.home_size
        elif cache_id == contract.LATEST_BOX_CACHE_ID:
            render, size = self.renderer.latest_box, self.box_size
        elif section is not None:
            render, size = partial(self.renderer.section_front, section), self.section_size
        else:
            raise ValueError(f"not a listing: {cache_id!r}")

        async def load(d: Deadline) -> RenderedPage:
            listing = await self.source.listing(d, size, section, depth=self.depth)
            page = render_or_fail(render, listing.articles, version=listing.generation)
            # Last-Modified is when the generation began, which every publish and takedown moves:
            # the newest publication time stays put after a title edit or a takedown (it only
            # stands in before the first generation).
            return replace(page, last_modified=listing.changed_at or page.last_modified)

        return load

    async def bump_generation(self, deadline: Deadline) -> int:
        """A new listings generation (a publish or takedown committed): every listing rendered
        since is labelled newer than any before."""
        return await self.source.bump_generation(deadline)
