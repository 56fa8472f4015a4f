"""Section fronts and the "latest news" box (put into article pages by the renderer) through real
Varnish and renderer."""

from __future__ import annotations

import email.utils
import json
import re
import time
from typing import Callable

from devstack.samples import article_document, outdate_listings
from tests.conftest import StackClients
from tests.helpers import (
    expire_records,
    get,
    html_errors,
    metric,
    mongo_reads,
    request,
    section_of_its_own,
    unique_slug,
    wait_until,
)
from tests.renderer.test_publish import AUTH, article, put


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
    assert '<a class="section" href="/rio/">Rio de Janeiro</a>' in home
    assert '<meta name="description" content="As últimas notícias de' in home
    assert '<meta property="og:type" content="website">' in home


def test_a_publish_shows_in_the_box_of_cached_pages_within_the_edge_ttl_and_grace(
    make_stack: Callable[..., StackClients],
) -> None:
    # Edge TTL 2 s and 2 s of stale-while-revalidate: the defaults' 10 + 10 s, shortened.
    s = make_stack(SHARED_MAX_AGE="2", STALE_WHILE_REVALIDATE="2")
    section = section_of_its_own()
    cached = [unique_slug("em-cache") for _ in range(10)]
    for slug in cached:
        assert put(s.renderer, slug, article(f"Em cache {slug}", section=section)).status in (201, 202)
    for slug in cached:
        page = get(s.site, f"/noticia/{slug}.ghtml")
        assert page.status == 200 and box(page.text), "the box is in the page"
    reads = mongo_reads(s.renderer)

    news = unique_slug("urgente")
    assert put(s.renderer, news, article("Acaba de sair", section=section)).status in (201, 202)
    # The renderer's copy of the box follows the publish at once (pub/sub)...
    assert "Acaba de sair" in box(get(s.renderer, f"/noticia/{cached[0]}.ghtml").text)
    # ... and every page cached at the edge shows it once its TTL and grace have passed.
    # (The bound is TTL + grace = 4 s here; the wait allows for a noisy machine.)
    for slug in cached:
        wait_until(lambda slug=slug: "Acaba de sair" in box(get(s.site, f"/noticia/{slug}.ghtml").text), timeout=10)
    # The pages came from Redis: the publisher rendered the box, nobody read MongoDB for a page.
    assert mongo_reads(s.renderer) - reads <= 3  # the publish's own listing renders


def test_the_box_is_read_again_without_a_publish_within_its_refresh(make_stack: Callable[..., StackClients]) -> None:
    # Written behind the API's back (no announcement): each process reads the box again every
    # LATEST_BOX_REFRESH seconds anyway.
    s = make_stack(varnish=False, LATEST_BOX_REFRESH="1")
    slug = unique_slug("lida")
    s.add_article(slug)
    assert "Sem anúncio" not in box(get(s.renderer, f"/noticia/{slug}.ghtml").text)
    s.add_article(unique_slug("silenciosa"), title="Sem anúncio")

    def box_shows_it() -> bool:
        # The box's record is dropped each time (a box read at start may write it back late).
        s.redis.delete("page:@fragment:latest")
        return "Sem anúncio" in box(get(s.renderer, f"/noticia/{slug}.ghtml").text)

    wait_until(box_shows_it, timeout=10, interval=0.5)


def test_a_failing_box_never_fails_the_page(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack()
    slug = unique_slug("sem-caixa")
    s.add_article(slug)
    assert get(s.renderer, f"/noticia/{slug}.ghtml").status == 200  # in Redis; the box is not
    s.server("ferretdb").kill()
    page = get(s.site, f"/noticia/{slug}.ghtml")
    assert page.status == 200
    assert "<h1>" in page.text and box(page.text) == [] and "pagecache:latest-news" not in page.text


def test_fronts_and_the_box_serve_stale_when_mongodb_is_down(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish=False)
    # Published through the API: the publisher stores the front and the box under a new
    # generation, which the box read at start (before the article) can't overwrite.
    assert put(s.renderer, unique_slug("antes"), article("Antes da pane", section="rio")).status == 201
    for path in ("/rio/", "/_fragment/latest"):
        assert "Antes da pane" in get(s.renderer, path).text
    expire_records(s.redis, "@section:rio", "@fragment:latest")  # only the last good copies left
    s.server("ferretdb").kill()
    for path in ("/rio/", "/_fragment/latest"):
        resp = get(s.renderer, path)
        assert resp.status == 200 and resp.headers["X-Tier"] == "stale", path
        assert "Antes da pane" in resp.text


def test_the_renderer_serves_the_whole_article_with_its_box(stack: StackClients) -> None:
    slug = unique_slug("direto")
    stack.add_article(slug, title="Completa sem o Varnish", image_url="https://example.org/a.jpg")
    # The sample articles were loaded after the renderer read its box: within LATEST_BOX_REFRESH.
    direct = wait_until(lambda: (r := get(stack.renderer, f"/noticia/{slug}.ghtml")) and box(r.text) and r)
    assert "<h1>Completa sem o Varnish</h1>" in direct.text and "</html>" in direct.text
    assert "pagecache:latest-news" not in direct.text
    assert "ESI" not in direct.headers["Surrogate-Control"]  # the CDN's lifetime, no assembly asked
    # Through Varnish, the same bytes: nothing is assembled at the edge.
    assert get(stack.site, f"/noticia/{slug}.ghtml").body == get(stack.renderer, f"/noticia/{slug}.ghtml").body


def test_the_lead_image_has_its_text_alternative_and_keeps_its_space(stack: StackClients) -> None:
    slug = unique_slug("imagem")
    image = {"image_url": "https://example.org/foto.jpg", "image_width": 1200, "image_height": 675}
    payload = article(**image, image_alt="Rua alagada", image_caption="Foto: Ana")
    without_size = put(stack.renderer, unique_slug("sem-medidas"), article(image_url=image["image_url"]))
    assert without_size.status == 400
    assert "missing: image_width, image_height, image_alt" in without_size.text
    assert put(stack.renderer, slug, payload).status == 201
    html = get(stack.site, f"/noticia/{slug}.ghtml").text
    img = '<img src="https://example.org/foto.jpg" alt="Rua alagada" width="1200" height="675">'
    assert img in html
    assert "<figcaption>Foto: Ana</figcaption>" in html
    assert '<meta property="og:image:width" content="1200">' in html


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


def test_a_listing_changed_by_a_title_edit_or_a_takedown_is_never_a_304(stack: StackClients) -> None:
    section = section_of_its_own()
    slug = unique_slug("corrigida")
    newest = {"section": section, "published_at": "2100-01-01T00:00:00Z"}  # first on the home too
    assert put(stack.renderer, slug, article("Título original", **newest)).status in (201, 202)
    since = {path: get(stack.renderer, path).headers["Last-Modified"] for path in (f"/{section}/", "/")}
    time.sleep(1.1)  # HTTP dates count whole seconds
    # A title edit keeps the newest publication time: the listings' validators still move.
    assert put(stack.renderer, slug, article("Título corrigido", **newest)).status in (200, 202)
    for path, date in since.items():
        edited = get(stack.renderer, path, {"If-Modified-Since": date})
        assert edited.status == 200 and "Título corrigido" in edited.text, path
    since = get(stack.renderer, "/").headers["Last-Modified"]
    time.sleep(1.1)
    # A takedown makes the home's newest article an older one: its Last-Modified still moves on.
    assert request(stack.renderer, "DELETE", f"/api/articles/{slug}", None, AUTH).status in (200, 202)
    home = get(stack.renderer, "/", {"If-Modified-Since": since})
    assert home.status == 200 and "Título corrigido" not in home.text


def test_a_page_dated_in_the_future_says_it_was_modified_no_later_than_now(stack: StackClients) -> None:
    # An article dated ahead (an embargo, a wrong clock) must not date its pages ahead: a client
    # revalidating with that date would get 200s for ever (Varnish ignores an If-Modified-Since
    # in the future, RFC 9110 §13.1.3), and RFC 9110 §8.8.2.1 forbids it.
    section, slug = section_of_its_own(), unique_slug("adiantada")
    stack.add_article(slug, section=section, published_at="2099-03-01T12:00:00Z")
    for path in (f"/{section}/", f"/noticia/{slug}.ghtml"):
        page = get(stack.site, path)
        modified = email.utils.parsedate_to_datetime(page.headers["Last-Modified"])
        assert modified <= email.utils.parsedate_to_datetime(page.headers["Date"]), path
        assert get(stack.site, path, {"If-Modified-Since": page.headers["Last-Modified"]}).status == 304, path


def test_an_article_no_teaser_can_show_is_left_out_not_the_listings(make_stack: Callable[..., StackClients]) -> None:
    # Written behind the API's back (a bulk import, a hand edit in the database): documents that a
    # teaser cannot show. Each listing that holds one must still answer, with its validators, and
    # without it (before: the home, the front and the box all failed, 503 with no validators).
    s = make_stack(LATEST_BOX_REFRESH="1")
    section = section_of_its_own()
    readable = unique_slug("legivel")
    s.add_article(readable, section=section, title="Legível", published_at="2099-03-01T09:00:00Z")
    elsewhere = unique_slug("outra")  # a page whose box shows "Legível" (a page leaves itself out)
    s.add_article(elsewhere, section=section, title="Outra", published_at="2099-02-01T09:00:00Z")
    newer = "2099-03-01T10:00"
    untitled = article_document({"slug": unique_slug("sem-titulo"), "section": section, "published_at": newer})
    undated = {**untitled, "_id": unique_slug("sem-data"), "title": "Sem data", "published_at": "ontem"}
    undated["slug"] = undated["_id"]
    s.articles.insert_many([untitled, undated])
    outdate_listings(s.articles.database)
    left_out = metric(s.renderer, "pagecache_articles_left_out_total")
    for path in ("/", f"/{section}/"):
        page = get(s.site, path)
        assert page.status == 200, (path, page.status, page.headers["Cache-Status"])
        assert page.headers["ETag"] and page.headers["Last-Modified"], dict(page.headers)
        assert titles(page.text)[0] == "Legível" and "Sem data" not in titles(page.text), path

    def box_shows_it() -> bool:
        # The box is read again every LATEST_BOX_REFRESH (no publish announced these articles).
        s.redis.delete("page:@fragment:latest")
        return box(get(s.renderer, f"/noticia/{elsewhere}.ghtml").text)[:1] == ["Legível"]

    wait_until(box_shows_it, timeout=10, interval=0.5)
    assert metric(s.renderer, "pagecache_articles_left_out_total") - left_out >= 2
