"""Article and home page rendering: sanitised article HTML into Tornado templates."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Callable, Iterable
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

from tornado.template import Loader

from renderer import contract
from renderer.rendered_page import RenderedPage
from renderer.sanitise import safe_body
from renderer.sections import G1_SECTIONS, Sections

log = logging.getLogger("pagecache.render")

TEMPLATE_DIR = os.path.join(os.path.dirname(__file__), "templates")
# Where an article page takes the "latest news" box, which the renderer puts there as it answers
# (renderer/latest_box.py). Only this template writes it: editors' HTML is sanitised (comments
# removed) and every other value is escaped.
LATEST_BOX_SLOT = b"<!--pagecache:latest-news-->"
# SITE_TIMEZONE's default: where the site's readers live.
BRASILIA = ZoneInfo("America/Sao_Paulo")


class RenderFailed(Exception):
    """The template failed on a document MongoDB returned: neither MongoDB's fault nor Redis's."""


def render_or_fail(render: Callable[..., RenderedPage], *args: Any, **kwargs: Any) -> RenderedPage:
    """``render(*args, **kwargs)``, any exception of the template's turned into ``RenderFailed``."""
    try:
        return render(*args, **kwargs)
    except Exception as exc:
        raise RenderFailed(repr(exc)) from exc


def as_datetime(value: Any) -> datetime:
    """A stored date (a datetime, naive meaning UTC, or ISO 8601 text) as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return datetime.now(UTC)


def json_ld(data: dict[str, Any]) -> str:
    """``data`` as JSON to put inside ``<script>``: no ``<``, ``>`` or ``&`` in it (escaped as
    ``\\u003c``, ``\\u003e``, ``\\u0026``), so nothing an editor wrote can end the block, open a
    comment or be read as markup by anything on the way (Varnish, a CDN, a browser); non-ASCII as
    ``\\uXXXX`` too, so even a lone surrogate parses back exactly."""
    return json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page_etag(version: int, html: bytes) -> str:
    return f'"{version}-{hashlib.sha1(html).hexdigest()[:16]}"'


class PageRenderer:
    """Turns article documents into ``RenderedPage`` values."""

    def __init__(
        self,
        site_name: str,
        site_url: str,
        on_left_out: Callable[[], None] = lambda: None,
        sections: Sections = G1_SECTIONS,
        timezone: ZoneInfo = BRASILIA,
    ) -> None:
        """``on_left_out``: called for each article a listing leaves out (see ``_teasers``);
        ``sections``: their display names; ``timezone``: where the dates pages show are told."""
        self.site_name = site_name
        self.site_url = site_url.rstrip("/")
        self.on_left_out = on_left_out
        self.sections = sections
        self.timezone = timezone
        self._loader = Loader(TEMPLATE_DIR)

    def _generate(self, template: str, **values: Any) -> bytes:
        """``template`` filled with ``values`` and what every page shows: the site's name and the
        sections' names (dates come in already told in the site's time zone)."""
        return self._loader.load(template).generate(site_name=self.site_name, section_name=self.sections.name, **values)

    def local(self, moment: datetime) -> datetime:
        """``moment`` in the site's time zone: what readers see and what machine-readable dates carry
        (with the offset), so a page never shows one time and declares another."""
        return moment.astimezone(self.timezone)

    def article_url(self, slug: str) -> str:
        """Canonical URL of an article page."""
        return f"{self.site_url}/noticia/{slug}.ghtml"

    def article(self, doc: dict[str, Any]) -> RenderedPage:
        """The page of a published article."""
        slug = doc["slug"]
        published = self.local(as_datetime(doc.get("published_at")))
        updated = self.local(as_datetime(doc.get("updated_at") or doc.get("published_at")))
        authors = list(doc.get("authors") or [])
        url = self.article_url(slug)
        linked_data = {
            "@context": "https://schema.org",
            "@type": "NewsArticle",
            "headline": doc["title"],
            "description": doc.get("subtitle") or "",
            "datePublished": published.isoformat(),
            "dateModified": updated.isoformat(),
            "articleSection": self.sections.name(doc["section"]),
            "author": [{"@type": "Person", "name": name} for name in authors],
            "mainEntityOfPage": url,
            "publisher": {"@type": "Organization", "name": self.site_name},
        }
        # The API takes absolute https URLs only; a path (the sample articles, written straight
        # into MongoDB) names an image the site itself serves.
        image_url = urljoin(self.site_url + "/", doc["image_url"]) if doc.get("image_url") else ""
        if image_url:
            image: dict[str, Any] = {"@type": "ImageObject", "url": image_url}
            image.update({name: doc[f"image_{name}"] for name in ("width", "height") if doc.get(f"image_{name}")})
            linked_data["image"] = [image]
        html = self._generate(
            "article.html",
            article=doc,
            body_html=safe_body(doc),
            authors=authors,
            published=published,
            updated=updated,
            canonical_url=url,
            json_ld=json_ld(linked_data),
            latest_box=LATEST_BOX_SLOT.decode(),
            image_url=image_url,
        )
        # Only what the page shows: the article (a publish purges only what changed).
        keys = contract.article_surrogate_key(slug)
        version = int(doc.get("version", 1))
        return RenderedPage(200, html, page_etag(version, html), updated.timestamp(), keys, time.time(), version)

    def _teasers(self, docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return [teaser for teaser, _ in self.teasers_with_docs(docs)]

    def teasers_with_docs(self, docs: Iterable[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """What listings show of ``docs``, each beside its document: a document a teaser can't
        show (written behind the editors' API: no title, a date that is not one) is left out, not
        the whole listing."""
        teasers = []
        for doc in docs:
            try:
                teasers.append((self._teaser(doc), doc))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("article %r left out of a listing: %r", doc.get("slug", doc.get("_id")), exc)
                self.on_left_out()
        return teasers

    def _teaser(self, doc: dict[str, Any]) -> dict[str, Any]:
        slug, title, section = doc["slug"], doc["title"], doc["section"]
        if not all(isinstance(value, str) and value for value in (slug, title, section)):
            raise TypeError("slug, title and section must be text")
        subtitle = doc.get("subtitle")
        return {
            "slug": slug,
            "title": title,
            "section": section,
            "subtitle": subtitle if isinstance(subtitle, str) else "",
            "published": self.local(as_datetime(doc["published_at"])),
            "url": self.article_url(slug),
        }

    def _listing(
        self, template: str, articles: list[dict[str, Any]], keys: str, version: int, **values: Any
    ) -> RenderedPage:
        html = self._generate(template, articles=articles, **values)
        newest = max((a["published"].timestamp() for a in articles), default=0.0)
        return RenderedPage(200, html, page_etag(version, html), newest, keys, time.time(), version)

    def home(self, docs: Iterable[dict[str, Any]], version: int = 0) -> RenderedPage:
        """The home page listing ``docs`` (newest first), with links to the sections they are in."""
        articles = self._teasers(docs)
        sections = self.sections.in_order(a["section"] for a in articles)
        names = ", ".join(self.sections.name(section) for section in sections)
        description = f"As últimas notícias de {self.site_name}: {names}."
        return self._listing(
            "home.html",
            articles,
            contract.HOME_SURROGATE_KEY,
            version,
            sections=sections,
            description=description,
            canonical_url=self.site_url + "/",
        )

    def section_url(self, section: str) -> str:
        """Canonical URL of a section front."""
        return f"{self.site_url}/{section}/"

    def section_front(self, section: str, docs: Iterable[dict[str, Any]], version: int = 0) -> RenderedPage:
        """The front of ``section`` listing ``docs``; the 404 page when it has none (no such section)."""
        articles = self._teasers(docs)
        if not articles:
            return self.not_found_with(contract.missing_section_key(section), version)
        url, name = self.section_url(section), self.sections.name(section)
        linked_data = {
            "@context": "https://schema.org",
            "@type": "CollectionPage",
            "name": f"{name} | {self.site_name}",
            "url": url,
            "mainEntity": {
                "@type": "ItemList",
                "itemListElement": [
                    {"@type": "ListItem", "position": n, "url": a["url"], "name": a["title"]}
                    for n, a in enumerate(articles, start=1)
                ],
            },
        }
        return self._listing(
            "section.html",
            articles,
            contract.section_surrogate_key(section),
            version,
            section=section,
            description=f"As últimas notícias de {name} em {self.site_name}.",
            canonical_url=url,
            json_ld=json_ld(linked_data),
        )

    def latest_box(self, docs: Iterable[dict[str, Any]], version: int = 0) -> RenderedPage:
        """The "latest news" box: an HTML fragment that article pages take, not a page."""
        return self._listing("latest.html", self._teasers(docs), contract.LATEST_SURROGATE_KEY, version)

    @cached_property
    def generic_not_found(self) -> RenderedPage:
        """The 404 page, rendered once: scanners, typos, unknown articles and sections all get it
        without a template run (with their own surrogate key where a publish must purge it)."""
        # No canonical link: one 404 page answers for every URL that names nothing.
        html = self._generate("404.html", canonical_url="")
        return RenderedPage(404, html, page_etag(0, html), 0.0, "", time.time())

    def not_found_with(self, keys: str, version: int = 0) -> RenderedPage:
        """The 404 page carrying ``keys`` (what a publish purges to replace it) and ``version``."""
        return replace(self.generic_not_found, surrogate_keys=keys, rendered_at=time.time(), version=version)

    def not_found(self, slug: str | None, version: int = 0) -> RenderedPage:
        """The 404 page; for a valid slug it carries the article's xkey so a publish purges it.
        ``version``: the takedown's, for an article that was unpublished (0: never existed)."""
        return self.not_found_with(contract.article_surrogate_key(slug) if slug else "", version)
