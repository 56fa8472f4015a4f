"""Nothing an editor writes is executed anywhere but as text: inside ``<script>`` (JSON-LD) every
value escapes ``<``, ``>`` and ``&``; the page stays valid HTML and its JSON-LD parses back to the
exact input, whatever the title, subtitle, authors, caption or image alt hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from renderer import sanitise
from renderer.render import PageRenderer
from tests.helpers import html_errors

NASTY = ["<esi:include src='/metrics'/>", "<!--esi x -->", "</script>", "]]>", "<!--", "-->", "&amp;", "<b>", "'\""]
text = st.lists(st.sampled_from(NASTY) | st.text(min_size=1, max_size=20), min_size=1, max_size=6).map("".join)
# What the API accepts: not blank, valid Unicode (a lone surrogate is refused with a 400 before
# anything is stored; BSON could not store one either).
valid = text.filter(lambda t: t.strip() != "" and not any(0xD800 <= ord(c) <= 0xDFFF for c in t)).map(str.strip)
RENDERER = PageRenderer("pagecache news", "https://example.org")


def doc(title: str, subtitle: str, author: str, caption: str, alt: str) -> dict[str, Any]:
    return {
        "slug": "teste",
        "title": title,
        "subtitle": subtitle,
        "section": "rio",
        "body_html": "<p>Texto</p>",
        "authors": [author],
        "published_at": datetime(2026, 11, 29, 10, 0, tzinfo=UTC),
        "image_url": "https://example.org/a.jpg",
        "image_caption": caption,
        "image_alt": alt,
        "version": 1,
    }


class Scripts(HTMLParser):
    """The text of every ``<script>`` element, as a browser's tokenizer splits it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.blocks: list[str] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self._inside = True
            self.blocks.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._inside = False

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.blocks[-1] += data


@settings(max_examples=200, deadline=None)
@given(title=valid, subtitle=valid, author=valid, caption=valid, alt=valid)
def test_json_ld_parses_back_to_exactly_what_the_editor_wrote(
    title: str, subtitle: str, author: str, caption: str, alt: str
) -> None:
    html = RENDERER.article(doc(title, subtitle, author, caption, alt)).html.decode()
    parser = Scripts()
    parser.feed(html)
    [block] = parser.blocks
    assert "<" not in block and ">" not in block and "&" not in block
    data = json.loads(block)
    assert data["headline"] == title and data["description"] == subtitle
    assert data["author"] == [{"@type": "Person", "name": author}]


def test_lone_surrogates_in_json_ld_are_escaped_not_broken() -> None:
    from renderer.render import json_ld

    value = "a\ud800b\udfffc"
    assert json.loads(json_ld({"headline": value}))["headline"] == value


def test_pages_with_hostile_text_are_valid_html() -> None:
    pages = {}
    for n, nasty in enumerate(NASTY):
        words = f"Manchete {nasty} fim"
        pages[f"page{n}.html"] = RENDERER.article(doc(words, words, words, words, words)).html
    assert html_errors(pages) == []


def test_a_body_sanitised_at_publish_is_not_sanitised_again_and_any_other_body_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = '<p>Ok</p><script>alert(1)</script><a href="https://example.org/">fonte</a>'
    clean_now = sanitise.sanitise_html
    clean = clean_now(raw)
    calls: list[str] = []

    def counted(html: str) -> str:
        calls.append(html)
        return clean_now(html)

    monkeypatch.setattr(sanitise, "sanitise_html", counted)
    base = doc("Título", "Linha fina", "Redação", "Legenda", "Descrição")
    published = {**base, "body_html": clean, sanitise.SANITISED_BY_FIELD: sanitise.SANITISED_BY}
    page = RENDERER.article(published).html.decode()
    assert calls == [] and clean in page
    # Written straight into MongoDB (no mark), or under another allow-list: sanitised as it renders.
    for stored in ({**base, "body_html": raw}, {**base, "body_html": raw, sanitise.SANITISED_BY_FIELD: "nh3 0.1 old"}):
        page = RENDERER.article(stored).html.decode()
        assert "alert(1)" not in page and clean in page
    assert calls == [raw, raw]
