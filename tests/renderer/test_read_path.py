"""The read path through real Varnish, renderer, Redis and FerretDB."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest

from tests.conftest import StackClients
from tests.helpers import get, mongo_reads, redis_calls, stored_page, unique_slug, wait_until


def article_path(slug: str) -> str:
    return f"/noticia/{slug}.ghtml"


@pytest.mark.slow
def test_first_request_misses_then_hits_then_redis_serves_after_varnish_expiry(stack: StackClients) -> None:
    slug = unique_slug()
    stack.add_article(slug, title="Manchete que passa pelos três níveis")
    get(stack.renderer, "/_fragment/latest")  # the page's "latest news" box, in Redis: not counted here
    reads_before = mongo_reads(stack.renderer)

    first = get(stack.site, article_path(slug))
    first_at = time.monotonic()
    assert first.status == 200
    assert first.headers["X-Cache"] == "MISS"
    assert "Manchete que passa pelos três níveis" in first.text
    assert mongo_reads(stack.renderer) == reads_before + 1

    second = get(stack.site, article_path(slug))
    assert second.status == 200
    assert second.headers["X-Cache"] == "HIT"
    assert second.body == first.body

    # One record: fresh for 5 min (less a little jitter), then answered while refreshed for 15 min
    # more, then kept for the rest of a day as the page's last good copy.
    assert 86400 - 5 < stack.redis.ttl(f"page:{slug}") <= 86400
    stored = stored_page(stack.redis, slug)
    assert stored is not None and stored.version == 1 and first.headers["X-Page-Version"] == "1"
    fresh_for = stored.fresh_until - time.time()
    assert 300 * 0.95 - 5 < fresh_for <= 300
    assert stored.serve_until - stored.fresh_until == 900

    # Past Varnish's 10 s TTL it fetches again (a copy younger than the first), answered by Redis,
    # not MongoDB: the same render. (Not counted with mongo_reads: the shared stack's box may be
    # read again meanwhile.)
    def refetched() -> bool:
        return int(get(stack.site, article_path(slug)).headers["Age"]) + 1 < time.monotonic() - first_at

    wait_until(refetched, timeout=16, interval=0.5)
    assert stored_page(stack.redis, slug).rendered_at == stored.rendered_at


def test_redis_evicts_least_recently_used_pages(stack: StackClients) -> None:
    # volatile-lru: only keys with a TTL are evicted, and every page record has one (the purge
    # log, which has none, is never evicted: tests/renderer/test_purge_log.py).
    assert stack.redis.config_get("maxmemory-policy")["maxmemory-policy"] == "volatile-lru"
    assert int(stack.redis.config_get("maxmemory")["maxmemory"]) > 0
    slug = unique_slug()
    stack.add_article(slug)
    assert get(stack.renderer, article_path(slug)).status == 200
    assert 0 < stack.redis.ttl(f"page:{slug}")


def test_page_headers_follow_the_http_contract(stack: StackClients) -> None:
    slug = unique_slug()
    stack.add_article(slug, section="economia")
    resp = get(stack.site, article_path(slug))
    assert resp.status == 200
    cache_control = resp.headers["Cache-Control"]
    assert "public" in cache_control and "s-maxage=10" in cache_control and "max-age=0" in cache_control
    assert "stale-while-revalidate=" in cache_control and "stale-if-error=" in cache_control
    # The CDN's own lifetime (CDN_TTL…), and the page's keys under the CDNs' names.
    for header in ("CDN-Cache-Control", "Surrogate-Control"):
        assert resp.headers[header] == "max-age=10, stale-while-revalidate=10, stale-if-error=86400", header
    # Its own key, and the box's: a takedown the box showed purges every page that shows it.
    assert resp.headers["Surrogate-Key"] == f"article-{slug} latest"
    assert resp.headers["Cache-Tag"] == f"article-{slug},latest"
    # With its "latest news" box, the page's validators name its version and the box's generation.
    assert resp.headers["ETag"].removeprefix("W/").startswith('"1-') and "." in resp.headers["ETag"]
    assert resp.headers["Last-Modified"].endswith("GMT")
    assert resp.headers["Server"] is None and "Varnish" not in resp.headers["Via"]
    assert resp.headers["Age"] is not None
    # Terse outside (this cache's member); the renderer's detail stays inside (below).
    assert resp.headers["Cache-Status"] == "varnish; fwd=miss" and resp.headers["X-Tier"] is None
    assert resp.headers["Set-Cookie"] is None
    assert resp.headers["Vary"] is None or "Cookie" not in resp.headers["Vary"]
    # Surrogate keys are for Varnish only.
    assert resp.headers["xkey"] is None
    direct = get(stack.renderer, article_path(slug))
    assert direct.headers["xkey"] == f"article-{slug} latest"  # only what the page shows
    assert direct.headers["X-Pagecache-Box"] is not None and resp.headers["X-Pagecache-Box"] is None
    assert direct.headers["X-Tier"] == "redis"
    assert direct.headers["Cache-Status"] == "redis; hit"
    assert direct.headers["ETag"].startswith('"1-') and direct.headers["Last-Modified"].endswith("GMT")


def test_matching_etag_gets_304_from_varnish_and_renderer(stack: StackClients) -> None:
    slug = unique_slug()
    stack.add_article(slug)
    etag = get(stack.renderer, article_path(slug)).headers["ETag"]
    resp = get(stack.renderer, article_path(slug), {"If-None-Match": etag})
    assert resp.status == 304 and resp.body == b""
    # Through Varnish: pages that are not assembled (the home, section fronts) revalidate;
    # Varnish stores them gzipped, which makes their ETag weak (RFC 9110 §8.8.3.3).
    for path in ("/", "/rio/"):
        page = get(stack.site, path)
        etag = page.headers["ETag"]
        assert page.status == 200 and etag and etag.startswith('W/"'), (path, page.status, dict(page.headers))
        for base in (stack.site, stack.renderer):
            resp = get(base, path, {"If-None-Match": etag})
            assert resp.status == 304, (base, path)
            assert resp.body == b""


def test_cookies_do_not_split_the_cache(stack: StackClients) -> None:
    slug = unique_slug()
    stack.add_article(slug)
    get(stack.site, article_path(slug))
    resp = get(stack.site, article_path(slug), {"Cookie": "session=abc; glbid=123"})
    assert resp.headers["X-Cache"] == "HIT"
    assert resp.headers["Set-Cookie"] is None


BAD_PATHS = [
    "/noticia/..%2F..%2Fetc%2Fpasswd.ghtml",
    "/noticia/../../etc/passwd.ghtml",
    "/noticia/a..b.ghtml",
    "/noticia/abc%00def.ghtml",
    "/noticia/%00.ghtml",
    "/noticia/Tiroteio-Deixa-Um-Morto.ghtml",
    "/noticia/" + "a" * 10_000 + ".ghtml",
    "/noticia/not%C3%ADcia-com-acento.ghtml",
    "/noticia/%F0%9F%92%A5.ghtml",
    "/noticia/%FF%FE.ghtml",
    "/noticia/.ghtml",
    "/noticia/-a-.ghtml",
    "/noticia/a--b.ghtml",
    "/noticia/slug.html",
    "/noticia/slug",
    "/noticia/a/b.ghtml",
    "/nada/aqui",
]


@pytest.mark.parametrize("path", BAD_PATHS, ids=lambda p: p[:40])
def test_bad_input_is_404_without_touching_a_backend(stack: StackClients, path: str) -> None:
    def backend_calls() -> tuple[int, float]:
        return redis_calls(stack.redis), mongo_reads(stack.renderer)

    # The box's own refresh reads Redis every few seconds: a request whose window caught one is
    # sent again (a path that touched a backend would touch it every time).
    for _ in range(3):
        before = backend_calls()
        direct = get(stack.renderer, path)
        assert direct.status == 404
        assert "Página não encontrada" in direct.text
        assert direct.headers["Cache-Control"].startswith("public, max-age=0, s-maxage=")
        if backend_calls() == before:
            break
    else:
        pytest.fail(f"every request for {path} touched Redis or MongoDB")
    assert get(stack.site, path).status == 404


def test_unknown_article_is_a_briefly_cached_404(stack: StackClients) -> None:
    slug = unique_slug("inexistente")
    reads_before = mongo_reads(stack.renderer)
    first = get(stack.renderer, article_path(slug))
    assert first.status == 404
    assert "s-maxage=10" in first.headers["Cache-Control"]
    assert first.headers["CDN-Cache-Control"] == first.headers["Surrogate-Control"] == "max-age=10"
    assert first.headers["xkey"] == f"article-{slug}"
    stored = stored_page(stack.redis, slug)
    assert stored is not None and stored.status == 404 and 0 < stored.fresh_until - time.time() <= 10
    # The record lives no longer than it is fresh, and holds no body (the 404 page is the one page).
    assert 0 < stack.redis.ttl(f"page:{slug}") <= 10 and stack.redis.strlen(f"page:{slug}") < 400
    assert first.headers["X-Page-Version"] == "0"  # no such article
    again = get(stack.renderer, article_path(slug))
    assert again.status == 404 and again.headers["X-Tier"] == "redis" and again.body == first.body
    assert mongo_reads(stack.renderer) == reads_before + 1


def test_unpublished_article_is_404(stack: StackClients) -> None:
    slug = unique_slug()
    stack.add_article(slug)
    stack.articles.update_one({"slug": slug}, {"$set": {"published": False}})
    assert get(stack.renderer, article_path(slug)).status == 404


def test_script_in_article_body_is_rendered_inert(stack: StackClients) -> None:
    slug = unique_slug()
    stack.add_article(
        slug,
        title="<script>alert('title')</script>Manchete",
        body_html=(
            "<p>Antes</p><script>alert('xss')</script>"
            '<img src="x.jpg" onerror="alert(1)"><a href="javascript:alert(2)">clique</a>'
            '<p onclick="alert(3)">Depois</p><iframe src="https://evil.example"></iframe>'
        ),
    )
    html = get(stack.site, article_path(slug)).text
    body = html.split('<div class="body">', 1)[1]
    assert "<script" not in body
    assert "alert(" not in body
    assert "onerror" not in html and "onclick" not in html
    assert "javascript:" not in html
    assert "<iframe" not in html
    assert "<p>Antes</p>" in body and "Depois" in body
    assert "&lt;script&gt;alert(&#x27;title&#x27;)&lt;/script&gt;Manchete" in html


def test_article_page_is_a_real_news_page(stack: StackClients) -> None:
    html = get(stack.site, "/noticia/tiroteio-deixa-um-morto-e-feridos.ghtml").text
    assert "<h1>Tiroteio deixa um morto e três feridos na Zona Norte do Rio</h1>" in html
    assert '<p class="standfirst">Polícia investiga o caso' in html
    assert "Redação g1 Rio" in html
    assert '<time datetime="2026-11-23T07:00:00-03:00">23/11/2026 07h00</time>' in html
    assert f'<link rel="canonical" href="{stack.site}/noticia/tiroteio-deixa-um-morto-e-feridos.ghtml">' in html
    assert '<meta property="og:title" content="Tiroteio deixa um morto' in html
    # The sample's lead image is one the site serves itself, with its size and its text.
    assert f'<meta property="og:image" content="{stack.site}/static/img/rio.jpg">' in html
    img = re.search(r'<img src="([^"]+)" alt="Ilustração: [^"]+" width="1200" height="675">', html)
    assert img and get(stack.site, urlsplit(img.group(1)).path).headers["Content-Type"] == "image/jpeg"
    assert '"@type": "NewsArticle"' in html
    assert '<html lang="pt-BR">' in html


def test_home_lists_the_latest_articles(stack: StackClients) -> None:
    # Other tests publish into the shared stack too: this one's articles are the newest.
    newer, older = unique_slug("mais-nova"), unique_slug("mais-velha")
    stack.add_article(older, title="Manchete mais velha", published_at="2099-01-01T10:00:00+00:00")
    stack.add_article(newer, title="Manchete mais nova", published_at="2099-01-01T11:00:00+00:00")
    stack.redis.delete("page:@home")
    resp = get(stack.renderer, "/")
    assert resp.status == 200
    assert "Últimas notícias" in resp.text
    assert 'href="' + stack.site + f'/noticia/{newer}.ghtml"' in resp.text
    assert resp.text.index("Manchete mais nova") < resp.text.index("Manchete mais velha")
    direct = get(stack.renderer, "/")
    assert "home" in direct.headers["xkey"].split()
