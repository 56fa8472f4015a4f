"""The local MongoDB stand-in keeps MongoDB's promises where our code depends on them: a lookup
by ``_id`` is answered from an index, not by scanning every article (FerretDB v1.24.2's SQLite
backend would scan; ``devstack.servers.index_ferretdb_ids`` mends that), and a conditional write
is atomic per document (FerretDB's is not; the stand-in patch mends that)."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from devstack import servers
from tests.conftest import StackClients
from tests.helpers import unique_slug


def test_lookups_by_id_use_an_index_in_every_collection_the_renderer_reads(stack: StackClients) -> None:
    env = stack.stack.env
    database = stack.mongo[env["MONGODB_DB"]]
    # SQLite scans an empty table whatever its indexes: give it a row to plan for.
    row = stack.articles.insert_one({"_id": unique_slug("indice"), "published": False}).inserted_id
    try:
        explained = database.command({"explain": {"find": "articles", "filter": {"_id": "any-slug"}, "limit": 1}})
    finally:
        stack.articles.delete_one({"_id": row})
    plan = " ".join(explained["queryPlanner"]["Plan"])
    assert explained["filterPushdown"] is True
    assert "USING INDEX" in plan and "SCAN" not in plan, plan
    # Each collection the renderer looks up by _id has the index on FerretDB's filter expression.
    port = env["MONGODB_URL"].rstrip("/").rsplit(":", 1)[1]
    sqlite_file = stack.stack.run_dir / f"ferretdb-{port}" / "sqlite" / f"{env['MONGODB_DB']}.sqlite"
    with sqlite3.connect(f"file:{sqlite_file}?mode=ro", uri=True) as db:
        tables = dict(db.execute("SELECT name, table_name FROM _ferretdb_collections").fetchall())
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    for collection in ("articles", "listings"):
        assert f"{tables[collection]}__id_pushdown" in indexes
    # FerretDB's own index list is untouched: the renderer's indexes, nothing else.
    assert {index["name"] for index in stack.articles.list_indexes()} == {
        "_id_",
        "slug_1",
        "published_at_-1",
        "section_1_published_at_-1",
    }


def _winners_of_one_version(collection: Any, writers: int) -> list[int]:
    """``writers`` threads each try to move one new document from version 1 to 2 with a
    compare-and-swap (half ``replace_one``, half ``find_one_and_update``): who matched."""
    slug = unique_slug("cas")
    collection.insert_one({"_id": slug, "version": 1})
    start = threading.Barrier(writers)

    def swap(writer: int) -> bool:
        start.wait()
        if writer % 2:
            return (
                collection.replace_one({"_id": slug, "version": 1}, {"version": 2, "writer": writer}).matched_count == 1
            )
        found = collection.find_one_and_update({"_id": slug, "version": 1}, {"$set": {"version": 2, "writer": writer}})
        return found is not None

    with ThreadPoolExecutor(writers) as pool:
        won = list(pool.map(swap, range(writers)))
    return [writer for writer, ok in enumerate(won) if ok]


def test_concurrent_compare_and_swaps_of_one_version_have_exactly_one_winner(stack: StackClients) -> None:
    # MongoDB's promise, kept by the stand-in's patch (devstack/ferretdb/atomic_writes.go).
    for _ in range(20):
        assert len(_winners_of_one_version(stack.articles.database["cas"], writers=8)) == 1


def test_plain_ferretdb_breaks_that_promise(tmp_path: Path) -> None:
    """Why the patch exists: FerretDB as released lets several writers win one version (its
    conditional update is a query, then an update by _id, outside one transaction). If a FerretDB
    upgrade keeps the promise by itself, this fails and the patch can go."""
    port = servers.free_port()
    plain = servers.ferretdb(tmp_path, port, binary=servers.FERRETDB_PLAIN_BIN).start()
    try:
        with MongoClient(f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=5000, maxPoolSize=16) as client:
            collection = client["pagecache"]["cas"]
            most = 0
            for _ in range(30):
                most = max(most, len(_winners_of_one_version(collection, writers=8)))
                if most > 1:
                    break
            assert most > 1
    finally:
        plain.stop()
