"""The public edge through the real stack: one object per page, gzip, the admin surface off it,
security headers and the small files (docs/architecture.rst, "The edge")."""

from __future__ import annotations

import gzip
import random
from collections import Counter
from typing import Callable

from devstack.probes import varnish_counters
from tests.conftest import StackClients
from tests.helpers import get, section_of_its_own, unique_slug
from tests.renderer.test_publish import article, put


def test_tracking_parameters_do_not_split_the_cache(stack: StackClients) -> None:
    slug = unique_slug("rastreio")
    stack.add_article(slug, title="Compartilhada nas redes")
    path = f"/noticia/{slug}.ghtml"
    assert get(stack.site, path).headers["X-Cache"] == "MISS"
    for query in ("?utm_source=facebook", "?fbclid=abc", "?utm_source=x&utm_medium=y", "?page=2", "?gclid=1&_ga=2"):
        resp = get(stack.site, path + query)
        assert resp.status == 200
        assert resp.headers["X-Cache"] == "HIT", query
        assert "Compartilhada nas redes" in resp.text


def test_gzip_and_plain_clients_get_the_same_page_from_one_object(stack: StackClients) -> None:
    slug = unique_slug("gzip")
    stack.add_article(slug, body_html="<p>" + "Texto longo da matéria. " * 200 + "</p>")
    path = f"/noticia/{slug}.ghtml"
    direct = get(stack.renderer, path)
    zipped = get(stack.site, path, {"Accept-Encoding": "gzip, deflate, br"})
    plain = get(stack.site, path)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Content-Encoding" not in plain.headers
    assert plain.headers["X-Cache"] == "HIT"  # the gzip client's fetch made the one object
    # Byte for byte the renderer's page, box included: Varnish assembles nothing.
    assert gzip.decompress(zipped.body) == plain.body == direct.body
    assert len(zipped.body) <= 0.35 * len(plain.body)
    # Revalidation works for both kinds of client through Varnish, article pages included.
    for page in (path, "/"):
        etag = get(stack.site, page, {"Accept-Encoding": "gzip"}).headers["ETag"]
        assert get(stack.site, page, {"If-None-Match": etag, "Accept-Encoding": "gzip"}).status == 304
        assert get(stack.site, page, {"If-None-Match": etag}).status == 304


def test_internal_endpoints_are_not_on_the_public_edge(stack: StackClients) -> None:
    for path in ("/metrics", "/healthcheck", "/healthcheck/live", "/api/openapi.json", "/api/purge/pending"):
        assert get(stack.site, path).status == 404, path
        assert get(stack.renderer, path).status in (200, 401), path


def test_pages_carry_security_headers_that_allow_what_they_use(stack: StackClients) -> None:
    page = get(stack.site, "/noticia/tiroteio-deixa-um-morto-e-feridos.ghtml")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "style-src 'sha256-" in csp
    assert "script-src" not in csp and "unsafe-inline" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in page.headers  # HSTS_MAX_AGE is 0 by default
    # Fetches go to the site only (Lighthouse reads /robots.txt from the page): nothing else.
    assert "connect-src 'self'" in csp
    assert page.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert page.headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert {"camera=()", "microphone=()", "geolocation=()"} <= set(page.headers["Permissions-Policy"].split(", "))
    missing = get(stack.site, f"/noticia/{unique_slug()}.ghtml")
    assert missing.status == 404 and missing.headers["Content-Security-Policy"] == csp
    # One 404 page answers for every URL that names nothing: it names no canonical page.
    assert 'rel="canonical"' not in missing.text and 'rel="canonical"' in page.text


def test_robots_favicon_and_images_are_served_and_cached_like_pages(stack: StackClients) -> None:
    for path, content_type, start in (
        ("/robots.txt", "text/plain; charset=UTF-8", b"User-agent: *"),
        ("/favicon.ico", "image/x-icon", b"\x00\x00\x01\x00"),
        ("/static/img/rio.jpg", "image/jpeg", b"\xff\xd8\xff"),
    ):
        first = get(stack.site, path)
        assert first.status == 200 and first.headers["Content-Type"] == content_type
        assert first.body.startswith(start)
        assert "s-maxage=10" in first.headers["Cache-Control"]
        # From Varnish's cache: fresh, or (another test read it over 10 s ago) from grace while
        # Varnish refetches it.
        assert get(stack.site, path).headers["X-Cache"] in ("HIT", "HIT-STALE")


def test_a_flood_of_variants_adds_at_most_one_object_per_page(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack()
    section = section_of_its_own()
    slug = unique_slug("variantes")
    assert put(s.renderer, slug, article("Uma página, um objeto", section=section)).status in (201, 202)
    pages = ["/", f"/{section}/", f"/noticia/{slug}.ghtml"]
    before = varnish_counters(s.server("varnish"))["MAIN.n_object"]
    rng = random.Random(22)

    def variant(page: str) -> tuple[str, dict[str, str]]:
        kind = rng.randrange(4) if page != "/" else rng.choice([0, 1, 3])  # "/" has no letter to encode
        if kind == 0:
            return f"{page}?{rng.choice(['r', 'page', 'x', 'utm_source'])}={rng.getrandbits(48):x}", {}
        if kind == 1:
            return page, {"Host": f"{rng.getrandbits(32):x}.example"}
        if kind == 2:  # a letter of the path percent-encoded
            at = rng.choice([i for i, c in enumerate(page) if c.isalpha()])
            return f"{page[:at]}%{ord(page[at]):02X}{page[at + 1 :]}", {}
        return f"{page}?fbclid={rng.getrandbits(32):x}&a={rng.randrange(10)}", {"Host": "outro.example:8080"}

    statuses: Counter[int] = Counter()
    for n in range(1000):
        path, headers = variant(pages[n % len(pages)])
        resp = get(s.site, path, headers)
        statuses[resp.status] += 1
        if resp.status == 301:
            assert resp.headers["Location"] in pages, (path, resp.headers["Location"])
    assert set(statuses) <= {200, 301}, statuses
    added = varnish_counters(s.server("varnish"))["MAIN.n_object"] - before
    assert added <= len(pages), (added, statuses)
