"""RSS per section and for the home, the Google News sitemap and the sitemap of fronts: read by
real clients (feedparser, an XSD validator), served and purged like the fronts, exact on a
takedown at Varnish."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
from lxml import etree

from renderer.feeds import FeedRenderer
from renderer.render import PageRenderer
from tests.conftest import StackClients
from tests.helpers import get, request, section_of_its_own, unique_slug
from tests.renderer.test_publish import AUTH, article, put

SITEMAP_XSD = etree.XMLSchema(etree.parse(str(Path(__file__).parent.parent / "schemas" / "sitemap.xsd")))
NEWS = "{http://www.google.com/schemas/sitemap-news/0.9}"
SITEMAP = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
HOSTILE = "Preço & <b>lucro</b> ]]> sobe\x01\x0b\ud800 10%"
SHOWN = "Preço & <b>lucro</b> ]]> sobe 10%"  # what XML can hold of it, as a reader reads it


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def doc(slug: str, title: str, published_at: str, section: str = "rio") -> dict[str, object]:
    authors = ["Ana & Bia", "\x00"]
    return {"slug": slug, "title": title, "subtitle": "Linha ]]> fina\x02", "section": section,
            "authors": authors, "published_at": published_at}  # fmt: skip


def feeds() -> FeedRenderer:
    return FeedRenderer(PageRenderer("Jornal & <Cia>", "https://g1.example"))


def news_elements_hold_googles_format(root: etree._Element) -> list[str]:
    """The news elements Google's format requires, checked by hand (its XSD is not at hand here):
    publication name and language, a W3C date, a title. Returns the titles. Then the news
    elements are taken out, and what is left is validated against the sitemaps.org schema."""
    titles = []
    for url in root.iter(f"{SITEMAP}url"):
        [news] = url.findall(f"{NEWS}news")
        assert [child.tag for child in news] == [f"{NEWS}publication", f"{NEWS}publication_date", f"{NEWS}title"]
        assert news.findtext(f"{NEWS}publication/{NEWS}name") and news.findtext(f"{NEWS}publication/{NEWS}language")
        datetime.fromisoformat(news.findtext(f"{NEWS}publication_date") or "")
        titles.append(news.findtext(f"{NEWS}title") or "")
        url.remove(news)
    SITEMAP_XSD.assertValid(root)
    return titles


def test_editors_text_never_breaks_a_feed_or_a_sitemap() -> None:
    docs = [doc("um", HOSTILE, iso(-timedelta(hours=1))), doc("dois", "Antiga", iso(-timedelta(hours=49)))]
    rss = feeds().rss("rio", docs, version=7)
    parsed = feedparser.parse(rss.html)
    assert not parsed.bozo, parsed.get("bozo_exception")
    channel = etree.fromstring(rss.html).find("channel")
    assert channel is not None
    assert [item.findtext("title") for item in channel.iter("item")] == [SHOWN, "Antiga"]
    assert channel.findtext("item/description") == "Linha ]]> fina"
    assert [e.text for e in channel.iter("{http://purl.org/dc/elements/1.1/}creator")] == ["Ana & Bia"] * 2
    assert channel.findtext("item/guid") == "https://g1.example/noticia/um.ghtml"
    assert parsed.feed.title == "Rio de Janeiro | Jornal & <Cia>" and parsed.entries[0].link.endswith(
        "/noticia/um.ghtml"
    )
    atom_self = channel.find("{http://www.w3.org/2005/Atom}link")
    assert atom_self is not None and atom_self.get("href") == "https://g1.example/rio/rss.xml"

    news = feeds().news_sitemap(docs, version=7)
    assert news_elements_hold_googles_format(etree.fromstring(news.html)) == [SHOWN]  # the 49 h old one is out
    index = etree.fromstring(feeds().sitemap(docs, version=7).html)
    SITEMAP_XSD.assertValid(index)
    assert [loc.text for loc in index.iter(f"{SITEMAP}loc")] == ["https://g1.example/", "https://g1.example/rio/"]


def test_a_section_without_articles_has_a_404_feed_not_an_empty_one() -> None:
    assert feeds().rss("vazia", [], version=3).status == 404
    assert feeds().news_sitemap([doc("velha", "Velha", iso(-timedelta(days=3)))]).status == 404


def test_feeds_and_sitemaps_are_exact_at_the_edge_when_a_publish_or_takedown_answers(stack: StackClients) -> None:
    section, slug = section_of_its_own(), unique_slug()
    url = f"/noticia/{slug}.ghtml"
    feed_path = f"/{section}/rss.xml"
    # Before: the section has no feed (cached at the edge as a 404, as its front would be).
    assert get(stack.site, feed_path).status == 404
    # Dated after every other test's article, so the home's feed (its 30 newest) shows it.
    payload = article("Nota & <feed>", section=section, published_at="2100-01-01T00:00:00Z")
    paths = (feed_path, "/rss.xml", "/sitemap-news.xml")
    for path in paths:  # each cached at the edge before the publish
        get(stack.site, path)
    assert put(stack.renderer, slug, payload).status == 201
    for path in paths:
        resp = get(stack.site, path)
        assert resp.status == 200 and url in resp.text, (path, resp.status)
    feed = get(stack.site, feed_path)
    assert feed.headers["X-Cache"] == "HIT" and feed.headers["Content-Type"] == "application/rss+xml; charset=utf-8"
    assert get(stack.site, "/sitemap-news.xml").headers["Content-Type"] == "application/xml; charset=utf-8"
    assert f"/{section}/" in get(stack.site, "/sitemap.xml").text
    # Validators: a 304 for the same copy.
    again = get(stack.site, feed_path, {"If-None-Match": feed.headers["ETag"]})
    assert again.status == 304
    entry = feedparser.parse(feed.body).entries[0]
    assert entry.title == "Nota & <feed>"

    resp = request(stack.renderer, "DELETE", f"/api/articles/{slug}", None, AUTH)
    assert resp.status == 200 and json.loads(resp.body)["pending"] == [], resp.text
    assert get(stack.site, feed_path).status == 404  # its only article is gone
    for path in paths[1:]:
        resp = get(stack.site, path)
        assert url not in resp.text, (path, resp.status)
    assert f"/{section}/" not in get(stack.site, "/sitemap.xml").text
    # What made it so: the feed carries the section's key, which every publish and takedown purges.
    assert get(stack.renderer, feed_path).headers["xkey"] == f"missing-section-{section}"
    assert get(stack.renderer, "/rss.xml").headers["xkey"] == "home"


def test_robots_txt_names_the_sitemaps(stack: StackClients) -> None:
    robots = get(stack.site, "/robots.txt").text
    lines = [line for line in robots.splitlines() if line.startswith("Sitemap: ")]
    assert [line.rsplit("/", 1)[1] for line in lines] == ["sitemap.xml", "sitemap-news.xml"]
    assert all(line.split(" ", 1)[1].startswith("http") for line in lines)
