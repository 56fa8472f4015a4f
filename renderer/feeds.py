"""What readers other than browsers get: RSS 2.0 for the home and each section, the Google News
sitemap (articles of the last 48 hours) and a sitemap of the home and the section fronts, each
rendered from a stored listing like the fronts (renderer/listings.py says which)."""

from __future__ import annotations

import email.utils
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Iterable

from tornado.template import Loader

from renderer import contract
from renderer.render import TEMPLATE_DIR, PageRenderer, page_etag
from renderer.rendered_page import RenderedPage

# What XML 1.0 cannot hold (C0 controls but tab, newline and return; lone surrogates; U+FFFE/F):
# an editor's title with one would make the whole feed unparseable, so it is dropped.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Google News lists articles of the last two days, at most 1,000 per sitemap.
NEWS_WINDOW = timedelta(hours=48)
NEWS_LIMIT = 1000
LANGUAGE = "pt-BR"


def xml_text(value: Any) -> str:
    """``value`` as text XML can hold (escaping is the template's): not text is empty."""
    return _NOT_XML.sub("", value) if isinstance(value, str) else ""


class FeedRenderer:
    """Turns listings into feeds and sitemaps, as ``PageRenderer`` turns them into pages."""

    def __init__(self, pages: PageRenderer) -> None:
        self.pages = pages
        self._loader = Loader(TEMPLATE_DIR, whitespace="oneline")

    def _items(self, docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        items = []
        for teaser, doc in self.pages.teasers_with_docs(docs):
            items.append(
                {
                    "title": xml_text(teaser["title"]),
                    "url": teaser["url"],
                    "section": teaser["section"],
                    "section_name": xml_text(self.pages.sections.name(teaser["section"])),
                    "description": xml_text(teaser["subtitle"]),
                    "authors": [xml_text(name) for name in doc.get("authors") or [] if xml_text(name)],
                    "published": teaser["published"],
                    "pub_date": email.utils.format_datetime(teaser["published"].astimezone(UTC)),
                }
            )
        return items

    def _page(self, template: str, keys: str, version: int, newest: float, **values: Any) -> RenderedPage:
        body = self._loader.load(template).generate(site_name=xml_text(self.pages.site_name), **values)
        return RenderedPage(200, body, page_etag(version, body), newest, keys, time.time(), version)

    def rss(self, section: str | None, docs: Iterable[dict[str, Any]], version: int = 0) -> RenderedPage:
        """The RSS 2.0 feed of the home (``section`` None) or of a section: its newest articles; the
        404 page when there are none (an empty feed is not something to index)."""
        items = self._items(docs)
        if section is None:
            keys, link, self_url = contract.HOME_SURROGATE_KEY, self.pages.site_url + "/", contract.HOME_FEED_PATH
            title = self.pages.site_name
            description = f"As últimas notícias de {self.pages.site_name}."
        else:
            keys, link = contract.section_surrogate_key(section), self.pages.section_url(section)
            self_url = contract.section_feed_path(section)
            name = self.pages.sections.name(section)
            title = f"{name} | {self.pages.site_name}"
            description = f"As últimas notícias de {name} em {self.pages.site_name}."
        if not items:
            missing = contract.missing_section_key(section) if section else contract.HOME_SURROGATE_KEY
            return self.pages.not_found_with(missing, version)
        newest = max(item["published"] for item in items)
        return self._page(
            "rss.xml",
            keys,
            version,
            newest.timestamp(),
            title=xml_text(title),
            link=link,
            self_url=self.pages.site_url + self_url,
            description=xml_text(description),
            language=LANGUAGE,
            last_build=email.utils.format_datetime(newest.astimezone(UTC)),
            items=items,
        )

    def news_sitemap(self, docs: Iterable[dict[str, Any]], version: int = 0, now: float | None = None) -> RenderedPage:
        """Google's news sitemap: the articles published in the last 48 hours (at most 1,000); the
        404 page when there are none (a sitemap holds at least one URL)."""
        since = datetime.fromtimestamp(time.time() if now is None else now, UTC) - NEWS_WINDOW
        items = [item for item in self._items(docs) if item["published"] >= since][:NEWS_LIMIT]
        if not items:
            return self.pages.not_found_with(contract.HOME_SURROGATE_KEY, version)
        newest = max(item["published"] for item in items)
        for item in items:
            item["w3c_date"] = item["published"].isoformat(timespec="seconds")
        return self._page(
            "sitemap-news.xml", contract.HOME_SURROGATE_KEY, version, newest.timestamp(), language="pt", items=items
        )

    def sitemap(self, docs: Iterable[dict[str, Any]], version: int = 0) -> RenderedPage:
        """The home and each section front with a listed article, with when its newest was published."""
        newest: dict[str, datetime] = {}
        for item in self._items(docs):
            for path in ("/", f"/{item['section']}/"):
                newest[path] = max(newest.get(path, item["published"]), item["published"])
        if not newest:
            return self.pages.not_found_with(contract.HOME_SURROGATE_KEY, version)
        urls = [(self.pages.site_url + path, newest[path].isoformat(timespec="seconds")) for path in sorted(newest)]
        return self._page(
            "sitemap.xml", contract.HOME_SURROGATE_KEY, version, max(newest.values()).timestamp(), urls=urls
        )
