"""Names and values other systems rely on: keys, headers, slug rules (docs/architecture.rst,
"Keys and names" and "The HTTP contract").

Changing one of these changes a contract with Varnish, the CDN or the CMS.
"""

import re
from typing import Callable

SLUG_MAX_LENGTH = 200
SLUG_PATTERN = re.compile(rf"^(?=.{{1,{SLUG_MAX_LENGTH}}}$)[a-z0-9]+(?:-[a-z0-9]+)*$")
# A section is a path segment (/rio/): slug-shaped, and never a name another route owns.
RESERVED_SECTIONS = ("noticia", "api", "healthcheck", "metrics", "robots", "favicon", "static")
SECTION_MAX_LENGTH = 60
SECTION_PATTERN = re.compile(
    rf"^(?=.{{1,{SECTION_MAX_LENGTH}}}$)(?!(?:{'|'.join(RESERVED_SECTIONS)})$)[a-z0-9]+(?:-[a-z0-9]+)*$"
)

# MongoDB: the articles (``_id`` = slug), and the listings (their generation, each one's newest articles).
ARTICLES_COLLECTION = "articles"
LISTINGS_COLLECTION = "listings"

# A page's record in Redis (``page:<id>``): one line of JSON metadata, then the page's bytes. A
# record outlives a deploy (the next version reads it), so the metadata's keys are a contract
# between versions: field of ``RenderedPage`` -> key in the record.
RECORD_KEYS = {
    "status": "s",
    "etag": "e",
    "last_modified": "m",
    "surrogate_keys": "k",
    "rendered_at": "r",
    "version": "v",
    "fresh_until": "f",
    "serve_until": "u",
}

PAGE_KEY_PREFIX = "page:"
LOCK_KEY_PREFIX = "lock:page:"
# The ids of pages that list articles start with "@", which cannot appear in a slug.
LISTING_PREFIX = "@"
HOME_CACHE_ID = f"{LISTING_PREFIX}home"
LATEST_BOX_CACHE_ID = f"{LISTING_PREFIX}fragment:latest"
# The "latest news" box alone, on the internal listener; article pages carry it (latest_box.py).
LATEST_BOX_PATH = "/_fragment/latest"
# The box's key: the box itself and every page that shows it carry it.
LATEST_SURROGATE_KEY = "latest"
# The version (listings generation) of the box a page answer shows; Varnish keeps no copy that
# shows an older box than the newest one a purge named.
HEADER_BOX = "X-Pagecache-Box"
# On Varnish's fetch: the newest box version a purge of ``latest`` named (the renderer reads its
# box again when its copy is older). On a purge: that version.
HEADER_BOX_MIN = "X-Pagecache-Box-Min"

HEADER_TIER = "X-Tier"
HEADER_CACHE_STATUS = "Cache-Status"
HEADER_SURROGATE_KEYS = "xkey"
# The version a page answer was rendered from: an article's MongoDB version (0: no such
# article), a listing's generation. Every tier passes it on, so anyone can see who served what.
HEADER_VERSION = "X-Page-Version"

TIER_REDIS = "redis"
TIER_MONGO = "mongo"
TIER_STALE = "stale"
# The process's own copy, younger than PAGE_TTL, served while Redis is unreachable.
TIER_MEMORY = "memory"

HOME_SURROGATE_KEY = "home"

# Renderer processes drop their in-process copies of what is published here (Redis pub/sub).
INVALIDATION_CHANNEL = "pagecache:invalidate"


# The names' grammar and the keys are data: bound methods of a pattern and a string, so that a
# page request runs no code of this module (docs/architecture.rst, "Reading the code").
is_valid_slug: Callable[[str], object] = SLUG_PATTERN.fullmatch
"""Truthy when ``slug`` may name an article (checked before any backend is touched)."""
is_valid_section: Callable[[str], object] = SECTION_PATTERN.fullmatch
"""Truthy when ``section`` may name a section front."""


SECTION_ID_PREFIX = f"{LISTING_PREFIX}section:"


def section_cache_id(section: str) -> str:
    """The tiers' id of a section front."""
    return f"{SECTION_ID_PREFIX}{section}"


def section_of(cache_id: str) -> str | None:
    """The section whose front ``cache_id`` is, or None."""
    return cache_id.removeprefix(SECTION_ID_PREFIX) if cache_id.startswith(SECTION_ID_PREFIX) else None


# Feeds and sitemaps are listings too (renderer/feeds.py): the tiers' ids and their public paths.
FEED_ID_PREFIX = f"{LISTING_PREFIX}feed:"
HOME_FEED_CACHE_ID = f"{FEED_ID_PREFIX}home"
HOME_FEED_PATH = "/rss.xml"
NEWS_SITEMAP_CACHE_ID = f"{LISTING_PREFIX}sitemap:news"
NEWS_SITEMAP_PATH = "/sitemap-news.xml"
SITEMAP_CACHE_ID = f"{LISTING_PREFIX}sitemap"
SITEMAP_PATH = "/sitemap.xml"
FEED_CONTENT_TYPE = "application/rss+xml; charset=utf-8"
SITEMAP_CONTENT_TYPE = "application/xml; charset=utf-8"


def section_feed_cache_id(section: str) -> str:
    """The tiers' id of a section's RSS feed."""
    return f"{FEED_ID_PREFIX}section:{section}"


def feed_section_of(cache_id: str) -> str | None:
    """The section whose feed ``cache_id`` is, or None."""
    prefix = f"{FEED_ID_PREFIX}section:"
    return cache_id.removeprefix(prefix) if cache_id.startswith(prefix) else None


def section_feed_path(section: str) -> str:
    """The public path of a section's RSS feed."""
    return f"/{section}/rss.xml"


def is_listing(cache_id: str) -> bool:
    """True for the tiers' id of the home, a section front or the "latest news" box."""
    return cache_id.startswith(LISTING_PREFIX)


page_key: Callable[[str], str] = PAGE_KEY_PREFIX.__add__
"""Redis key of the page's record: fresh, then revalidating, then its last good copy."""


def cdn_purge_rate_key(api_name: str) -> str:
    """Redis key of the CDN plan's shared purge rate limit (one per account, for every renderer)."""
    return f"cdn-purge-rate:{api_name}"


def lock_key(cache_id: str) -> str:
    """Redis key that elects one renderer process to fetch a cold page."""
    return LOCK_KEY_PREFIX + cache_id


def article_surrogate_key(slug: str) -> str:
    """xkey naming every cached response that shows article ``slug``."""
    return f"article-{slug}"


def section_surrogate_key(section: str) -> str:
    """xkey naming every cached response that lists section ``section``."""
    return f"section-{section}"


def missing_section_key(section: str) -> str:
    """xkey of the cached 404 of a section with no article yet: hard-purged by every publish to
    it, so the first article of a new section shows at once (a soft purge would serve the 404 once
    more), while the fronts that exist keep their soft purge."""
    return f"missing-section-{section}"


def public_paths_of_key(key: str) -> tuple[str, ...]:
    """The public URL paths a listing's surrogate key names (``home`` → the home, its feed and
    the sitemaps; ``section-rio`` → ``/rio/`` and its feed), or none: what Varnish refreshes after
    soft-purging it, before the CDN is purged."""
    if key == HOME_SURROGATE_KEY:
        return ("/", HOME_FEED_PATH, NEWS_SITEMAP_PATH, SITEMAP_PATH)
    section = key.removeprefix("section-")
    if section != key and is_valid_section(section):
        return (f"/{section}/", section_feed_path(section))
    return ()


# The CDN's own lifetime of a page, one value in both: RFC 9213's (Cloudflare reads it) and
# Fastly's. Varnish ignores both and hands them on; it shortens them for a copy it serves stale.
CDN_CACHE_HEADERS = ("CDN-Cache-Control", "Surrogate-Control")
