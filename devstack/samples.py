"""Sample articles for a stack that starts empty."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pymongo import MongoClient

SAMPLES = Path(__file__).with_name("sample_articles.json")


def sample_articles() -> list[dict[str, Any]]:
    """The shipped sample articles, as the CMS would send them (plus their slug)."""
    return list(json.loads(SAMPLES.read_text()))


def article_document(payload: dict[str, Any], version: int = 1) -> dict[str, Any]:
    """A stored article document from a CMS payload."""
    published = datetime.fromisoformat(str(payload["published_at"]).replace("Z", "+00:00"))
    return {
        **payload,
        "_id": payload["slug"],  # the slug is the primary key
        "published_at": published,
        "updated_at": published,
        "version": version,
        "published": True,
    }


def load_samples(mongodb_url: str, db_name: str) -> int:
    """Insert the sample articles that are not in MongoDB yet (an editor's change to one is never
    overwritten by the next start); returns how many were inserted."""
    inserted = 0
    with MongoClient(mongodb_url, serverSelectionTimeoutMS=5000) as client:
        articles = client[db_name]["articles"]
        articles.create_index("slug", unique=True)
        for payload in sample_articles():
            result = articles.update_one(
                {"_id": payload["slug"]}, {"$setOnInsert": article_document(payload)}, upsert=True
            )
            inserted += result.upserted_id is not None
    return inserted


if __name__ == "__main__":
    import os

    loaded = load_samples(
        os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/"), os.environ.get("MONGODB_DB", "pagecache")
    )
    print(f"loaded {loaded} sample articles")
