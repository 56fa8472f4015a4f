"""A retried save under a concurrent writer (issue 32, point 6), against the real stand-in.

Save A commits, its reply is lost, save B commits, and the guard retries A with A's write id:
the retry must find that A committed (not apply it again on top of B, not call it a conflict),
say which version A made, and know the section A moved the article from, so that the old
front is purged on this path too. Calling ``_save`` again with the same write id is exactly what
the guard's retry does; the reply loss itself is shown over the wire in test_publish_exactness.
"""

from __future__ import annotations

from typing import Any

import pytest

from renderer.backends import mongo_articles
from tests.conftest import StackClients
from tests.helpers import unique_slug


def fields(title: str, section: str) -> dict[str, Any]:
    return {"title": title, "subtitle": "Linha fina", "section": section, "body_html": "<p>x</p>", "authors": ["R"]}


@pytest.mark.parametrize("if_match", [False, True])
async def test_a_retry_finds_its_own_write_under_a_later_one(
    stack: StackClients, primary_mongo: mongo_articles.MongoArticles, if_match: bool
) -> None:
    slug = unique_slug("retentativa")
    await primary_mongo._save(slug, fields("Versão 1", "rio"), None, "w-1")
    expected = 1 if if_match else None
    a = await primary_mongo._save(slug, fields("Versão A", "economia"), expected, "w-a")  # its reply is lost
    assert a.doc["version"] == 2
    await primary_mongo._save(slug, fields("Versão B", "economia"), None, "w-b")
    retried = await primary_mongo._save(slug, fields("Versão A", "economia"), expected, "w-a")
    stored = stack.articles.find_one({"_id": slug})
    assert stored is not None and stored["version"] == 3 and stored["title"] == "Versão B"  # not applied again
    assert retried.version == 2  # what A committed
    assert retried.doc["version"] == 3 and retried.doc["title"] == "Versão B"  # what is current
    assert retried.previous is not None and retried.previous["section"] == "rio"  # the front A left


async def test_a_retried_takedown_is_not_applied_again_over_a_later_save(
    stack: StackClients, primary_mongo: mongo_articles.MongoArticles
) -> None:
    slug = unique_slug("retentativa")
    await primary_mongo._save(slug, fields("Versão 1", "rio"), None, "w-1")
    down = await primary_mongo._unpublish(slug, None, "w-down")  # its reply is lost
    assert down is not None and down["version"] == 2
    await primary_mongo._save(slug, fields("De volta", "rio"), None, "w-back")  # the desk republishes
    retried = await primary_mongo._unpublish(slug, None, "w-down")
    stored = stack.articles.find_one({"_id": slug})
    assert stored is not None and stored["version"] == 3 and stored["published"]  # not taken down again
    assert retried is not None and retried["version"] == 2 and not retried["published"]
