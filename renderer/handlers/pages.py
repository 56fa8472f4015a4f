"""Article and home pages, and the 404 page for everything else."""

from __future__ import annotations

import email.utils
import hashlib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable

from renderer import contract, security
from renderer.handlers.allow import AllowOn405
from renderer.latest_box import with_box
from renderer.rendered_page import RenderedPage
from renderer.resilience import Deadline
from renderer.services import Services
from renderer.tiers import Served, Unavailable

ARTICLE_SUFFIX = ".ghtml"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


class CachePolicy:
    """The caching headers of the HTTP contract (docs/architecture.rst), built once from settings:
    ``Cache-Control`` for browsers and Varnish, and the CDN's own (RFC 9213 ``CDN-Cache-Control``,
    read by Cloudflare; ``Surrogate-Control``, read by Fastly), which Varnish ignores."""

    def __init__(self, services: Services) -> None:
        s = services.settings
        self.site_url = s.site_url.rstrip("/")  # as the renderer's links name pages
        self.cache_control = {
            "fresh": (
                f"public, max-age=0, s-maxage={s.shared_max_age}, "
                f"stale-while-revalidate={s.stale_while_revalidate}, stale-if-error={s.stale_if_error}"
            ),
            "stale": f"public, max-age=0, s-maxage={s.stale_shared_max_age}, stale-if-error={s.stale_if_error}",
            "not found": f"public, max-age=0, s-maxage={s.not_found_ttl}",
        }
        # Without a purger nothing would purge the CDN: it may keep a page no longer than Varnish.
        cdn_ttl = s.cdn_ttl if s.cdn_purger != "none" else min(s.cdn_ttl, s.shared_max_age)
        self.cdn = {
            "fresh": (
                f"max-age={cdn_ttl}, stale-while-revalidate={s.cdn_stale_while_revalidate}, "
                f"stale-if-error={s.cdn_stale_if_error}"
            ),
            "stale": f"max-age={s.stale_shared_max_age}, stale-if-error={s.cdn_stale_if_error}",
            "not found": f"max-age={s.not_found_ttl}",
        }
        sample = services.renderer.generic_not_found.html.decode()
        self.security_headers = security.page_headers(sample, s.hsts_max_age)

    @staticmethod
    def kind(page: RenderedPage, tier: str, revalidating: bool = False) -> str:
        """Which lifetime ``page`` served from ``tier`` gets (past its freshness when ``revalidating``)."""
        if page.status == 404:
            return "not found"
        return "stale" if tier == contract.TIER_STALE or revalidating else "fresh"


HTML = "text/html; charset=UTF-8"


class PageHandler(AllowOn405):
    """Writes ``Served`` pages with the HTTP contract's headers."""

    content_type = HTML  # of a 200: every other status answers the HTML 404 page or a 503

    def initialize(self, services: Services, policy: CachePolicy) -> None:
        self.services = services
        self.policy = policy
        self.tier = "none"

    def on_finish(self) -> None:
        self.services.metrics.request_seconds.labels(self.tier).observe(self.request.request_time())

    def not_modified_since(self, page: RenderedPage) -> bool:
        """True when ``If-Modified-Since`` (without ``If-None-Match``, which wins) is not older
        than the page (RFC 9110 §13.1.3)."""
        since = self.request.headers.get("If-Modified-Since")
        if not since or not page.last_modified or "If-None-Match" in self.request.headers:
            return False
        try:
            return int(page.last_modified) <= email.utils.parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False  # an unparseable date is ignored

    def compute_etag(self) -> None:
        return None  # the page carries its own ETag

    def deadline(self) -> Deadline:
        """This request's deadline: every backend call fits inside it."""
        return Deadline.after(self.services.settings.request_deadline)

    def set_security_headers(self) -> None:
        """CSP, nosniff, referrer and frame policy (and HSTS when configured) on every page."""
        for name, value in self.policy.security_headers.items():
            self.set_header(name, value)

    def write_page(
        self,
        page: RenderedPage,
        tier: str | None = None,
        cache_status: str | None = None,
        revalidating: bool = False,
    ) -> None:
        """Send ``page`` (or a 304 when the client's ``If-None-Match`` matches its ETag)."""
        self.set_status(page.status)
        self.set_security_headers()
        self.set_header("Content-Type", self.content_type if page.status == 200 else HTML)
        self.set_cache_headers(self.policy.kind(page, tier or "", revalidating))
        if page.surrogate_keys:
            self.set_header(contract.HEADER_SURROGATE_KEYS, page.surrogate_keys)
        self.set_header(contract.HEADER_VERSION, str(page.version))
        if tier is not None:
            self.set_header(contract.HEADER_TIER, tier)
        if cache_status is not None:
            self.set_header(contract.HEADER_CACHE_STATUS, cache_status)
        if page.status != 200:
            self.finish(page.html)
            return
        self.set_header("Etag", page.etag)
        if page.last_modified:
            self.set_header("Last-Modified", page.last_modified_header)
        if self.check_etag_header() or self.not_modified_since(page):
            self.set_status(304)
            self.finish()
            return
        self.finish(page.html)

    async def answer(self, lookup: Awaitable[Served], box: Deadline | None = None, own: bytes = b"") -> None:
        """Send the page ``lookup`` serves, or the answer for when nothing can be served. With
        ``box`` (the request's deadline) the "latest news" box goes in, no older than the one
        Varnish asks for, without the page's own item (``own``: its URL)."""
        try:
            served = await lookup
        except Unavailable as exc:
            self.write_unavailable(exc)
            return
        self.tier = served.tier
        self.services.metrics.answered[served.tier, served.page.status].inc()
        page = served.page
        if box is not None and page.status == 200:
            shown = await self.services.latest_box.at_least(self.box_wanted(), box)
            page = with_box(page, shown, own, self.services.settings.latest_box_size)
            if shown is not None:
                self.set_header(contract.HEADER_BOX, str(shown.version))
        self.write_page(page, served.tier, served.cache_status, served.revalidating)

    def box_wanted(self) -> int:
        """The oldest box version Varnish will keep a page with (0: any)."""
        value = self.request.headers.get(contract.HEADER_BOX_MIN, "")
        return int(value) if value.isdigit() and len(value) <= 18 else 0

    def write_unavailable(self, exc: Unavailable) -> None:
        """Nothing fresh, nothing stale: 503 at once, with when to come back."""
        self.services.metrics.answered["none", 503].inc()
        self.set_status(503)
        self.set_security_headers()
        self.set_header("Retry-After", str(exc.retry_after))
        self.set_header("Cache-Control", "no-store")
        self.set_header(contract.HEADER_CACHE_STATUS, f"redis; fwd=miss; detail={exc.reason}")
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish("Service temporarily unavailable\n")

    def set_cache_headers(self, kind: str) -> None:
        """``Cache-Control`` and the CDN's headers for a page of this ``kind`` (``CachePolicy.kind``)."""
        self.set_header("Cache-Control", self.policy.cache_control[kind])
        for header in contract.CDN_CACHE_HEADERS:
            self.set_header(header, self.policy.cdn[kind])

    def redirect_to_canonical(self, canonical_path: str) -> bool:
        """A 301 to ``canonical_path`` when the request spelled it otherwise (percent-encoded
        letters, say): one URL, so one cached object, per page. True when redirected."""
        if self.request.path == canonical_path:
            return False
        self.set_cache_headers("fresh")
        self.redirect(canonical_path, permanent=True)
        return True

    def write_not_found(self) -> None:
        """The 404 page, without touching any backend."""
        self.services.metrics.answered["none", 404].inc()
        self.write_page(self.services.renderer.generic_not_found)


class ArticleHandler(PageHandler):
    """``GET /noticia/<slug>.ghtml``."""

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        # Bytes that are not UTF-8 make an invalid slug (404), not a 400.
        return value.decode("utf-8", errors="replace")

    async def get(self, path: str) -> None:
        slug = path[: -len(ARTICLE_SUFFIX)] if path.endswith(ARTICLE_SUFFIX) else ""
        if not contract.is_valid_slug(slug):
            self.write_not_found()
            return
        path = f"/noticia/{slug}{ARTICLE_SUFFIX}"
        if self.redirect_to_canonical(path):
            return
        # Article pages show the "latest news" box, without their own item (found by its link).
        deadline = self.deadline()
        own = (self.policy.site_url + path).encode()
        await self.answer(self.services.tiers.article(deadline, slug), box=deadline, own=own)


class SectionHandler(PageHandler):
    """``GET /<section>/``: the section's newest articles; ``/<section>`` redirects there."""

    async def get(self, section: str, _slash: str) -> None:
        if not contract.is_valid_section(section):
            self.write_not_found()
            return
        if self.redirect_to_canonical(f"/{section}/"):
            return
        await self.answer(self.services.tiers.listing(self.deadline(), contract.section_cache_id(section)))


class FeedHandler(PageHandler):
    """``/rss.xml`` and ``/<section>/rss.xml`` (``cache_id`` None: the section's), and the
    sitemaps: listings for feed readers and crawlers, served like the fronts."""

    def initialize(self, services: Services, policy: CachePolicy, cache_id: str | None, content_type: str) -> None:  # type: ignore[override]
        super().initialize(services, policy)
        self.cache_id = cache_id
        self.content_type = content_type

    async def get(self, section: str | None = None) -> None:
        cache_id = self.cache_id
        if cache_id is None:
            if section is None or not contract.is_valid_section(section):
                self.write_not_found()
                return
            cache_id = contract.section_feed_cache_id(section)
        await self.answer(self.services.tiers.listing(self.deadline(), cache_id))


class LatestBoxHandler(PageHandler):
    """``GET /_fragment/latest``: the "latest news" box alone, on the internal listener (the
    edge refuses ``/_*``); when it can't be had, an empty 503."""

    async def get(self) -> None:
        await self.answer(self.services.tiers.listing(self.deadline(), contract.LATEST_BOX_CACHE_ID))

    def write_unavailable(self, exc: Unavailable) -> None:
        self.services.metrics.answered["none", 503].inc()
        self.set_status(503)
        self.set_header("Cache-Control", "no-store")
        self.finish(b"")


class HomeHandler(PageHandler):
    """``GET /``: the latest articles."""

    async def get(self) -> None:
        await self.answer(self.services.tiers.listing(self.deadline(), contract.HOME_CACHE_ID))


@dataclass(frozen=True)
class SmallFile:
    """A file from ``renderer/static`` read once at start-up, with its ETag."""

    body: bytes
    etag: str
    content_type: str

    @classmethod
    def load(cls, name: str, content_type: str) -> SmallFile:
        """Read ``renderer/static/<name>``."""
        return cls.of((STATIC_DIR / name).read_bytes(), content_type)

    @classmethod
    def of(cls, body: bytes, content_type: str) -> SmallFile:
        """``body`` with its ETag."""
        return cls(body, f'"{hashlib.sha1(body).hexdigest()[:16]}"', content_type)


class SmallFileHandler(PageHandler):
    """``/robots.txt``, ``/favicon.ico`` and the site's images, cached like pages."""

    def initialize(self, services: Services, policy: CachePolicy, file: SmallFile) -> None:  # type: ignore[override]
        super().initialize(services, policy)
        self.file = file

    def get(self) -> None:
        self.services.metrics.answered["none", 200].inc()
        self.set_header("Content-Type", self.file.content_type)
        self.set_cache_headers("fresh")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Etag", self.file.etag)
        if self.check_etag_header():
            self.set_status(304)
            self.finish()
            return
        self.finish(self.file.body)


def canonical_page_path(path: str) -> str | None:
    """``path`` if it names a page (an article, a section front, the home), else None."""
    if path == "/":
        return path
    if path.startswith("/noticia/") and path.endswith(ARTICLE_SUFFIX):
        return path if contract.is_valid_slug(path[len("/noticia/") : -len(ARTICLE_SUFFIX)]) else None
    section = path.strip("/")
    return f"/{section}/" if path.startswith("/") and contract.is_valid_section(section) else None


class NotFoundHandler(PageHandler):
    """Every other path; a page's path spelled with percent-encoded characters the routes don't
    see through (``/n%6Fticia/…``) gets a 301 to the page."""

    def prepare(self) -> None:
        decoded = urllib.parse.unquote(self.request.path)
        canonical = canonical_page_path(decoded) if decoded != self.request.path else None
        if canonical is None or not self.redirect_to_canonical(canonical):
            self.write_not_found()

    def get(self, *args: Any) -> None:
        pass
