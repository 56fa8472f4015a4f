"""The read, stale and publish paths against a real three-master Redis Cluster."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from redis.cluster import RedisCluster

from devstack import servers
from devstack.stack import Ports, Stack, start_stack
from renderer.rate_limit import TokenBucket
from renderer.rendered_page import RenderedPage
from tests.conftest import EDITOR_TOKEN, FAULT_SETTINGS
from tests.helpers import get, mongo_reads, unique_slug, wait_until
from tests.renderer.test_publish import article, put
from tests.renderer.test_rate_limit import three_takes_then_a_hold_off


@pytest.fixture
def cluster_stack(tmp_path: Path) -> Iterator[tuple[Stack, RedisCluster]]:
    ports = [servers.free_cluster_port() for _ in range(3)]
    nodes = servers.redis_cluster(tmp_path / "cluster", ports)
    url = f"redis+cluster://127.0.0.1:{ports[0]}/0"
    stack = start_stack(
        tmp_path / "stack",
        Ports.free(),
        environ={"REDIS_URL": url, "EDITOR_TOKENS": EDITOR_TOKEN},
        renderer_env={**FAULT_SETTINGS, "PAGE_TTL": "2", "REVALIDATE_WINDOW": "0"},
    )
    client = RedisCluster(host="127.0.0.1", port=ports[0])
    try:
        yield stack, client
    finally:
        client.close()
        stack.stop()
        for node in nodes:
            node.stop()


def slug_on_another_node(client: RedisCluster, than: str) -> str:
    """A slug whose record lives on another cluster node than ``than``'s."""
    node_of = client.nodes_manager.get_node_from_slot
    while True:
        slug = unique_slug("cluster")
        if node_of(client.keyslot(f"page:{slug}")) != node_of(client.keyslot(f"page:{than}")):
            return slug


def degraded(health: dict[str, Any]) -> dict[str, Any] | None:
    return health if health["status"] == "degraded" else None


def test_read_stale_and_publish_paths_work_on_a_redis_cluster(cluster_stack: tuple[Stack, RedisCluster]) -> None:
    stack, client = cluster_stack
    slug = unique_slug("cluster")
    created = put(stack.renderer_url, slug, article("Publicada no cluster"))
    assert created.status == 201, created.text
    assert json.loads(created.body)["steps"]["redis"] == "ok"
    assert client.exists(f"page:{slug}") == 1

    resp = get(stack.renderer_url, f"/noticia/{slug}.ghtml")
    assert resp.status == 200 and resp.headers["X-Tier"] == "redis"
    assert "Publicada no cluster" in get(stack.site_url, f"/noticia/{slug}.ghtml").text

    # A cold read: the processes' lock and the fenced write-back, on another node.
    other = slug_on_another_node(client, slug)
    put(stack.renderer_url, other, article("Outra"))
    client.delete(f"page:{other}")
    reads = mongo_reads(stack.renderer_url)
    assert get(stack.renderer_url, f"/noticia/{other}.ghtml").headers["X-Tier"] == "mongo"
    assert get(stack.renderer_url, f"/noticia/{other}.ghtml").headers["X-Tier"] == "redis"
    assert mongo_reads(stack.renderer_url) == reads + 1

    # Stale path: the record passes its freshness (PAGE_TTL 2 s), MongoDB dies, it still serves.
    wait_until(lambda: not RenderedPage.from_bytes(client.get(f"page:{slug}")).is_servable(time.time()), timeout=5)
    stack.started["ferretdb"].kill()
    stale = get(stack.renderer_url, f"/noticia/{slug}.ghtml", timeout=5)
    assert stale.status == 200 and stale.headers["X-Tier"] == "stale"
    assert "Publicada no cluster" in stale.text
    # Healthcheck results are cached for a few seconds; the stale answer came faster than that.
    health = wait_until(lambda: degraded(json.loads(get(stack.renderer_url, "/healthcheck").body)))
    assert next(r for r in health["results"] if r["checker"] == "redis connection")["passed"] is True

    # The CDN's purge rate, shared through the cluster (one key, one Lua script, Redis's clock).
    taken, held = three_takes_then_a_hold_off(stack.env["REDIS_URL"], 1.0, 2, TokenBucket(0.001, 1), hold=5)
    assert taken[:2] == [0.0, 0.0] and 0.9 < taken[2] <= 1.0, taken  # not the fallback's rate
    assert 4.9 < held <= 5.0
