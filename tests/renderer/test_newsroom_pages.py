"""Pages a newsroom would ship: sections by their names, dates in the readers' time zone, lead
images that keep their space. Pure rendering and validation: no server needed."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from renderer.articles import ANY_PUBLIC_IMAGE, ArticleRules, Refused, parse_article
from renderer.render import PageRenderer
from renderer.sections import G1_SECTIONS, Sections

RENDERER = PageRenderer("g1 teste", "https://g1.example")


def doc(section: str = "sao-paulo", **fields: Any) -> dict[str, Any]:
    published = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    return {
        "slug": f"nota-{section}",
        "title": f"Nota de {section}",
        "section": section,
        "body_html": "<p>Texto</p>",
        "published_at": published,
        "updated_at": published,
        "version": 1,
        **fields,
    }


def json_ld(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/ld\+json">(.*?)</script>', html, re.S)
    assert found, html
    return dict(json.loads(found.group(1)))


def test_sections_show_by_their_names_everywhere_a_reader_sees_one() -> None:
    article = RENDERER.article(doc("sao-paulo")).html.decode()
    assert '<a class="section" href="/sao-paulo/">São Paulo</a>' in article
    assert '<meta property="article:section" content="São Paulo">' in article
    assert json_ld(article)["articleSection"] == "São Paulo"

    front = RENDERER.section_front("educacao", [doc("educacao")]).html.decode()
    assert "<h1>Educação</h1>" in front and "<title>Educação: últimas notícias | g1 teste</title>" in front
    assert '<meta name="description" content="As últimas notícias de Educação em g1 teste.">' in front
    assert json_ld(front)["name"] == "Educação | g1 teste"

    home = RENDERER.home([doc("saude"), doc("rio"), doc("meio-ambiente"), doc("rio")]).html.decode()
    nav = re.findall(r'<li><a class="section" href="/([a-z-]+)/">([^<]+)</a></li>', home)
    assert nav == [("rio", "Rio de Janeiro"), ("saude", "Saúde"), ("meio-ambiente", "Meio Ambiente")]
    assert "As últimas notícias de g1 teste: Rio de Janeiro, Saúde, Meio Ambiente." in home
    assert "SAUDE" not in home and ">saude<" not in home


def test_an_article_stored_in_a_section_no_longer_declared_still_shows() -> None:
    page = RENDERER.article(doc("caderno-antigo")).html.decode()
    assert '<a class="section" href="/caderno-antigo/">Caderno antigo</a>' in page


def test_the_feeds_name_the_section_too() -> None:
    from renderer.feeds import FeedRenderer

    feed = FeedRenderer(RENDERER).rss("pop-arte", [doc("pop-arte")]).html.decode()
    assert "<title>Pop &amp; Arte | g1 teste</title>" in feed and "<category>Pop &amp; Arte</category>" in feed


@pytest.mark.parametrize(
    "entries, wrong",
    [
        (("rio",), "not slug=Name"),
        (("rio=",), "not slug=Name"),
        (("Rio=Rio",), "can't name a section front"),
        (("api=API",), "can't name a section front"),
        (("rio=Rio", "rio=Rio de Janeiro"), "twice"),
        ((), "empty"),
    ],
)
def test_a_wrong_site_sections_setting_says_what_is_wrong(entries: tuple[str, ...], wrong: str) -> None:
    with pytest.raises(ValueError, match=wrong):
        Sections.parse(entries)


def publish(section: str, rules: ArticleRules = ANY_PUBLIC_IMAGE, **fields: Any) -> dict[str, Any]:
    body = json.dumps({"title": "Manchete", "section": section, "body_html": "<p>x</p>", **fields}).encode()
    return parse_article("uma-noticia", body, "application/json", rules).fields


def test_a_publish_to_an_undeclared_section_is_refused_naming_the_declared_ones() -> None:
    assert publish("politica")["section"] == "politica"
    with pytest.raises(Refused) as refused:
        publish("politca")
    assert refused.value.status == 400
    assert "'politca' is not one of the site's sections (rio, sao-paulo, politica," in refused.value.message
    mine = ArticleRules(sections=Sections.parse(["agro=Agronegócio"]))
    assert publish("agro", mine)["section"] == "agro"
    with pytest.raises(Refused):
        publish("rio", mine)


def test_dates_are_shown_in_the_site_time_zone_with_the_offset_where_machines_read_them() -> None:
    updated = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
    page = RENDERER.article(doc(updated_at=updated, version=2)).html.decode()
    assert '<time datetime="2026-11-24T09:00:00-03:00">24/11/2026 09h00</time>' in page
    assert 'Atualizado em <time datetime="2026-11-24T12:30:00-03:00">24/11/2026 12h30</time>' in page
    assert '<meta property="article:published_time" content="2026-11-24T09:00:00-03:00">' in page
    assert '<meta property="article:modified_time" content="2026-11-24T12:30:00-03:00">' in page
    assert json_ld(page)["datePublished"] == "2026-11-24T09:00:00-03:00"
    assert json_ld(page)["dateModified"] == "2026-11-24T12:30:00-03:00"
    assert "UTC" not in page

    unchanged = RENDERER.article(doc()).html.decode()
    assert "Atualizado" not in unchanged
    # A first publish is written a moment after the time the newsroom gives it: not an update.
    first = RENDERER.article(doc(updated_at=datetime(2026, 11, 24, 12, 0, 3, tzinfo=UTC))).html.decode()
    assert "Atualizado" not in first

    front = RENDERER.section_front("rio", [doc("rio")]).html.decode()
    assert '<time datetime="2026-11-24T09:00:00-03:00">24/11/2026 09h00</time>' in front

    lisbon = PageRenderer("g1 teste", "https://g1.example", timezone=ZoneInfo("Europe/Lisbon"))
    assert '<time datetime="2026-11-24T12:00:00+00:00">24/11/2026 12h00</time>' in lisbon.article(doc()).html.decode()


def test_the_lead_image_has_its_size_and_text_and_both_come_with_it() -> None:
    image = {"image_url": "https://s2.glbimg.com/a.jpg", "image_width": 1200, "image_height": 675, "image_alt": "Rua"}
    page = RENDERER.article(doc(**publish("rio", **image))).html.decode()
    assert '<img src="https://s2.glbimg.com/a.jpg" alt="Rua" width="1200" height="675">' in page
    assert json_ld(page)["image"] == [
        {"@type": "ImageObject", "url": "https://s2.glbimg.com/a.jpg", "width": 1200, "height": 675}
    ]
    for spoiled in ({"image_width": 0}, {"image_height": 1.5}, {"image_width": "1200"}, {"image_width": True}):
        with pytest.raises(Refused) as refused:
            publish("rio", **{**image, **spoiled})
        assert "whole number of pixels" in refused.value.message
    with pytest.raises(Refused) as refused:
        publish("rio", image_url=image["image_url"], image_alt="Rua")
    assert refused.value.message.endswith("missing: image_width, image_height")


def test_the_registry_is_in_the_navigation_order_given() -> None:
    assert list(G1_SECTIONS.names)[:3] == ["rio", "sao-paulo", "politica"]
    assert G1_SECTIONS.in_order(["zzz", "economia", "rio", "aaa"]) == ["rio", "economia", "aaa", "zzz"]


def test_last_modified_is_never_in_the_future() -> None:
    # An article stored without updated_at (written behind the API) and dated ahead by its editor.
    ahead = doc(published_at=datetime(2100, 1, 1, tzinfo=UTC), updated_at=None)
    page = RENDERER.article(ahead)
    assert page.last_modified <= page.rendered_at
