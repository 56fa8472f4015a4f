"""Sample articles for a stack that starts empty."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database

from renderer import contract
from renderer.sanitise import SANITISED_BY, SANITISED_BY_FIELD, sanitise_html

SAMPLES = Path(__file__).with_name("sample_articles.json")


def sample_articles() -> list[dict[str, Any]]:
    """The shipped sample articles, as the CMS would send them (plus their slug)."""
    return list(json.loads(SAMPLES.read_text()))


def article_document(payload: dict[str, Any], version: int = 1) -> dict[str, Any]:
    """A stored article document from a CMS payload, as any tool writing straight into MongoDB
    would store it (its body as given: the renderer cleans it as it renders)."""
    published = datetime.fromisoformat(str(payload["published_at"]).replace("Z", "+00:00"))
    return {
        **payload,
        "_id": payload["slug"],  # the slug is the primary key
        "published_at": published,
        "updated_at": published,
        "version": version,
        "published": True,
    }


def published_document(payload: dict[str, Any]) -> dict[str, Any]:
    """``article_document`` as a publish stores it: its body cleaned once and marked, so that a
    render uses it as it is (the samples and the bench's articles, which stand for published ones)."""
    doc = article_document(payload)
    doc.update(body_html=sanitise_html(payload["body_html"]), **{SANITISED_BY_FIELD: SANITISED_BY})
    return doc


def load_samples(mongodb_url: str, db_name: str, redis_url: str | None = None) -> int:
    """Insert the sample articles that are not in MongoDB yet (an editor's change to one is never
    overwritten by the next start); returns how many were inserted.

    Written behind the editors' API's back, so no publish renders the listings: their generation
    is moved on (the stored listings are outdated), and with ``redis_url`` (a plain ``redis://``
    one) the listings' records are dropped, so that the renderers render them again on the next
    read (the "latest news" box within ``LATEST_BOX_REFRESH``).
    """
    inserted = 0
    with MongoClient(mongodb_url, serverSelectionTimeoutMS=5000) as client:
        articles = client[db_name]["articles"]
        articles.create_index("slug", unique=True)
        for payload in sample_articles():
            result = articles.update_one(
                {"_id": payload["slug"]}, {"$setOnInsert": published_document(payload)}, upsert=True
            )
            inserted += result.upserted_id is not None
        if inserted:
            outdate_listings(client[db_name])
    if inserted and redis_url and redis_url.startswith("redis://"):
        forget_listings(redis_url)
    return inserted


def outdate_listings(database: Database[Any]) -> None:
    """Move the listings' generation on, as a publish does: for articles written straight into
    MongoDB, so that no stored listing still counts as current without them."""
    database[contract.LISTINGS_COLLECTION].update_one(
        {"_id": "generation"}, {"$inc": {"value": 1}, "$set": {"changed_at": time.time()}}, upsert=True
    )


def forget_listings(redis_url: str) -> None:
    """Drop every listing's record (home, fronts, the box) from Redis."""
    import redis

    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(f"{contract.PAGE_KEY_PREFIX}{contract.LISTING_PREFIX}*"))
        if keys:
            client.delete(*keys)


if __name__ == "__main__":
    import os

    loaded = load_samples(
        os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/"), os.environ.get("MONGODB_DB", "pagecache")
    )
    print(f"loaded {loaded} sample articles")
