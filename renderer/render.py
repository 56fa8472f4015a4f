"""Article and home page rendering: sanitised article HTML into Tornado templates."""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Iterable

import nh3
from tornado.template import Loader

from renderer import contract
from renderer.pages import RenderedPage

TEMPLATE_DIR = os.path.join(os.path.dirname(__file__), "templates")

# What an article body may hold; everything else (scripts, handlers, javascript: URLs) goes.
ALLOWED_TAGS = {
    "p", "br", "h2", "h3", "h4", "strong", "em", "b", "i", "u", "a", "ul", "ol", "li",
    "blockquote", "figure", "figcaption", "img", "cite", "q", "hr", "span", "sub", "sup",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "width", "height"}}


def sanitise_html(html: str) -> str:
    """Article HTML from the CMS made safe to embed (no stored XSS)."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return datetime.now(UTC)


def _json_ld(data: dict[str, Any]) -> str:
    # "</" inside a <script> block would end it early.
    return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")


def _etag(version: int, html: bytes) -> str:
    return f'"{version}-{hashlib.sha1(html).hexdigest()[:16]}"'


class PageRenderer:
    """Turns article documents into ``RenderedPage`` values."""

    def __init__(self, site_name: str, site_url: str) -> None:
        self.site_name = site_name
        self.site_url = site_url.rstrip("/")
        self._loader = Loader(TEMPLATE_DIR)

    def article_url(self, slug: str) -> str:
        """Canonical URL of an article page."""
        return f"{self.site_url}/noticia/{slug}.ghtml"

    def article(self, doc: dict[str, Any]) -> RenderedPage:
        """The page of a published article."""
        slug = doc["slug"]
        published = _as_datetime(doc.get("published_at"))
        updated = _as_datetime(doc.get("updated_at") or doc.get("published_at"))
        authors = list(doc.get("authors") or [])
        url = self.article_url(slug)
        json_ld = {
            "@context": "https://schema.org",
            "@type": "NewsArticle",
            "headline": doc["title"],
            "description": doc.get("subtitle") or "",
            "datePublished": published.isoformat(),
            "dateModified": updated.isoformat(),
            "articleSection": doc["section"],
            "author": [{"@type": "Person", "name": name} for name in authors],
            "mainEntityOfPage": url,
            "publisher": {"@type": "Organization", "name": self.site_name},
        }
        if doc.get("image_url"):
            json_ld["image"] = [doc["image_url"]]
        html = self._loader.load("article.html").generate(
            site_name=self.site_name,
            article=doc,
            body_html=sanitise_html(doc["body_html"]),
            authors=authors,
            published=published,
            updated=updated,
            canonical_url=url,
            json_ld=_json_ld(json_ld),
        )
        # Only what the page shows: the article (DESIGN: a publish purges only what changed).
        keys = contract.article_surrogate_key(slug)
        etag = _etag(int(doc.get("version", 1)), html)
        return RenderedPage(200, html, etag, updated.timestamp(), keys, time.time())

    def home(self, docs: Iterable[dict[str, Any]]) -> RenderedPage:
        """The home page listing ``docs`` (newest first)."""
        articles = [
            dict(doc, published=_as_datetime(doc.get("published_at")), url=self.article_url(doc["slug"]))
            for doc in docs
        ]
        html = self._loader.load("home.html").generate(
            site_name=self.site_name, articles=articles, canonical_url=self.site_url + "/"
        )
        newest = max((a["published"].timestamp() for a in articles), default=0.0)
        return RenderedPage(200, html, _etag(len(articles), html), newest, contract.HOME_SURROGATE_KEY, time.time())

    @cached_property
    def generic_not_found(self) -> RenderedPage:
        """The 404 page for paths that are no article at all, rendered once: scanners and typos
        are answered without a template run."""
        return self.not_found(None)

    def not_found(self, slug: str | None) -> RenderedPage:
        """The 404 page; for a valid slug it carries the article's xkey so a publish purges it."""
        html = self._loader.load("404.html").generate(site_name=self.site_name, canonical_url=self.site_url + "/")
        keys = contract.article_surrogate_key(slug) if slug else ""
        return RenderedPage(404, html, _etag(0, html), 0.0, keys, time.time())
