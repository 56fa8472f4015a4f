"""The local MongoDB stand-in costs what MongoDB costs where the read path depends on it: a lookup
by ``_id`` is answered from an index, not by scanning every article (FerretDB v1.24.2's SQLite
backend would scan; ``devstack.servers.index_ferretdb_ids`` mends that)."""

from __future__ import annotations

import sqlite3

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
    for collection in ("articles", "purge_queue"):
        assert f"{tables[collection]}__id_pushdown" in indexes
    # FerretDB's own index list is untouched: the renderer's indexes, nothing else.
    assert {index["name"] for index in stack.articles.list_indexes()} == {
        "_id_",
        "slug_1",
        "published_at_-1",
        "section_1_published_at_-1",
    }
