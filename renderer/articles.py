"""What an article is on the way in: the CMS payload, validated field by field."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Callable
from urllib.parse import urlsplit

from renderer import contract
from renderer.sections import G1_SECTIONS, Sections

# Something other than white space: a title of blanks is no title.
NOT_BLANK = re.compile(r"\S")
# RFC 3339 date-time, the "date-time" format of JSON Schema: seconds and an offset are required.
DATE_TIME = re.compile(
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
# An absolute https URL on a public DNS name: ASCII only (IDNs in punycode), a dotted name whose
# last label starts with a letter (so no IP literal), no name the public can't reach. https only:
# the pages' Content-Security-Policy allows images from https sources, so an http one never loads.
IMAGE_URL = re.compile(
    r"^https://"
    r"(?![^/:?#]*\.(?:local|localhost|internal|lan|home\.arpa)(?:[:/?#]|$))"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?::[0-9]{1,5})?(?:[/?#][!-~]*)?$"
)
SURROGATE_KEY = re.compile(r"[a-z0-9][a-z0-9-]{0,250}")
# The largest image side an article may declare: a camera's full frame, with room.
MAX_PIXELS = 20_000
# A lead image comes with its size, so the page keeps its space while it loads (no layout shift).
# Its text alternative too: a news photo carries information (WCAG 1.1.1).
IMAGE_FIELDS = ("image_url", "image_width", "image_height", "image_alt")
# JSON nesting allowed in a request: an article is two levels deep.
MAX_DEPTH = 8


class Refused(ValueError):
    """Nothing was changed, and the editors' API answers why: ``status`` is the HTTP answer (400,
    401, 403, 413, 415 for the request; 404, 412, 503 from the publisher) and ``message`` says it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _text(limit: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not NOT_BLANK.search(value):
            raise ValueError("must be a string with something other than white space")
        if len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return value.strip()

    return check


def _section(sections: Sections) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not contract.is_valid_section(value):
            reserved = ", ".join(contract.RESERVED_SECTIONS)
            raise ValueError(
                f"must be lowercase letters, digits and hyphens (like 'rio' or 'pop-arte'), "
                f"at most {contract.SECTION_MAX_LENGTH}, and none of {reserved}"
            )
        if value not in sections:
            raise ValueError(
                f"{value!r} is not one of the site's sections ({', '.join(sections.names)}); "
                "SITE_SECTIONS declares them"
            )
        return value

    return check


def _pixels(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PIXELS:
        raise ValueError(f"must be a whole number of pixels from 1 to {MAX_PIXELS}")
    return value


def _authors(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > 20:
        raise ValueError("must be a list of at most 20 names")
    return [_text(120)(name) for name in value]


def _datetime(value: Any) -> datetime:
    message = "must be an RFC 3339 date-time with seconds and an offset, like 2026-11-23T10:00:00Z"
    if not isinstance(value, str) or not DATE_TIME.fullmatch(value):
        raise ValueError(message)
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(message) from None  # 2026-02-30 and the like
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+00:01 is before year 1 in UTC
        raise ValueError("must fall between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in UTC") from None


def image_url_check(allowed_hosts: frozenset[str]) -> Callable[[Any], str]:
    """``image_url``'s check: a public https URL, on one of ``allowed_hosts`` when any are configured.

    The URL goes into public HTML (``<img>``, ``og:image``, JSON-LD): an internal address there
    would point every reader's browser, and every crawler, into our network.
    """

    def check(value: Any) -> str:
        if not isinstance(value, str) or len(value) > 2000 or not IMAGE_URL.fullmatch(value):
            raise ValueError(
                "must be an absolute https URL on a public host name (ASCII, at most 2000 characters); "
                "pages load images over https only"
            )
        host = (urlsplit(value).hostname or "").lower()
        if allowed_hosts and host not in allowed_hosts:
            raise ValueError(f"must be on one of the image hosts {', '.join(sorted(allowed_hosts))}")
        return value

    return check


def _image_schema(allowed_hosts: frozenset[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "maxLength": 2000, "pattern": IMAGE_URL.pattern}
    if allowed_hosts:
        hosts = "|".join(re.escape(host) for host in sorted(allowed_hosts))
        schema["allOf"] = [{"pattern": f"^https://(?:{hosts})(?:[:/?#]|$)"}]
    return schema


def _text_schema(limit: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": limit, "pattern": NOT_BLANK.pattern}


Field = tuple[bool, Callable[[Any], Any], dict[str, Any]]


@dataclass(frozen=True)
class ArticleRules:
    """What the site allows beyond a field's shape: the hosts images may come from (any public one
    when empty) and the sections articles may be published in."""

    image_hosts: frozenset[str] = frozenset()
    sections: Sections = G1_SECTIONS


ANY_PUBLIC_IMAGE = ArticleRules()


def article_fields(rules: ArticleRules = ANY_PUBLIC_IMAGE) -> dict[str, Field]:
    """name -> (required, check, OpenAPI schema): validation and the published contract in one table."""
    pixels = {"type": "integer", "minimum": 1, "maximum": MAX_PIXELS}
    return {
        "title": (True, _text(300), _text_schema(300)),
        "subtitle": (False, _text(600), _text_schema(600)),
        "section": (True, _section(rules.sections), {"type": "string", "enum": list(rules.sections.names)}),
        "body_html": (True, _text(500_000), _text_schema(500_000)),
        "authors": (False, _authors, {"type": "array", "maxItems": 20, "items": _text_schema(120)}),
        "published_at": (False, _datetime, {"type": "string", "format": "date-time", "pattern": DATE_TIME.pattern}),
        "image_url": (False, image_url_check(rules.image_hosts), _image_schema(rules.image_hosts)),
        "image_width": (False, _pixels, pixels),
        "image_height": (False, _pixels, pixels),
        # The lead image's text alternative and caption.
        "image_alt": (False, _text(300), _text_schema(300)),
        "image_caption": (False, _text(300), _text_schema(300)),
    }


def load_json(body: bytes) -> Any:
    """Parse a request body, or raise a 400 ``Refused``: bounded nesting, valid Unicode only."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise Refused(400, f"body is nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, f"body is not valid JSON: {exc}") from None
    # Walked without recursion: the check itself must not be what a deep document breaks.
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise Refused(400, f"body is nested deeper than {MAX_DEPTH} levels")
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise Refused(400, "body has a lone UTF-16 surrogate (\\ud800-\\udfff): not valid Unicode") from None
    return data


@dataclass(frozen=True)
class ArticleInput:
    """A validated article from the CMS; ``fields`` is what MongoDB stores (HTML not yet sanitised)."""

    slug: str
    fields: dict[str, Any]


def require_json(content_type: str) -> None:
    """415 unless the body is declared JSON."""
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise Refused(415, "body must be JSON (Content-Type: application/json)")


def parse_article(slug: str, body: bytes, content_type: str, rules: ArticleRules = ANY_PUBLIC_IMAGE) -> ArticleInput:
    """Validate a ``PUT /api/articles/<slug>`` request, or raise ``Refused`` saying what is wrong.

    The byte cap is enforced while the body arrives (``handlers.api``), before this is called.
    """
    if not contract.is_valid_slug(slug):
        raise Refused(400, "slug must be lowercase letters, digits and single hyphens, at most 200 characters")
    require_json(content_type)
    data = load_json(body)
    if not isinstance(data, dict):
        raise Refused(400, "body must be a JSON object")
    table = article_fields(rules)
    unknown = sorted(set(data) - set(table))
    if unknown:
        raise Refused(400, f"unknown fields: {', '.join(unknown)}")
    fields: dict[str, Any] = {}
    for name, (required, check, _schema) in table.items():
        if name not in data:
            if required:
                raise Refused(400, f"{name} is required")
            continue
        try:
            fields[name] = check(data[name])
        except ValueError as exc:
            raise Refused(400, f"{name} {exc}") from None
    given = [name for name in IMAGE_FIELDS if name in fields]
    if given and len(given) < len(IMAGE_FIELDS):
        raise Refused(
            400,
            "image_url, image_width, image_height and image_alt come together (the size in pixels keeps "
            "the image's space on the page while it loads; the text says what it shows to who can't see it); "
            f"missing: {', '.join(name for name in IMAGE_FIELDS if name not in given)}",
        )
    return ArticleInput(slug, fields)


def parse_purge(body: bytes, content_type: str) -> list[str]:
    """Surrogate keys from a ``POST /api/purge`` body: ``{"slug": ...}`` and/or ``{"keys": [...]}``."""
    require_json(content_type)
    data = load_json(body)
    if not isinstance(data, dict) or not data or set(data) - {"slug", "keys"}:
        raise Refused(400, 'body must be {"slug": "<slug>"} and/or {"keys": ["<surrogate key>", ...]}')
    keys: list[str] = []
    if "slug" in data:
        if not isinstance(data["slug"], str) or not contract.is_valid_slug(data["slug"]):
            raise Refused(400, "slug is not a valid article slug")
        keys.append(contract.article_surrogate_key(data["slug"]))
    if "keys" in data:
        raw = data["keys"]
        if not isinstance(raw, list) or not raw or len(raw) > 100:
            raise Refused(400, "keys must be a list of 1 to 100 surrogate keys")
        for key in raw:
            if not isinstance(key, str) or not SURROGATE_KEY.fullmatch(key):
                raise Refused(400, "each key must be lowercase letters, digits and hyphens")
            keys.append(key)
    return keys
