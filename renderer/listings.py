"""The pages that list articles (the home, the section fronts, the "latest news" box, the feeds
and the sitemaps): how each is rendered from MongoDB's stored listings."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Awaitable, Callable

from renderer import contract
from renderer.backends.mongo_listings import Listing, MongoListings
from renderer.feeds import NEWS_LIMIT, FeedRenderer
from renderer.render import PageRenderer, render_or_fail
from renderer.rendered_page import RenderedPage
from renderer.resilience import Deadline

Loader = Callable[[Deadline], Awaitable[RenderedPage]]
"""How a page is read and rendered, within a deadline (the read path's step on a Redis miss)."""

Source = tuple[str | None, int, bool]
"""Which stored listing a listing is rendered from: (section or None, depth, kept apart)."""


@dataclass(frozen=True)
class _Plan:
    """How one listing is made: how many articles of which stored listing, and its render."""

    source: Source
    size: int
    render: Callable[[Any], RenderedPage]

    def page(self, listing: Listing) -> RenderedPage:
        page = render_or_fail(self.render, listing.articles[: self.size], version=listing.generation)
        # Last-Modified is when the generation began, which every publish and takedown moves:
        # the newest publication time stays put after a title edit or a takedown (it only
        # stands in before the first generation).
        return replace(page, last_modified=listing.changed_at or page.last_modified)


@dataclass(frozen=True)
class Listings:
    """The pages that list the newest articles: the home, the section fronts, the "latest news"
    box, and the feeds and sitemaps that list the same articles to other readers."""

    renderer: PageRenderer
    feeds: FeedRenderer
    source: MongoListings
    home_size: int
    section_size: int
    box_size: int

    @property
    def depth(self) -> int:
        """How many articles a stored listing keeps: enough for any listing of its section."""
        return max(self.home_size, self.section_size, self.box_size + 1)

    def _plan(self, cache_id: str) -> _Plan:
        feed_section = contract.feed_section_of(cache_id)
        section = contract.section_of(cache_id) or feed_section
        shared: Source = (section, self.depth, False)
        if cache_id == contract.HOME_CACHE_ID:
            return _Plan(shared, self.home_size, self.renderer.home)
        if cache_id == contract.LATEST_BOX_CACHE_ID:
            # One more than it shows: a page drops its own item (latest_box.shown_box).
            return _Plan(shared, self.box_size + 1, self.renderer.latest_box)
        if cache_id == contract.HOME_FEED_CACHE_ID or feed_section:
            # As deep as the stored listing the fronts share: no query of its own.
            return _Plan(shared, self.depth, partial(self.feeds.rss, section))
        if cache_id == contract.NEWS_SITEMAP_CACHE_ID:
            return _Plan((None, NEWS_LIMIT, True), NEWS_LIMIT, self.feeds.news_sitemap)
        if cache_id == contract.SITEMAP_CACHE_ID:
            return _Plan((None, NEWS_LIMIT, True), NEWS_LIMIT, self.feeds.sitemap)
        if section is not None:
            return _Plan(shared, self.section_size, partial(self.renderer.section_front, section))
        raise ValueError(f"not a listing: {cache_id!r}")

    async def _read(self, deadline: Deadline, source: Source, size: int) -> Listing:
        section, depth, apart = source
        return await self.source.listing(deadline, size, section, depth=depth, apart=apart)

    def loader(self, cache_id: str) -> Loader:
        """How listing ``cache_id`` is rendered from the newest articles, labelled with the
        listings' generation they are at least as new as: a copy labelled with an older generation
        never replaces one the publisher stored."""
        plan = self._plan(cache_id)

        async def load(d: Deadline) -> RenderedPage:
            return plan.page(await self._read(d, plan.source, plan.size))

        return load

    def loaders(self, cache_ids: list[str]) -> dict[Source, Callable[[Deadline], Awaitable[dict[str, RenderedPage]]]]:
        """How ``cache_ids`` are rendered, grouped by the stored listing each is made from: one
        read per group (a publish renders the home, its feed and the box from one, a section's
        front and feed from another), the group's pages by id."""
        plans: dict[Source, dict[str, _Plan]] = {}
        for cache_id in cache_ids:
            plan = self._plan(cache_id)
            plans.setdefault(plan.source, {})[cache_id] = plan

        def group(
            source: Source, members: dict[str, _Plan]
        ) -> Callable[[Deadline], Awaitable[dict[str, RenderedPage]]]:
            async def load(d: Deadline) -> dict[str, RenderedPage]:
                listing = await self._read(d, source, max(plan.size for plan in members.values()))
                return {cache_id: plan.page(listing) for cache_id, plan in members.items()}

            return load

        return {source: group(source, members) for source, members in plans.items()}

    async def bump_generation(self, deadline: Deadline) -> int:
        """A new listings generation (a publish or takedown committed): every listing rendered
        since is labelled newer than any before."""
        return await self.source.bump_generation(deadline)
