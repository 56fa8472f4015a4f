"""A renderer process never serves a takedown from memory (issue: correct under slow failure,
point 3): its in-process copies are dropped when its invalidation subscription may have missed a
message, and none is served past the age a Redis copy may reach."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from devstack import servers
from devstack.probes import metric
from renderer import contract
from renderer.rendered_page import RenderedPage
from renderer.tiers import LastGood
from tests.conftest import EDITOR_TOKEN, StackClients
from tests.helpers import get, request, unique_slug, wait_until
from tests.holding_proxy import HoldingProxy
from tests.renderer.test_publish import AUTH, article, put


@pytest.fixture
def proxy() -> Iterator[HoldingProxy]:
    held = HoldingProxy()
    yield held
    held.close()


def test_a_process_whose_subscription_went_deaf_does_not_serve_a_takedown_from_memory(
    make_stack: Callable[..., StackClients], proxy: HoldingProxy
) -> None:
    # The reader's renderer reaches Redis through the proxy; the editors publish through another
    # renderer that reaches it directly. Holding the invalidation makes the reader's subscription
    # a half-open connection: no error, no message.
    s = make_stack(varnish=False, REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0")
    proxy.connect_to("127.0.0.1", s.stack.ports.redis)
    editors = servers.renderer(
        s.stack.run_dir, servers.free_port(), {**s.stack.env, "EDITOR_TOKENS": EDITOR_TOKEN, "PROCESSES": "1"}
    ).start()
    try:
        api, slug = f"http://127.0.0.1:{editors.port}", unique_slug("retirada")
        assert put(api, slug, article("Vai sair do ar")).status == 202  # no Varnish here: purges queued
        path = f"/noticia/{slug}.ghtml"
        wait_until(lambda: get(s.renderer, path).headers["X-Tier"] == "redis")  # now in its memory too

        proxy.hold(contract.INVALIDATION_CHANNEL.encode())
        assert request(api, "DELETE", f"/api/articles/{slug}", None, AUTH).status == 202
        assert proxy.holding.wait(10), "the invalidation never reached the reader's subscription"
        s.server("redis").kill()
        s.server("ferretdb").kill()
        # Within a few heartbeats the process knows its subscription went deaf and drops its
        # copies; from then on it has nothing to show (before the fix: the article, for ever).
        wait_until(lambda: get(s.renderer, path).status == 503, timeout=10)
        for _ in range(5):
            answer = get(s.renderer, path)
            assert answer.status == 503 and "Vai sair do ar" not in answer.text
    finally:
        editors.stop()


def test_a_process_that_subscribes_again_drops_what_it_held_while_it_was_away(
    make_stack: Callable[..., StackClients],
) -> None:
    s = make_stack(varnish=False)
    editors = servers.renderer(
        s.stack.run_dir, servers.free_port(), {**s.stack.env, "EDITOR_TOKENS": EDITOR_TOKEN, "PROCESSES": "1"}
    ).start()
    try:
        api, slug = f"http://127.0.0.1:{editors.port}", unique_slug("retirada")
        assert put(api, slug, article("Vai sair do ar")).status == 202  # no Varnish here: purges queued
        path = f"/noticia/{slug}.ghtml"
        wait_until(lambda: get(s.renderer, path).headers["X-Tier"] == "redis")  # now in its memory too
        # Redis restarts empty; the takedown committed meanwhile was announced to nobody.
        s.server("redis").kill()
        assert request(api, "DELETE", f"/api/articles/{slug}", None, AUTH).status == 503  # committed
        s.server("redis").start()
        wait_until(lambda: metric(s.renderer, "pagecache_invalidation_gaps_total") >= 1)  # subscribed again
        assert get(s.renderer, "/").headers["X-Tier"] == "mongo"  # Redis answers (a miss): copies dropped
        s.server("ferretdb").kill()
        s.server("redis").kill()
        wait_until(lambda: get(s.renderer, path).status == 503, timeout=10)
        for _ in range(5):
            answer = get(s.renderer, path)
            assert answer.status == 503 and "Vai sair do ar" not in answer.text
    finally:
        editors.stop()


def test_no_in_process_copy_is_older_than_a_redis_copy_may_be() -> None:
    copies = LastGood(size=10, max_age=60)
    copies.put("a", RenderedPage(200, b"a", '"1"', 0.0, "", rendered_at=1_000.0, version=1))
    assert copies.get("a", now=1_059.0) is not None
    assert copies.get("a", now=1_061.0) is None
