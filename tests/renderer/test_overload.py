"""MongoDB slow or saturated: reads over the adaptive limit get their stale copy at once; a page
with none waits for a slot within its deadline instead of being refused."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Callable

from devstack.chaos import duty_cycle
from devstack.probes import concurrent_gets, metric
from tests.conftest import StackClients
from tests.helpers import expire_records, get, unique_slug


def test_reads_over_the_limit_get_their_stale_copy_at_once(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish=False, MONGODB_MAX_CONCURRENCY="4", REQUEST_DEADLINE="3", MONGODB_TIMEOUT="2")
    slugs = [unique_slug("sobrecarga") for _ in range(20)]
    for slug in slugs:
        s.add_article(slug)
        assert get(s.renderer, f"/noticia/{slug}.ghtml").status == 200  # a stale: copy each
    expire_records(s.redis, *slugs)
    s.server("ferretdb").freeze()  # alive, answering nothing: every read hangs
    try:
        outcomes = asyncio.run(concurrent_gets([f"{s.renderer}/noticia/{slug}.ghtml" for slug in slugs]))
        health = json.loads(get(s.renderer, "/healthcheck").body)
    finally:
        s.server("ferretdb").thaw()
    assert outcomes == {(200, "stale"): 20}
    # At most the limit waited on MongoDB; the rest were answered from their stale copies at once.
    assert metric(s.renderer, "pagecache_mongodb_shed_total", outcome="stale") >= 16
    load = next(r for r in health["results"] if r["checker"] == "mongodb load")
    assert load["passed"] is False and "shedding" in load["output"]
    assert health["status"] == "degraded"


def test_cold_misses_wait_for_a_slot_when_mongodb_is_slow_but_alive(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish=False, MONGODB_MAX_CONCURRENCY="2", REQUEST_DEADLINE="6", MONGODB_TIMEOUT="4")
    slugs = [unique_slug("fria") for _ in range(12)]
    for slug in slugs:
        s.add_article(slug)  # never read: no copy anywhere
    stop = threading.Event()
    cycling = threading.Thread(target=duty_cycle, args=(s.server("ferretdb").pid, stop), daemon=True)
    cycling.start()
    try:
        outcomes = asyncio.run(concurrent_gets([f"{s.renderer}/noticia/{slug}.ghtml" for slug in slugs]))
    finally:
        stop.set()
        cycling.join()
    assert outcomes == {(200, "mongo"): 12}
    assert metric(s.renderer, "pagecache_mongodb_shed_total", outcome="queued") >= 1
    assert metric(s.renderer, "pagecache_mongodb_shed_total", outcome="unavailable") == 0
