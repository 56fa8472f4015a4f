"""What an article is on the way in: the CMS payload, validated field by field (DESIGN §4)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Callable
from urllib.parse import urlsplit

from renderer import contract

SECTION_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class InvalidArticle(ValueError):
    """The request cannot become an article; ``status`` is the HTTP answer (400, 413, 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _text(limit: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be a non-empty string")
        if len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return value.strip()

    return check


def _section(value: Any) -> str:
    if not isinstance(value, str) or not SECTION_PATTERN.match(value) or len(value) > 60:
        raise ValueError("must be lowercase letters, digits and hyphens (like 'rio' or 'pop-arte')")
    return value


def _authors(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > 20:
        raise ValueError("must be a list of at most 20 names")
    return [_text(120)(name) for name in value]


def _datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be an ISO 8601 date-time like 2026-11-23T10:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError("must include a time zone (Z or +hh:mm)")
    return parsed.astimezone(UTC)


def _url(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 2000:
        raise ValueError("must be an http(s) URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return value


# name -> (required, check, OpenAPI schema)
FIELDS: dict[str, tuple[bool, Callable[[Any], Any], dict[str, Any]]] = {
    "title": (True, _text(300), {"type": "string", "minLength": 1, "maxLength": 300}),
    "subtitle": (False, _text(600), {"type": "string", "minLength": 1, "maxLength": 600}),
    "section": (True, _section, {"type": "string", "pattern": SECTION_PATTERN.pattern, "maxLength": 60}),
    "body_html": (True, _text(500_000), {"type": "string", "minLength": 1, "maxLength": 500_000}),
    "authors": (False, _authors, {"type": "array", "maxItems": 20, "items": {"type": "string", "minLength": 1}}),
    "published_at": (False, _datetime, {"type": "string", "format": "date-time"}),
    "image_url": (False, _url, {"type": "string", "format": "uri", "pattern": "^https?://"}),
}


@dataclass(frozen=True)
class ArticleInput:
    """A validated article from the CMS; ``fields`` is what MongoDB stores (HTML not yet sanitised)."""

    slug: str
    fields: dict[str, Any]


def parse_article(slug: str, body: bytes, content_type: str, max_bytes: int) -> ArticleInput:
    """Validate a ``PUT /api/articles/<slug>`` request, or raise ``InvalidArticle`` saying what is wrong."""
    if not contract.is_valid_slug(slug):
        raise InvalidArticle(400, "slug must be lowercase letters, digits and single hyphens, at most 200 characters")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise InvalidArticle(415, "body must be JSON (Content-Type: application/json)")
    if len(body) > max_bytes:
        raise InvalidArticle(413, f"body is larger than {max_bytes} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArticle(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArticle(400, "body must be a JSON object")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise InvalidArticle(400, f"unknown fields: {', '.join(unknown)}")
    fields: dict[str, Any] = {}
    for name, (required, check, _schema) in FIELDS.items():
        if name not in data or data[name] is None:
            if required:
                raise InvalidArticle(400, f"{name} is required")
            continue
        try:
            fields[name] = check(data[name])
        except ValueError as exc:
            raise InvalidArticle(400, f"{name} {exc}") from None
    return ArticleInput(slug, fields)


def parse_purge(body: bytes, content_type: str) -> list[str]:
    """Surrogate keys from a ``POST /api/purge`` body: ``{"slug": ...}`` and/or ``{"keys": [...]}``."""
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise InvalidArticle(415, "body must be JSON (Content-Type: application/json)")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArticle(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not data or set(data) - {"slug", "keys"}:
        raise InvalidArticle(400, 'body must be {"slug": "<slug>"} and/or {"keys": ["<surrogate key>", ...]}')
    keys: list[str] = []
    if "slug" in data:
        if not isinstance(data["slug"], str) or not contract.is_valid_slug(data["slug"]):
            raise InvalidArticle(400, "slug is not a valid article slug")
        keys.append(contract.article_surrogate_key(data["slug"]))
    if "keys" in data:
        raw = data["keys"]
        if not isinstance(raw, list) or not raw or len(raw) > 100:
            raise InvalidArticle(400, "keys must be a list of 1 to 100 surrogate keys")
        for key in raw:
            if not isinstance(key, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,250}", key):
                raise InvalidArticle(400, "each key must be lowercase letters, digits and hyphens")
            keys.append(key)
    return keys
