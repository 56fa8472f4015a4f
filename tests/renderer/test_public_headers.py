"""What each listener hands on. The renderer (internal: the load balancer, Prometheus, editors,
operators) says everything it knows; the public edge and the CDN give readers what a browser or a
crawler uses and nothing that only operators need: no tier names, no failure details, no
transaction ids, no surrogate keys (those go to the CDN, which keeps them to itself)."""

from __future__ import annotations

from typing import Callable

from tests.conftest import StackClients
from tests.helpers import Response, get, unique_slug
from tests.renderer.test_publish import article, put

# Every page at every tier: what browsers, crawlers, support and the CDN use. X-Page-Version
# stays: every copy names its version (an edit count, nothing secret), which is how a reader's
# report of a wrong page is matched to an edit.
PAGE = {
    "cache-control",
    "cdn-cache-control",
    "content-security-policy",
    "content-type",
    "cross-origin-opener-policy",
    "cross-origin-resource-policy",
    "date",
    "etag",
    "last-modified",
    "permissions-policy",
    "referrer-policy",
    "x-content-type-options",
    "x-frame-options",
    "x-page-version",
    "x-request-id",
}
# The renderer's internal answer adds where the page came from, why, and the keys Varnish purges by.
RENDERER = PAGE | {"cache-status", "surrogate-control", "x-pagecache-box", "x-tier", "xkey"}
# The public edge: its own member of Cache-Status (terse), hit/miss, Age, and for the CDN its
# lifetime and the keys its purges name.
EDGE = (
    PAGE
    | {"accept-ranges", "age", "cache-status", "cache-tag", "surrogate-control", "surrogate-key"}
    | {
        "vary",
        "via",
        "x-cache",
    }
)
# What a reader gets from the CDN: the edge's, minus what the CDN keeps to itself.
CDN = (EDGE - {"cache-tag", "surrogate-control", "surrogate-key"}) | {"x-cdn-cache"}
OPERATORS_ONLY = {"server", "x-pagecache-box", "x-tier", "x-varnish", "xkey"}
FRAMING = {"connection", "content-encoding", "content-length", "transfer-encoding"}


def names(resp: Response) -> set[str]:
    """The header names of ``resp`` (lower case), without the framing ones."""
    return {name.lower() for name in resp.headers.keys()} - FRAMING


def test_readers_get_the_page_headers_and_operators_the_rest(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(production_defaults=True, cdn="fastly")
    slug = unique_slug("cabecalhos")
    assert put(s.renderer, slug, article("Cabeçalhos")).status in (200, 201, 202)
    path = f"/noticia/{slug}.ghtml"
    edge = s.stack.public_urls[0]
    renderer = get(s.renderer, path, {"Accept-Encoding": "gzip"})
    assert names(renderer) - {"vary"} == RENDERER, names(renderer) ^ RENDERER
    for tier, url, expected in (("edge", edge, EDGE), ("cdn", s.site, CDN)):
        for attempt in ("miss", "hit"):
            resp = get(url, path)
            assert resp.status == 200
            assert names(resp) == expected, (tier, attempt, names(resp) ^ expected)
            # RFC 9211's terse form outside: the nearest cache's own member, no detail from inside.
            assert resp.headers["Cache-Status"] in ("varnish; hit", "varnish; fwd=miss"), resp.headers["Cache-Status"]
    # A hit at either tier answers the reader's own request id, never the one of the fetch that
    # filled the cache (a vendor stores every header it gets, unless told not to).
    for tier, url in (("edge", edge), ("cdn", s.site)):
        get(url, path, {"X-Request-Id": f"quem-encheu-{tier}"})
        hit = get(url, path, {"X-Request-Id": f"leitor-{tier}"})
        assert hit.headers.get("X-Request-Id") in (f"leitor-{tier}", None), (tier, hit.headers["X-Request-Id"])
    # The edge hands the CDN its keys; the CDN keeps them to itself.
    assert get(edge, path).headers["Surrogate-Key"] == f"article-{slug} latest"
    # A 404 and a front alike.
    for missing in (f"/noticia/{unique_slug('nunca')}.ghtml", "/rio/"):
        for url in (edge, s.site):
            resp = get(url, missing)
            assert not names(resp) & OPERATORS_ONLY, (url, missing, names(resp))
            assert "," not in resp.headers.get("Cache-Status", ""), resp.headers["Cache-Status"]
