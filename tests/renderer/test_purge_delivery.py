"""Purges within the publish's deadline, a breaker per Varnish node, a queue that survives Redis,
and a queue that cleans up after itself (issue: exact publish, points 4-6)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest
from pymongo import AsyncMongoClient

from devstack.probes import metric
from renderer.backends.mongo_purges import PurgeStore
from renderer.breaker import AsyncCircuitBreaker
from renderer.purge import MAX_HEADER_BYTES, Purge
from renderer.resilience import Deadline, Guard, RetryPolicy
from tests.conftest import StackClients
from tests.helpers import get, request, unique_slug, wait_until
from tests.holding_proxy import HoldingProxy
from tests.renderer.test_publish import AUTH, admin_nodes, article, nodes, put, title_on


def queue(s: StackClients) -> Any:
    return s.mongo[s.stack.env["MONGODB_DB"]]["purge_queue"]


def test_key_lists_are_split_to_fit_varnish_header_limit() -> None:
    keys = tuple(f"article-{'x' * 200}-{n}" for n in range(100))
    parts = Purge(hard=keys[:10], soft=keys[10:]).split()
    assert len(parts) > 1
    assert [k for p in parts for k in p.hard] == list(keys[:10])
    assert [k for p in parts for k in p.soft] == list(keys[10:])
    assert all(len(value) <= MAX_HEADER_BYTES for p in parts for value in p.headers().values())
    assert Purge(soft=("home",)).split() == [Purge(soft=("home",))]


def test_a_purge_of_a_hundred_long_keys_reaches_varnish(stack: StackClients) -> None:
    keys = [f"k{n}-{'y' * 240}" for n in range(100)]  # 24 KB of keys: three times the header limit
    resp = request(stack.renderer, "POST", "/api/purge", json.dumps({"keys": keys}).encode(), AUTH)
    assert resp.status == 200, resp.text
    assert set(json.loads(resp.body)["varnish"].values()) == {"purged"}


@pytest.mark.slow
def test_a_dead_node_costs_a_publish_nothing_once_its_breaker_opens(
    make_stack: Callable[..., StackClients],
) -> None:
    # The settings users get: 5 failures open a breaker, 1 s per purge, 5 s per publish; a purge
    # that timed out is not tried again within the publish (it would time out again).
    s = make_stack(varnish_nodes=2, production_defaults=True, PROCESSES="1")
    second = admin_nodes(s)[1]
    s.server("varnish-2").freeze()
    try:
        outcomes = []
        for n in range(6):
            resp = put(s.renderer, unique_slug(f"no-morto-{n}"), article())
            report = json.loads(resp.body)
            assert resp.status == 202 and report["pending"] == [second], resp.text
            outcomes.append(report["steps"]["varnish"][second])
        # The first publishes pay the timeouts that open the breaker; then the node is not tried.
        assert "Connection Timeout" in outcomes[0]
        assert "breaker open: not tried" in outcomes[-1]
        assert all("queued" in outcome for outcome in outcomes)
    finally:
        s.server("varnish-2").thaw()
    # The queue's retries are what probe the node: once back, everything queued is delivered.
    wait_until(lambda: queue(s).count_documents({}) == 0, timeout=30)


def test_purges_end_within_the_publish_deadline(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish_nodes=2, PUBLISH_DEADLINE="2", BREAKER_FAIL_MAX="100")
    second = admin_nodes(s)[1]
    s.server("varnish-2").freeze()
    try:
        resp = put(s.renderer, unique_slug("prazo"), article())
    finally:
        s.server("varnish-2").thaw()
    report = json.loads(resp.body)
    assert resp.status == 202
    # One attempt of 1 s: a purge that timed out is not retried (3 of them would have needed 3 s,
    # past the deadline of 2 s); the node's purge is queued.
    assert report["steps"]["varnish"][second] == "pending (Connection Timeout); queued"


def test_shutdown_waits_for_a_publish_in_flight(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish_nodes=2, BREAKER_FAIL_MAX="100")  # the publish will take ~3 s
    renderer = s.server("renderer")
    s.server("varnish-2").freeze()
    try:
        with ThreadPoolExecutor(1) as pool:
            publishing = pool.submit(put, s.renderer, unique_slug("desligando"), article())
            time.sleep(0.5)
            os.kill(renderer.pid, signal.SIGTERM)
            resp = publishing.result(timeout=30)
    finally:
        s.server("varnish-2").thaw()
    assert resp.status == 202, resp.text  # finished and reported, not cut off
    assert renderer.proc.wait(timeout=30) == 0


def test_queued_purges_survive_redis_eviction_and_restart(
    make_stack: Callable[..., StackClients], proxy: HoldingProxy
) -> None:
    # Pages live an hour in Varnish here: only a purge can change what node 2 shows. The stack's
    # own renderer never runs a queue pass; the editors' renderer reaches node 2 through a proxy
    # that can partition it off.
    hour = {"SHARED_MAX_AGE": "3600", "PURGE_RETRY_INTERVAL": "3600"}
    s = make_stack(varnish_nodes=2, **hour)
    first, second = nodes(s)
    admin_first, admin_second = admin_nodes(s)
    proxy.connect_to("127.0.0.1", urlsplit(admin_second).port or 0)
    through_proxy = f"http://127.0.0.1:{proxy.port}"
    editors = s.editors_renderer(
        **{**hour, "VARNISH_URLS": f"{admin_first},{through_proxy}", "PURGE_RETRY_INTERVAL": "0.5"}
    ).start()
    try:
        api = f"http://127.0.0.1:{editors.port}"
        slug = unique_slug("fila-duravel")
        assert put(api, slug, article("Versão 1")).status == 201
        for node in (first, second):
            assert title_on(node, slug) == "Versão 1"

        proxy.cut()
        resp = put(api, slug, article("Versão 2"))
        assert resp.status == 202 and json.loads(resp.body)["pending"] == [through_proxy], resp.text
        assert queue(s).count_documents({"node": through_proxy}) >= 1

        # Redis past maxmemory (allkeys-lru evicts), then restarted empty: the queue is elsewhere.
        s.redis.config_set("maxmemory", "4mb")
        for n in range(200):
            s.redis.set(f"enchimento:{n}", b"x" * 50_000)
        assert int(s.redis.info("stats")["evicted_keys"]) > 0
        s.server("redis").kill()
        s.server("redis").start()
        assert title_on(second, slug) == "Versão 1"  # node 2 still has the old page

        proxy.mend()
        wait_until(lambda: title_on(second, slug) == "Versão 2", timeout=30)
        wait_until(lambda: queue(s).count_documents({}) == 0, timeout=15)
        wait_until(lambda: title_on(first, slug) == "Versão 2", timeout=5)  # soft: one stale answer first
    finally:
        editors.stop()


def test_the_queue_drops_entries_it_can_never_deliver_and_counts_them(
    make_stack: Callable[..., StackClients],
) -> None:
    s = make_stack(varnish_nodes=1, PURGE_RETRY_INTERVAL="0.2")
    now = time.time()
    stale = {"hard": [], "soft": ["home"], "attempts": 0, "lease_until": 0.0, "lease": None}
    queue(s).insert_many(
        [
            {"_id": "removido", "node": "http://127.0.0.1:1", "queued_at": now, **stale},
            {"_id": "antigo", "node": admin_nodes(s)[0], "queued_at": now - 2 * 86400, **stale},
        ]
    )
    wait_until(lambda: queue(s).count_documents({}) == 0, timeout=15)

    def dropped() -> dict[str, float]:
        return {
            reason: metric(s.renderer, "pagecache_purges_dropped_total", reason=reason)
            for reason in ("node-not-configured", "too-old")
        }

    # Counted as the delete's reply arrives, a moment after the queue is seen empty.
    wait_until(lambda: dropped() == {"node-not-configured": 1, "too-old": 1}, timeout=5)
    assert get(s.renderer, "/healthcheck").status == 200


def test_a_purge_queued_while_an_equal_entry_is_being_delivered_is_not_lost(stack: StackClients) -> None:
    """Another process leased an entry and sent its PURGE; then a new publish missed the same node
    with the same keys. The new purge must outlive the first delivery's ``done``: the objects it
    must remove were cached after the first PURGE went out."""

    async def scenario() -> tuple[bool, bool]:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.stack.env["MONGODB_URL"])
        guard = Guard(
            AsyncCircuitBreaker("queue-test", fail_max=5, reset_timeout=1), 2.0, RetryPolicy(1, 0, 0), lambda e: False
        )
        store = PurgeStore(client, stack.stack.env["MONGODB_DB"], guard)
        node = f"http://127.0.0.1:9/{unique_slug('no')}"
        try:
            deadline = Deadline.after(10)
            await store.add(deadline, [(node, ("article-x",), ())])
            [leased] = [e for e in await store.claim(deadline, 100, 30) if e["node"] == node]
            await store.add(deadline, [(node, ("article-x",), ())])  # the new purge, during delivery
            await store.done(deadline, leased)  # the first delivery succeeded
            left = await store.collection.find_one({"node": node})
            due_again = left is not None and left["lease_until"] <= time.time()
            await store.collection.delete_many({"node": node})
            return left is not None, due_again
        finally:
            await client.close()

    still_queued, due_again = asyncio.run(scenario())
    assert still_queued, "the purge queued during the delivery was deleted with it"
    assert due_again


def test_a_purge_that_could_not_be_queued_is_a_failed_step_not_pending(
    make_stack: Callable[..., StackClients],
) -> None:
    # No Varnish (every purge misses) and a queue that refuses this node's entries: a unique
    # index on ``node`` that an entry already holds makes every new one a duplicate-key error.
    s = make_stack(varnish=False)
    node = s.stack.env["VARNISH_URLS"]
    queue(s).create_index("node", unique=True, name="test_one_entry_per_node")
    queue(s).insert_one(
        {
            "_id": "blocker",
            "node": node,
            "hard": [],
            "soft": ["nothing"],
            "queued_at": time.time(),
            "wanted": 1,
            "attempts": 0,
            "lease_until": time.time() + 3600,
            "lease": "test",
        }
    )
    slug = unique_slug("fila-cheia")
    resp = put(s.renderer, slug, article("Sem fila"))
    report = json.loads(resp.body)
    assert resp.status == 503 and report["committed"] is True, resp.text
    assert report["steps"]["purge-queue"].startswith("failed"), report
    assert "not queued" in report["steps"]["varnish"][node]
    purge = request(s.renderer, "POST", "/api/purge", json.dumps({"slug": slug}).encode(), AUTH)
    assert purge.status == 503 and "could not be queued" in json.loads(purge.body)["error"], purge.text


def test_an_article_saved_every_few_hundred_ms_still_gets_its_second_purge(
    make_stack: Callable[..., StackClients],
) -> None:
    # A live blog autosaves more often than the second purge's quiet spell (a request deadline,
    # here 1 s): its debounce must not postpone it for as long as the saving goes on.
    s = make_stack(REQUEST_DEADLINE="1")
    slug = unique_slug("ao-vivo")

    def purges() -> float:
        return metric(s.renderer, "pagecache_purges_total")

    before, saves, started = purges(), 0, time.monotonic()
    while time.monotonic() - started < 7:  # past the bound, five quiet spells
        assert put(s.renderer, slug, article(f"Ao vivo, atualização {saves}")).status in (200, 201)
        saves += 1
        time.sleep(0.3)
    # One purge per save, plus at least one second purge made while the saves went on.
    assert purges() - before >= saves + 1, (saves, purges() - before)
