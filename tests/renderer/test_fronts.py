"""Section fronts and the "latest news" box (an ESI fragment) through real Varnish and renderer."""

from __future__ import annotations

import json
import re
from typing import Callable

from devstack.probes import varnish_counters
from renderer.render import LATEST_BOX_INCLUDE
from tests.conftest import StackClients
from tests.helpers import expire_records, get, html_errors, mongo_reads, unique_slug, wait_until
from tests.renderer.test_publish import article, put


def section_of_its_own() -> str:
    return unique_slug("editoria")


def titles(html: str) -> list[str]:
    return re.findall(r'<h2><a href="[^"]+">([^<]+)</a></h2>', html)


def box(html: str) -> list[str]:
    aside = html.split('<aside class="latest"', 1)
    return re.findall(r"<li><a [^>]+>([^<]+)</a></li>", aside[1]) if len(aside) == 2 else []


def test_a_front_lists_its_section_newest_first_and_redirects_without_the_slash(stack: StackClients) -> None:
    section = section_of_its_own()
    for n, hour in enumerate(("09", "11", "10")):
        stack.add_article(unique_slug(), section=section, title=f"Nota {n}", published_at=f"2099-02-01T{hour}:00:00Z")
    stack.add_article(unique_slug(), section="economia", title="De outra editoria")
    front = get(stack.site, f"/{section}/")
    assert front.status == 200 and front.headers["X-Cache"] == "MISS"
    assert titles(front.text) == ["Nota 1", "Nota 2", "Nota 0"]
    assert get(stack.site, f"/{section}/").headers["X-Cache"] == "HIT"
    direct = get(stack.renderer, f"/{section}/")
    assert direct.headers["xkey"] == f"section-{section}" and direct.headers["X-Tier"] == "redis"
    assert direct.headers["Cache-Status"] == "redis; hit"
    # What a front says about itself: JSON-LD, OpenGraph, a description.
    ld = json.loads(front.text.split('<script type="application/ld+json">', 1)[1].split("</script>", 1)[0])
    assert ld["@type"] == "CollectionPage" and ld["mainEntity"]["@type"] == "ItemList"
    assert [item["name"] for item in ld["mainEntity"]["itemListElement"]] == ["Nota 1", "Nota 2", "Nota 0"]
    assert '<meta property="og:title"' in front.text and '<meta name="description"' in front.text
    redirect = get(stack.site, f"/{section}")
    assert redirect.status == 301 and redirect.headers["Location"] == f"/{section}/"


def test_an_unknown_section_is_a_404_that_reads_mongodb_once(stack: StackClients) -> None:
    section = section_of_its_own()
    reads = mongo_reads(stack.renderer)
    for _ in range(3):
        assert get(stack.renderer, f"/{section}/").status == 404
    assert mongo_reads(stack.renderer) == reads + 1  # negative-cached in Redis
    for path in ("/Rio/", "/noticia/", "/api/", "/rio--x/", "/" + "a" * 61 + "/"):
        assert get(stack.renderer, path).status == 404, path
    assert mongo_reads(stack.renderer) == reads + 1  # invalid segments never reach a backend


def test_the_home_links_its_sections_and_describes_itself(stack: StackClients) -> None:
    home = get(stack.site, "/").text
    assert '<a class="section" href="/rio/">rio</a>' in home
    assert '<meta name="description" content="As últimas notícias de' in home
    assert '<meta property="og:type" content="website">' in home


def test_the_box_on_a_cached_page_shows_a_new_article_without_refetching_the_page(
    make_stack: Callable[..., StackClients],
) -> None:
    s = make_stack()
    varnish = s.server("varnish")
    section = section_of_its_own()
    cached = [unique_slug("em-cache") for _ in range(30)]
    for slug in cached:
        s.add_article(slug, section=section)
    for slug in cached:
        page = get(s.site, f"/noticia/{slug}.ghtml")
        assert page.status == 200 and box(page.text), "the box is assembled into the page"
    assert get(s.site, f"/noticia/{cached[0]}.ghtml").headers["X-Cache"] == "HIT"
    get(s.site, "/")
    get(s.site, f"/{section}/")
    before = varnish_counters(varnish)["MAIN.backend_req"]

    news = unique_slug("urgente")
    assert put(s.renderer, news, article("Acaba de sair", section=section)).status == 201
    wait_until(lambda: "Acaba de sair" in box(get(s.site, f"/noticia/{cached[0]}.ghtml").text), timeout=3)
    page = get(s.site, f"/noticia/{cached[0]}.ghtml")
    assert page.headers["X-Cache"] == "HIT"  # the article page's own object was not refetched
    # Every cached page now shows the new box; the home and the front list the article.
    for slug in cached:
        assert "Acaba de sair" in box(get(s.site, f"/noticia/{slug}.ghtml").text)
    wait_until(lambda: "Acaba de sair" in get(s.site, "/").text, timeout=3)
    wait_until(lambda: "Acaba de sair" in get(s.site, f"/{section}/").text, timeout=3)
    # Four objects refetched at most (the box, the home, the front, and a soft purge's extra
    # revalidation), whatever the number of cached article pages: 30 here.
    fetched = varnish_counters(varnish)["MAIN.backend_req"] - before
    assert 1 <= fetched <= 4, fetched


def test_a_failing_box_never_fails_the_page(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack()
    slug = unique_slug("sem-caixa")
    s.add_article(slug)
    assert get(s.renderer, f"/noticia/{slug}.ghtml").status == 200  # in Redis; the box is not
    s.server("ferretdb").kill()
    page = get(s.site, f"/noticia/{slug}.ghtml")
    assert page.status == 200
    assert "<h1>" in page.text and box(page.text) == [] and "esi:include" not in page.text


def test_fronts_and_the_box_serve_stale_when_mongodb_is_down(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish=False)
    s.add_article(unique_slug("antes"), section="rio", title="Antes da pane")
    for path in ("/rio/", "/_fragment/latest"):
        assert "Antes da pane" in get(s.renderer, path).text
    expire_records(s.redis, "@section:rio", "@fragment:latest")  # only the last good copies left
    s.server("ferretdb").kill()
    for path in ("/rio/", "/_fragment/latest"):
        resp = get(s.renderer, path)
        assert resp.status == 200 and resp.headers["X-Tier"] == "stale", path
        assert "Antes da pane" in resp.text


def test_the_renderer_alone_serves_a_whole_article_but_the_box(stack: StackClients) -> None:
    slug = unique_slug("direto")
    stack.add_article(slug, title="Completa sem o Varnish", image_url="https://example.org/a.jpg")
    direct = get(stack.renderer, f"/noticia/{slug}.ghtml")
    assert "<h1>Completa sem o Varnish</h1>" in direct.text and "</html>" in direct.text
    assert LATEST_BOX_INCLUDE in direct.text and box(direct.text) == []
    assert direct.headers["Surrogate-Control"] == 'content="ESI/1.0"'
    assert get(stack.renderer, "/").headers["Surrogate-Control"] is None


def test_the_lead_image_has_its_text_alternative(stack: StackClients) -> None:
    slug = unique_slug("imagem")
    payload = article(image_url="https://example.org/foto.jpg", image_alt="Rua alagada", image_caption="Foto: Ana")
    assert put(stack.renderer, slug, payload).status == 201
    html = get(stack.site, f"/noticia/{slug}.ghtml").text
    assert '<img src="https://example.org/foto.jpg" alt="Rua alagada">' in html
    assert "<figcaption>Foto: Ana</figcaption>" in html


def test_a_front_and_an_assembled_article_are_valid_html(stack: StackClients) -> None:
    stack.add_article(unique_slug(), section="rio")  # published now: a time with microseconds
    stack.redis.delete("page:@section:rio")
    pages = {
        "front.html": get(stack.site, "/rio/").body,
        "home.html": get(stack.site, "/").body,
        "article.html": get(stack.site, "/noticia/tiroteio-deixa-um-morto-e-feridos.ghtml").body,
    }
    assert b'<aside class="latest"' in pages["article.html"]
    assert html_errors(pages) == []
