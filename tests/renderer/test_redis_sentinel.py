"""Redis behind Sentinel: killing the primary under steady reads fails over within seconds, and the
pages come from Redis again on the promoted replica, not from a MongoDB stampede. (A takedown is
acknowledged only once a replica holds it: ``test_fleet.py``, with the primary's host killed.)"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
import redis

from devstack.stack import Ports, Stack, start_stack
from tests.conftest import EDITOR_TOKEN
from tests.helpers import get, mongo_reads


@pytest.fixture
def sentinel_stack(tmp_path: Path) -> Iterator[Stack]:
    stack = start_stack(
        tmp_path / "stack",
        Ports.free(),
        environ={"EDITOR_TOKENS": EDITOR_TOKEN},
        renderer_env={"PROCESSES": "2"},  # the defaults users get
        redis_sentinel=True,
    )
    try:
        yield stack
    finally:
        stack.stop()


@pytest.mark.slow
def test_killing_the_primary_fails_over_and_pages_keep_coming_from_redis(sentinel_stack: Stack) -> None:
    stack = sentinel_stack
    primary = stack.started["redis"]
    renderer = stack.renderer_url
    from pymongo import MongoClient

    from devstack.samples import article_document

    slugs = [f"sentinela-{n}" for n in range(40)]
    with MongoClient(stack.env["MONGODB_URL"]) as client:
        client[stack.env["MONGODB_DB"]]["articles"].insert_many(
            [
                article_document(
                    {
                        "slug": s,
                        "title": s,
                        "section": "rio",
                        "body_html": "<p>x</p>",
                        "published_at": "2026-11-25T10:00:00Z",
                    }
                )
                for s in slugs
            ]
        )
    for slug in slugs:
        assert get(renderer, f"/noticia/{slug}.ghtml").status == 200
    # The replica has them: WAIT returns once it acknowledged every write so far.
    with redis.Redis(host="127.0.0.1", port=primary.port) as client:
        assert client.wait(1, 5000) == 1
    reads_before = mongo_reads(renderer)

    primary.kill()
    tiers: Counter[tuple[int, str]] = Counter()
    after_switch: Counter[str] = Counter()
    started = time.monotonic()
    while time.monotonic() - started < 12:
        for slug in slugs:
            resp = get(renderer, f"/noticia/{slug}.ghtml")
            tiers[(resp.status, resp.headers["X-Tier"])] += 1
            if time.monotonic() - started > 8:
                after_switch[resp.headers["X-Tier"]] += 1
    # Every answer was a page; after the switch they come from Redis again (the promoted replica).
    assert {status for status, _ in tiers} == {200}, tiers
    assert after_switch and set(after_switch) == {"redis"}, after_switch
    # While Redis was away each process answered from its own copies ("memory"), reading MongoDB
    # at most once per page it had never served: no stampede.
    assert tiers[(200, "mongo")] <= 2 * len(slugs), tiers
    assert mongo_reads(renderer) - reads_before <= 2 * len(slugs), tiers
