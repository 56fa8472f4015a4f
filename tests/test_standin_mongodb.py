"""The local MongoDB stand-in costs what MongoDB costs where the read path depends on it: a lookup
by ``_id`` is answered from an index, not by scanning every article (FerretDB v1.24.2's SQLite
backend would scan; ``devstack.servers.index_ferretdb_ids`` mends that)."""

from __future__ import annotations

from tests.conftest import StackClients


def test_lookups_by_id_use_an_index_in_every_collection_the_renderer_reads(stack: StackClients) -> None:
    database = stack.mongo[stack.stack.env["MONGODB_DB"]]
    for collection in ("articles", "purge_queue"):
        explained = database.command({"explain": {"find": collection, "filter": {"_id": "any-slug"}, "limit": 1}})
        plan = " ".join(explained["queryPlanner"]["Plan"])
        assert explained["filterPushdown"] is True
        assert "USING INDEX" in plan and "SCAN" not in plan, plan
    # FerretDB's own index list is untouched: the renderer's indexes, nothing else.
    assert {index["name"] for index in stack.articles.list_indexes()} >= {"_id_", "slug_1"}
