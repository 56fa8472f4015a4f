"""A renderer process never serves a takedown from memory (issue: correct under slow failure,
point 3): its in-process copies are dropped when its invalidation subscription may have missed a
message, and none is served past the age a Redis copy may reach."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from devstack import servers
from devstack.probes import metric
from renderer import contract
from renderer.last_good import LastGood
from renderer.rendered_page import RenderedPage
from tests.conftest import StackClients
from tests.helpers import get, request, unique_slug, wait_until
from tests.holding_proxy import HoldingProxy
from tests.renderer.test_publish import AUTH, article, put


@pytest.fixture
def published(make_stack: Callable[..., StackClients]) -> Iterator[Callable[..., tuple[StackClients, str, str]]]:
    """``published(via)``: a stack without Varnish whose renderer holds an article in memory,
    published through a second renderer (the editors'); gives the stack, the editors' API and
    the article's slug. ``via``: a proxy the renderer (not the editors') reaches Redis through."""
    editors: list[servers.Server] = []

    def make(via: HoldingProxy | None = None) -> tuple[StackClients, str, str]:
        s = make_stack(varnish=False, **({"REDIS_URL": f"redis://127.0.0.1:{via.port}/0"} if via else {}))
        if via:
            via.connect_to("127.0.0.1", s.stack.ports.redis)
        editors.append(s.editors_renderer())
        api, slug = f"http://127.0.0.1:{editors[-1].start().port}", unique_slug("retirada")
        assert put(api, slug, article(TITLE)).status == 201  # no Varnish node to wait for
        wait_until(lambda: get(s.renderer, f"/noticia/{slug}.ghtml").headers["X-Tier"] == "redis")
        return s, api, slug

    yield make
    for server in editors:
        server.stop()


TITLE = "Vai sair do ar"


def nothing_to_show(s: StackClients, slug: str) -> None:
    """Redis and MongoDB are dead: the renderer soon has nothing of ``slug``, and stays so."""
    path = f"/noticia/{slug}.ghtml"
    wait_until(lambda: get(s.renderer, path).status == 503, timeout=10)
    for _ in range(5):
        answer = get(s.renderer, path)
        assert answer.status == 503 and TITLE not in answer.text


def test_a_process_whose_subscription_went_deaf_does_not_serve_a_takedown_from_memory(
    published: Callable[..., tuple[StackClients, str, str]], proxy: HoldingProxy
) -> None:
    # The reader's renderer reaches Redis through the proxy; the editors' renderer reaches it
    # directly. Holding the invalidation makes the reader's subscription a half-open connection:
    # no error, no message.
    s, api, slug = published(via=proxy)
    proxy.hold(contract.INVALIDATION_CHANNEL.encode())
    assert request(api, "DELETE", f"/api/articles/{slug}", None, AUTH).status == 200
    assert proxy.holding.wait(10), "the invalidation never reached the reader's subscription"
    s.server("redis").kill()
    s.server("ferretdb").kill()
    # Within a few heartbeats the process knows its subscription went deaf and drops its copies
    # (before the fix: it showed the article for ever).
    nothing_to_show(s, slug)


def test_a_process_that_subscribes_again_drops_what_it_held_while_it_was_away(
    published: Callable[..., tuple[StackClients, str, str]],
) -> None:
    s, api, slug = published()
    # Redis restarts empty; the takedown committed meanwhile was announced to nobody.
    s.server("redis").kill()
    assert request(api, "DELETE", f"/api/articles/{slug}", None, AUTH).status == 503  # committed
    s.server("redis").start()
    wait_until(lambda: metric(s.renderer, "pagecache_invalidation_gaps_total") >= 1)  # subscribed again
    assert get(s.renderer, "/").headers["X-Tier"] == "mongo"  # Redis answers (a miss): copies dropped
    s.server("ferretdb").kill()
    s.server("redis").kill()
    nothing_to_show(s, slug)


def test_no_in_process_copy_is_older_than_a_redis_copy_may_be() -> None:
    copies = LastGood(size=10, max_age=60)
    copies.put("a", RenderedPage(200, b"a", '"1"', 0.0, "", rendered_at=1_000.0, version=1))
    assert copies.get("a", now=1_059.0) is not None
    assert copies.get("a", now=1_061.0) is None
