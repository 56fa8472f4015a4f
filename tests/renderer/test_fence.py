"""One fence rule (``rendered_page.may_replace``): every copy keeps it, its server-side twins too.

A copy may replace another unless it is older; an equal version replaces (the same content,
fresher). Before, the rule was written four times and they disagreed on equal versions: the stored
listings kept the old one (``generation $lt``) where Redis, the in-process copies and the box let
the new one in. Here each coding is asked the same question and must answer as the rule does.
"""

from __future__ import annotations

import json

import pytest

from renderer.backends import mongo_articles, mongo_listings
from renderer.backends.redis_pages import _SET_IF_NOT_OLDER
from renderer.last_good import LastGood
from renderer.rendered_page import RenderedPage, may_replace
from tests.conftest import StackClients
from tests.helpers import section_of_its_own, unique_slug

CASES = [(None, 1), (2, 1), (2, 2), (2, 3)]  # (held, offered)


def page(version: int, html: bytes = b"<p>x</p>") -> RenderedPage:
    return RenderedPage(200, html, f'"{version}"', 0.0, "k", version=version)


def test_the_rule() -> None:
    assert [may_replace(offered, held) for held, offered in CASES] == [True, False, True, True]


@pytest.mark.parametrize(("held", "offered"), CASES)
def test_the_in_process_copies_keep_the_rule(held: int | None, offered: int) -> None:
    copies = LastGood(10)
    if held is not None:
        copies.put("p", page(held, b"held"))
    copies.put("p", page(offered, b"offered"))
    kept = copies.get("p", now=0.0)
    assert kept is not None and (kept.html == b"offered") == may_replace(offered, held)


@pytest.mark.parametrize(("held", "offered"), CASES)
def test_the_redis_script_keeps_the_rule(stack: StackClients, held: int | None, offered: int) -> None:
    key = f"page:{unique_slug('cerca')}"
    if held is not None:
        stack.redis.set(key, page(held, b"held").to_bytes())
    stored = stack.redis.eval(_SET_IF_NOT_OLDER, 1, key, offered, page(offered, b"offered").to_bytes(), 60)
    assert bool(stored) == may_replace(offered, held)


@pytest.mark.parametrize(("held", "offered"), CASES)
async def test_the_stored_listings_keep_the_rule(
    stack: StackClients, primary_mongo: mongo_articles.MongoArticles, held: int | None, offered: int
) -> None:
    listings = mongo_listings.MongoListings(
        primary_mongo.client, stack.stack.env["MONGODB_DB"], primary_mongo.guard, primary=True
    )
    section = section_of_its_own()
    if held is not None:
        await listings._keep_listing(mongo_listings.listing_id(section), held, 0.0, 1, [{"slug": "held"}])
    await listings._keep_listing(mongo_listings.listing_id(section), offered, 0.0, 1, [{"slug": "offered"}])
    stored = await listings.listings.find_one({"_id": mongo_listings.listing_id(section)})
    assert stored is not None
    assert (stored["articles"] == [{"slug": "offered"}]) == may_replace(offered, held), json.dumps(stored, default=str)
